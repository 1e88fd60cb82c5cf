//! The record codec of src/protocol/record.rs on arbitrary bytes: every
//! decoder (Header, BeginRequest, EndRequest), their encode round trips,
//! and the record writers (push_stream_data, push_end_of_stream,
//! push_record) read back by a plain framing loop.
#![no_main]

use fcgi::protocol::record::{
    self, kind, BeginRequest, EndRequest, Header, HEADER_LEN, MAX_CONTENT_LEN, VERSION_1,
};
use libfuzzer_sys::fuzz_target;

/// Splits `b` into records the way a reader does: header, content,
/// padding. Returns the records and whether the bytes ended on a record
/// boundary.
fn frame(mut b: &[u8]) -> (Vec<(Header, &[u8])>, bool) {
    let mut out = Vec::new();
    while b.len() >= HEADER_LEN {
        let h = Header::decode(b[..HEADER_LEN].try_into().unwrap());
        assert_eq!(h.body_len(), h.content_length as usize + h.padding_length as usize);
        let rest = &b[HEADER_LEN..];
        if rest.len() < h.body_len() {
            return (out, false);
        }
        out.push((h, &rest[..h.content_length as usize]));
        b = &rest[h.body_len()..];
    }
    (out, b.is_empty())
}

fuzz_target!(|data: &[u8]| {
    // Header: decode -> encode gives the same bytes but the reserved one;
    // encode -> decode is the identity.
    if data.len() >= HEADER_LEN {
        let raw: [u8; HEADER_LEN] = data[..HEADER_LEN].try_into().unwrap();
        let h = Header::decode(&raw);
        let again = h.encode();
        assert_eq!(&again[..7], &raw[..7]);
        assert_eq!(again[7], 0);
        assert_eq!(Header::decode(&again), h);
        assert_eq!(h.is_supported(), raw[0] == VERSION_1);
        assert_eq!(h.is_management(), raw[2] == 0 && raw[3] == 0);
        let n = Header::new(h.kind, h.request_id, h.content_length);
        assert_eq!(Header::decode(&n.encode()), n);
        assert_eq!(n.padding_length, 0);
    }

    // Bodies: Some exactly for 8 bytes; the fields survive a round trip.
    for len in [data.len().min(7), data.len().min(8), data.len().min(9), data.len()] {
        let body = &data[..len];
        let b = BeginRequest::decode(body);
        let e = EndRequest::decode(body);
        assert_eq!(b.is_some(), len == 8);
        assert_eq!(e.is_some(), len == 8);
        if let Some(b) = b {
            let enc = b.encode();
            assert_eq!(&enc[..3], &body[..3]);
            assert_eq!(BeginRequest::decode(&enc), Some(b));
            assert_eq!(b.keep_conn(), body[2] & record::KEEP_CONN != 0);
        }
        if let Some(e) = e {
            let enc = e.encode();
            assert_eq!(&enc[..5], &body[..5]);
            assert_eq!(EndRequest::decode(&enc), Some(e));
            let rec = e.record(0x1234);
            let (recs, whole) = frame(&rec);
            assert!(whole);
            assert_eq!(recs.len(), 1);
            assert_eq!(recs[0].0, Header::new(kind::END_REQUEST, 0x1234, 8));
            assert_eq!(EndRequest::decode(recs[0].1), Some(e));
        }
    }

    // Records as a stream: whatever framing finds must re-encode to the
    // same header bytes (reserved byte aside).
    let (recs, _) = frame(data);
    for (h, content) in &recs {
        assert_eq!(content.len(), h.content_length as usize);
        if h.kind == kind::BEGIN_REQUEST {
            let _ = BeginRequest::decode(content);
        }
        if h.kind == kind::END_REQUEST {
            let _ = EndRequest::decode(content);
        }
    }

    // Writers: the data goes out in records of at most 64 KiB that frame
    // back to the same bytes.
    if let Some((&sel, rest)) = data.split_first() {
        let t = sel % (kind::MAX + 2);
        let id = u16::from(sel).wrapping_mul(257);
        // Let short inputs reach the 64 KiB split too.
        let big;
        let payload: &[u8] = if sel & 0x80 != 0 && !rest.is_empty() {
            big = rest.repeat(MAX_CONTENT_LEN * 2 / rest.len() + 1);
            &big
        } else {
            rest
        };
        let mut out = Vec::new();
        record::push_stream_data(&mut out, t, id, payload);
        record::push_end_of_stream(&mut out, t, id);
        let (recs, whole) = frame(&out);
        assert!(whole);
        let mut joined = Vec::new();
        for (i, (h, c)) in recs.iter().enumerate() {
            assert_eq!((h.version, h.kind, h.request_id, h.padding_length), (1, t, id, 0));
            assert!(c.len() <= MAX_CONTENT_LEN);
            assert_eq!(c.is_empty(), i == recs.len() - 1);
            joined.extend_from_slice(c);
        }
        assert_eq!(joined, payload);

        let mut one = Vec::new();
        record::push_record(&mut one, t, id, payload);
        let (recs, whole) = frame(&one);
        assert!(whole);
        assert_eq!(recs.len(), 1);
        let cut = payload.len().min(MAX_CONTENT_LEN);
        assert_eq!(recs[0].1, &payload[..cut]);

        let u = record::unknown_type_record(sel);
        let (recs, whole) = frame(&u);
        assert!(whole && recs.len() == 1);
        assert_eq!(recs[0].0, Header::new(kind::UNKNOWN_TYPE, 0, 8));
        assert_eq!(recs[0].1, &[sel, 0, 0, 0, 0, 0, 0, 0]);
    }
});
