//! Name-value pairs (`FCGI_PARAMS`, `FCGI_GET_VALUES`): decoding with
//! every length checked against the bytes actually present, encoding, and
//! the management replies built from them.
//!
//! A declared length is only ever compared with what arrived; nothing is
//! allocated from it (the CVE-2025-23016 pattern cannot happen here).

use super::record::{MAX_CONNS, MAX_REQS, MPXS_CONNS};
use thiserror::Error;

/// Why a block of name-value pairs was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PairError {
    /// A length field, a name or a value runs past the end of the block.
    #[error(
        "name-value pair runs past the end of the data ({needed} bytes declared, {available} present)"
    )]
    Truncated { needed: u64, available: usize },
    /// More pairs than the caller allows.
    #[error("more than {max} name-value pairs (LIBFCGI_MAX_PARAMS)")]
    TooMany { max: usize },
}

/// Decodes one length field (1 byte if the high bit is clear, else 4 bytes
/// with the high bit masked). Returns the length and the bytes used.
pub fn decode_length(b: &[u8]) -> Result<(u32, usize), PairError> {
    match b {
        [first, ..] if first & 0x80 == 0 => Ok((u32::from(*first), 1)),
        [b3, b2, b1, b0, ..] => Ok((u32::from_be_bytes([b3 & 0x7f, *b2, *b1, *b0]), 4)),
        _ => Err(PairError::Truncated {
            needed: if b.is_empty() { 1 } else { 4 },
            available: b.len(),
        }),
    }
}

/// Appends the encoding of a length (1 byte below 128, else 4 bytes).
/// Lengths above 0x7fffffff cannot be encoded and are clamped (no caller
/// of this crate produces them: record content is at most 64 KiB).
pub fn push_length(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let l = u32::try_from(len.min(0x7fff_ffff)).unwrap_or(0x7fff_ffff) | 0x8000_0000;
        out.extend_from_slice(&l.to_be_bytes());
    }
}

/// Appends one encoded name-value pair.
pub fn push_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    push_length(out, name.len());
    push_length(out, value.len());
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// Iterator over the pairs of a complete block. Yields an error (once, then
/// stops) if the block is malformed.
pub struct Pairs<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Iterates over the name-value pairs in `block`.
pub fn pairs(block: &[u8]) -> Pairs<'_> {
    Pairs {
        rest: block,
        failed: false,
    }
}

impl<'a> Pairs<'a> {
    fn next_pair(&mut self) -> Result<(&'a [u8], &'a [u8]), PairError> {
        let (name_len, a) = decode_length(self.rest)?;
        let (value_len, b) = decode_length(&self.rest[a..])?;
        let body = &self.rest[a + b..];
        let needed = u64::from(name_len) + u64::from(value_len);
        if needed > body.len() as u64 {
            return Err(PairError::Truncated {
                needed,
                available: body.len(),
            });
        }
        // Both lengths fit in the body, so they fit in usize.
        let (name, body) = body.split_at(name_len as usize);
        let (value, rest) = body.split_at(value_len as usize);
        self.rest = rest;
        Ok((name, value))
    }
}

impl<'a> Iterator for Pairs<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), PairError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let item = self.next_pair();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Where one parameter lies in an environment block made by [`pairs_to_env`]:
/// `NAME=value` starting at `start`, then a NUL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvEntry {
    pub start: usize,
    pub name_len: usize,
    pub value_len: usize,
}

impl EnvEntry {
    /// The name as sent (it may contain `=` or NUL; C readers see less).
    pub fn name<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        &block[self.start..self.start + self.name_len]
    }

    /// The value as sent.
    pub fn value<'a>(&self, block: &'a [u8]) -> &'a [u8] {
        let at = self.start + self.name_len + 1;
        &block[at..at + self.value_len]
    }
}

/// Rewrites the name-value pairs in `block[start..]`, in place, into
/// NUL-terminated `NAME=value` strings, the form of a C environment, and
/// appends where each one lies to `entries`. One byte is pushed onto
/// `block` for the last NUL.
///
/// Nothing is copied whole: a pair's lengths take at least 2 bytes, and
/// its string needs only 2 more than the name and value (`=` and NUL), so
/// the name moves one byte down over the last length byte, the value stays
/// where it is, and the NUL goes over the first byte of the next pair's
/// lengths once they are decoded. Every length is checked against the bytes
/// present before anything moves; on error the block is left half rewritten
/// (the caller drops it) and `entries` holds the pairs done so far. More
/// than `max_pairs` pairs is an error too.
pub fn pairs_to_env(
    block: &mut Vec<u8>,
    start: usize,
    entries: &mut Vec<EnvEntry>,
    max_pairs: usize,
) -> Result<(), PairError> {
    let end = block.len();
    block.push(0);
    let mut pos = start;
    let first = entries.len();
    while pos < end {
        if entries.len() - first >= max_pairs {
            return Err(PairError::TooMany { max: max_pairs });
        }
        let (name_len, a) = decode_length(&block[pos..end])?;
        let (value_len, b) = decode_length(&block[pos + a..end])?;
        let body = pos + a + b;
        let needed = u64::from(name_len) + u64::from(value_len);
        if needed > (end - body) as u64 {
            return Err(PairError::Truncated {
                needed,
                available: end - body,
            });
        }
        let (name_len, value_len) = (name_len as usize, value_len as usize);
        if pos > start {
            block[pos] = 0; // ends the previous string; its lengths are read
        }
        let entry = body - 1;
        block.copy_within(body..body + name_len, entry);
        block[entry + name_len] = b'=';
        entries.push(EnvEntry {
            start: entry,
            name_len,
            value_len,
        });
        pos = body + name_len + value_len;
    }
    block[end] = 0;
    Ok(())
}

/// Checks a whole block and counts its pairs.
pub fn validate(block: &[u8]) -> Result<usize, PairError> {
    pairs(block).try_fold(0usize, |n, p| p.map(|_| n + 1))
}

/// What the library answers to `FCGI_GET_VALUES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    pub max_conns: u32,
    pub max_reqs: u32,
    pub mpxs_conns: bool,
}

impl Default for Capabilities {
    /// The values libfcgi 2.4 reports: one connection, one request, no multiplexing.
    fn default() -> Self {
        Capabilities {
            max_conns: 1,
            max_reqs: 1,
            mpxs_conns: false,
        }
    }
}

/// Builds the content of the `FCGI_GET_VALUES_RESULT` answering the query
/// `query` into `out` (cleared first). Known names are answered once each,
/// in the order first asked, however often they are repeated; unknown names
/// are left out, as the specification says. A malformed query is answered
/// with the names decoded before the fault. The reply is at most a few dozen
/// bytes whatever the query.
pub fn get_values_reply(query: &[u8], caps: &Capabilities, out: &mut Vec<u8>) {
    out.clear();
    let mut answered = [false; 3];
    for (name, _) in pairs(query).map_while(Result::ok) {
        let (slot, value) = match name {
            n if n == MAX_CONNS => (0, caps.max_conns.to_string()),
            n if n == MAX_REQS => (1, caps.max_reqs.to_string()),
            n if n == MPXS_CONNS => (2, if caps.mpxs_conns { "1" } else { "0" }.to_string()),
            _ => continue,
        };
        if !answered[slot] {
            answered[slot] = true;
            push_pair(out, name, value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, val) in pairs {
            push_pair(&mut v, n, val);
        }
        v
    }

    /// Name-value pairs, owned.
    type OwnedPairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// What `pairs_to_env` must produce, built the obvious way.
    fn env_the_slow_way(block: &[u8]) -> Result<OwnedPairs, PairError> {
        pairs(block)
            .map(|p| p.map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect()
    }

    fn check_env(prefix: &[u8], raw: &[u8]) {
        let mut b = prefix.to_vec();
        b.extend_from_slice(raw);
        let mut entries = Vec::new();
        let got = pairs_to_env(&mut b, prefix.len(), &mut entries, usize::MAX);
        let want = env_the_slow_way(raw);
        assert_eq!(got.is_ok(), want.is_ok(), "{raw:?}");
        assert_eq!(&b[..prefix.len()], prefix, "the prefix is never touched");
        let Ok(want) = want else { return };
        assert_eq!(b.len(), prefix.len() + raw.len() + 1);
        assert_eq!(entries.len(), want.len());
        let mut last_end = prefix.len();
        for (e, (n, v)) in entries.iter().zip(&want) {
            assert!(e.start >= last_end, "strings never overlap");
            assert_eq!(e.name(&b), &n[..]);
            assert_eq!(e.value(&b), &v[..]);
            let mut c = n.clone();
            c.push(b'=');
            c.extend_from_slice(v);
            c.push(0);
            assert_eq!(&b[e.start..e.start + c.len()], &c[..]);
            last_end = e.start + c.len();
        }
    }

    #[test]
    fn env_is_built_in_place() {
        let long = vec![b'v'; 300];
        let raw = block(&[
            (b"REQUEST_METHOD", b"GET"),
            (b"", b"empty name"),
            (b"EMPTY_VALUE", b""),
            (b"LONG", &long),
            (&long, b"long name"),
            (b"A=B", b"x\0y"),
        ]);
        check_env(b"FCGI_ROLE=RESPONDER\0", &raw);
        check_env(b"", &raw);
        check_env(b"X\0", &[]);
        let mut b = b"P\0".to_vec();
        b.extend_from_slice(&block(&[(b"N", b"V")]));
        let mut entries = Vec::new();
        pairs_to_env(&mut b, 2, &mut entries, usize::MAX).unwrap();
        assert_eq!(entries[0].start, 3);
        assert_eq!(&b[3..], b"N=V\0");
    }

    #[test]
    fn env_matches_the_decoder_on_random_and_broken_blocks() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut raw = Vec::new();
            for _ in 0..next() % 6 {
                let n = vec![b'n'; (next() % 140) as usize];
                let v = vec![0xa5; (next() % 300) as usize];
                push_pair(&mut raw, &n, &v);
            }
            check_env(b"R\0", &raw);
            if !raw.is_empty() {
                // Cut short, or with a byte changed: errors must agree too.
                let cut = (next() as usize) % raw.len();
                check_env(b"R\0", &raw[..cut]);
                let i = (next() as usize) % raw.len();
                raw[i] = next() as u8;
                check_env(b"R\0", &raw);
            }
        }
    }

    #[test]
    fn short_and_long_lengths_round_trip() {
        let long = vec![b'x'; 300];
        let b = block(&[(b"A", b"1"), (b"LONG", &long), (&long, b"")]);
        let got: Vec<_> = pairs(&b).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].1.len(), 300);
        assert_eq!(got[2].0.len(), 300);
        assert_eq!(validate(&b), Ok(3));
    }

    #[test]
    fn four_byte_length_masks_high_bit() {
        assert_eq!(decode_length(&[0x80, 0, 1, 0]), Ok((256, 4)));
        assert_eq!(
            decode_length(&[0xff, 0xff, 0xff, 0xff]),
            Ok((0x7fff_ffff, 4))
        );
        assert!(decode_length(&[0x80, 0]).is_err());
        assert!(decode_length(&[]).is_err());
    }

    #[test]
    fn cve_2025_23016_lengths_are_rejected_without_allocating() {
        // Both lengths 0x7fffffff: libfcgi's int sum wrapped to 0 and it
        // copied attacker bytes into malloc(0).
        let mut b = vec![0xff; 8];
        b.extend_from_slice(b"AAAAAAAAAAAAAAAA");
        assert!(matches!(
            validate(&b),
            Err(PairError::Truncated {
                needed: 0xffff_fffe,
                ..
            })
        ));
        // 0x7ffffffe + 0: the sum that made Debian's patched build abort.
        let mut b = vec![0xff, 0xff, 0xff, 0xfe, 0x00];
        b.extend_from_slice(b"xyz");
        assert!(validate(&b).is_err());
    }

    #[test]
    fn lengths_past_the_block_are_errors() {
        assert!(validate(&[5, 1, b'a']).is_err());
        assert!(validate(&[1]).is_err());
        assert!(validate(&[1, 0x80, 0]).is_err());
        assert_eq!(validate(&[]), Ok(0));
        let mut it = pairs(&[1, 1, b'a', b'b', 9]);
        assert!(it.next().unwrap().is_ok());
        assert!(it.next().unwrap().is_err());
        assert!(it.next().is_none());
    }

    #[test]
    fn get_values_answers_each_name_once() {
        let mut q = Vec::new();
        for _ in 0..200 {
            push_pair(&mut q, MAX_CONNS, b"");
        }
        push_pair(&mut q, b"UNKNOWN", b"");
        push_pair(&mut q, MPXS_CONNS, b"");
        let mut out = Vec::new();
        get_values_reply(&q, &Capabilities::default(), &mut out);
        let got: Vec<_> = pairs(&out).map(Result::unwrap).collect();
        assert_eq!(got, vec![(MAX_CONNS, &b"1"[..]), (MPXS_CONNS, &b"0"[..])]);
    }

    #[test]
    fn get_values_with_garbage_is_bounded() {
        let mut out = Vec::new();
        get_values_reply(&[0xff; 100], &Capabilities::default(), &mut out);
        assert!(out.is_empty());
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;

    #[test]
    fn pair_count_is_bounded_before_entries_pile_up() {
        // 1,000 empty pairs: 2 bytes each.
        let raw = vec![0u8; 2000];
        let mut b = raw.clone();
        let mut entries = Vec::new();
        assert!(matches!(
            pairs_to_env(&mut b, 0, &mut entries, 999),
            Err(PairError::TooMany { max: 999 })
        ));
        assert_eq!(entries.len(), 999, "stopped at the bound");
        let mut b = raw;
        let mut entries = Vec::new();
        pairs_to_env(&mut b, 0, &mut entries, 1000).unwrap();
        assert_eq!(entries.len(), 1000);
    }
}
