//! The name-value codec of src/protocol/params.rs on arbitrary bytes:
//! decode_length, the Pairs iterator, validate, pairs_to_env (in place,
//! with a pair limit) against a plain reference decoder, push_pair /
//! push_length round trips, and get_values_reply.
#![no_main]

use fcgi::protocol::params::{self, Capabilities, PairError};
use fcgi::protocol::record::{MAX_CONNS, MAX_REQS, MPXS_CONNS};
use libfuzzer_sys::fuzz_target;

/// A length field decoded bit by bit, independently of the library.
fn ref_length(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    if first < 0x80 {
        return Some((u64::from(first), 1));
    }
    if b.len() < 4 {
        return None;
    }
    let v = (u64::from(first & 0x7f) << 24)
        | (u64::from(b[1]) << 16)
        | (u64::from(b[2]) << 8)
        | u64::from(b[3]);
    Some((v, 4))
}

/// The pairs of a block the slow way; `Err(count decoded before the fault)`.
fn ref_pairs(mut b: &[u8]) -> Result<Vec<(&[u8], &[u8])>, usize> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let Some((n, a)) = ref_length(b) else { return Err(out.len()) };
        let Some((v, c)) = ref_length(&b[a..]) else { return Err(out.len()) };
        let body = &b[a + c..];
        if n + v > body.len() as u64 {
            return Err(out.len());
        }
        let (n, v) = (n as usize, v as usize);
        out.push((&body[..n], &body[n..n + v]));
        b = &body[n + v..];
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let (ctl, data) = match data.split_first() {
        Some((c, d)) => (*c, d),
        None => (0, data),
    };

    // One length field.
    match (params::decode_length(data), ref_length(data)) {
        (Ok((v, used)), Some((rv, rused))) => {
            assert_eq!((u64::from(v), used), (rv, rused));
            assert!(v <= 0x7fff_ffff);
            let mut enc = Vec::new();
            params::push_length(&mut enc, v as usize);
            // The short form is used below 128; a long-form small value
            // re-encodes short, so compare values, not bytes.
            assert_eq!(params::decode_length(&enc), Ok((v, enc.len())));
            assert_eq!(enc.len(), if v < 0x80 { 1 } else { 4 });
        }
        (Err(PairError::Truncated { available, .. }), None) => assert_eq!(available, data.len()),
        (got, want) => panic!("decode_length {got:?} vs reference {want:?}"),
    }

    // The iterator and validate agree with the reference.
    let want = ref_pairs(data);
    let got: Vec<_> = params::pairs(data).collect();
    match &want {
        Ok(w) => {
            assert_eq!(got.len(), w.len());
            for (g, w) in got.iter().zip(w) {
                assert_eq!(g.as_ref().ok(), Some(w));
            }
            assert_eq!(params::validate(data), Ok(w.len()));
        }
        Err(n) => {
            assert_eq!(got.len(), n + 1, "one error, then the iterator stops");
            assert!(got[*n].is_err());
            assert!(got[..*n].iter().all(|p| p.is_ok()));
            assert!(params::validate(data).is_err());
        }
    }

    // Re-encoding what decoded gives a block that decodes to the same.
    if let Ok(w) = &want {
        let mut enc = Vec::new();
        for (n, v) in w {
            params::push_pair(&mut enc, n, v);
        }
        let back = ref_pairs(&enc).expect("an encoded block decodes");
        assert_eq!(&back, w);
        assert!(enc.len() <= data.len(), "the shortest encoding is never longer");
    }

    // pairs_to_env after a prefix, with a pair limit.
    let prefix_len = usize::from(ctl & 0x1f);
    let max_pairs = usize::from(ctl >> 5) * 3 + 1; // 1..=22
    let mut block: Vec<u8> = (0..prefix_len).map(|i| b'A' + (i % 26) as u8).collect();
    block.extend_from_slice(data);
    let mut entries = Vec::new();
    let r = params::pairs_to_env(&mut block, prefix_len, &mut entries, max_pairs);
    assert_eq!(block.len(), prefix_len + data.len() + 1);
    assert!(block[..prefix_len].iter().enumerate().all(|(i, &b)| b == b'A' + (i % 26) as u8));
    assert!(entries.len() <= max_pairs);
    let mut last_end = prefix_len;
    for (i, e) in entries.iter().enumerate() {
        // Every entry lies inside the block, after the previous one.
        let end = e.start + e.name_len + 1 + e.value_len;
        assert!(e.start >= last_end && end < block.len());
        assert_eq!(block[e.start + e.name_len], b'=');
        if r.is_ok() || i + 1 < entries.len() {
            assert_eq!(block[end], 0, "each string is NUL-terminated");
        }
        if let Ok(w) = &want {
            assert_eq!(e.name(&block), w[i].0);
            assert_eq!(e.value(&block), w[i].1);
        }
        last_end = end + 1;
    }
    match (&r, &want) {
        (Ok(()), Ok(w)) => {
            assert_eq!(entries.len(), w.len());
            assert!(w.len() <= max_pairs);
            assert_eq!(block[block.len() - 1], 0);
        }
        (Err(PairError::TooMany { max }), Ok(w)) => {
            assert_eq!(*max, max_pairs);
            assert!(w.len() > max_pairs);
            assert_eq!(entries.len(), max_pairs);
        }
        (Err(PairError::TooMany { .. }), Err(n)) => assert!(*n >= max_pairs),
        (Err(PairError::Truncated { .. }), Err(n)) => {
            assert!(*n < max_pairs);
            assert_eq!(entries.len(), *n);
        }
        (r, w) => panic!("pairs_to_env {r:?}, reference {:?}", w.as_ref().map(|v| v.len())),
    }

    // GET_VALUES: each known name answered at most once, nothing else,
    // in the order first asked.
    let caps = Capabilities {
        max_conns: u32::from(ctl),
        max_reqs: u32::from(ctl) * 7,
        mpxs_conns: ctl & 1 == 1,
    };
    let mut out = vec![1, 2, 3];
    params::get_values_reply(data, &caps, &mut out);
    let answer = ref_pairs(&out).expect("the reply is well formed");
    assert!(answer.len() <= 3);
    assert!(out.len() < 80);
    let asked: Vec<&[u8]> = match &want {
        Ok(w) => w.iter().map(|p| p.0).collect(),
        Err(_) => params::pairs(data).map_while(Result::ok).map(|p| p.0).collect(),
    };
    let mut expect: Vec<&[u8]> = Vec::new();
    for n in asked {
        if (n == MAX_CONNS || n == MAX_REQS || n == MPXS_CONNS) && !expect.contains(&n) {
            expect.push(n);
        }
    }
    let names: Vec<&[u8]> = answer.iter().map(|p| p.0).collect();
    assert_eq!(names, expect);
    for (n, v) in answer {
        let want_v = if n == MAX_CONNS {
            caps.max_conns.to_string()
        } else if n == MAX_REQS {
            caps.max_reqs.to_string()
        } else {
            (if caps.mpxs_conns { "1" } else { "0" }).to_string()
        };
        assert_eq!(v, want_v.as_bytes());
    }
});
