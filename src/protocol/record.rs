//! FastCGI records: the 8-byte header, the fixed-size bodies, and the
//! constants of the specification (`fastcgi.h`).
//!
//! Everything here is a pure function over byte slices: no I/O, no
//! allocation sized by a peer, nothing that can panic on hostile input.

/// Length of a record header (`FCGI_HEADER_LEN`).
pub const HEADER_LEN: usize = 8;
/// Largest content length a record can carry (`FCGI_MAX_LENGTH`).
pub const MAX_CONTENT_LEN: usize = 0xffff;
/// The only protocol version (`FCGI_VERSION_1`).
pub const VERSION_1: u8 = 1;
/// Request id of management records (`FCGI_NULL_REQUEST_ID`).
pub const NULL_REQUEST_ID: u16 = 0;
/// `FCGI_KEEP_CONN`: bit 0 of `FCGI_BeginRequestBody.flags`.
pub const KEEP_CONN: u8 = 1;

/// Record types (`FCGI_BEGIN_REQUEST` .. `FCGI_UNKNOWN_TYPE`).
pub mod kind {
    pub const BEGIN_REQUEST: u8 = 1;
    pub const ABORT_REQUEST: u8 = 2;
    pub const END_REQUEST: u8 = 3;
    pub const PARAMS: u8 = 4;
    pub const STDIN: u8 = 5;
    pub const STDOUT: u8 = 6;
    pub const STDERR: u8 = 7;
    pub const DATA: u8 = 8;
    pub const GET_VALUES: u8 = 9;
    pub const GET_VALUES_RESULT: u8 = 10;
    pub const UNKNOWN_TYPE: u8 = 11;
    /// `FCGI_MAXTYPE`: the highest type the specification defines.
    pub const MAX: u8 = UNKNOWN_TYPE;
}

/// Roles carried by `FCGI_BEGIN_REQUEST`.
pub mod role {
    pub const RESPONDER: u16 = 1;
    pub const AUTHORIZER: u16 = 2;
    pub const FILTER: u16 = 3;

    /// The `FCGI_ROLE` value the library puts first in a request's environment.
    pub fn name(role: u16) -> Option<&'static str> {
        match role {
            RESPONDER => Some("RESPONDER"),
            AUTHORIZER => Some("AUTHORIZER"),
            FILTER => Some("FILTER"),
            _ => None,
        }
    }
}

/// `protocolStatus` values of `FCGI_END_REQUEST`.
pub mod status {
    pub const REQUEST_COMPLETE: u8 = 0;
    pub const CANT_MPX_CONN: u8 = 1;
    pub const OVERLOADED: u8 = 2;
    pub const UNKNOWN_ROLE: u8 = 3;
}

/// Names a peer may ask for with `FCGI_GET_VALUES`.
pub const MAX_CONNS: &[u8] = b"FCGI_MAX_CONNS";
pub const MAX_REQS: &[u8] = b"FCGI_MAX_REQS";
pub const MPXS_CONNS: &[u8] = b"FCGI_MPXS_CONNS";

/// A decoded record header (`FCGI_Header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

impl Header {
    /// A version-1 header with no padding.
    pub const fn new(kind: u8, request_id: u16, content_length: u16) -> Header {
        Header {
            version: VERSION_1,
            kind,
            request_id,
            content_length,
            padding_length: 0,
        }
    }

    /// Reads a header from its 8 wire bytes. Never fails: checking the
    /// version is the caller's business ([`Header::is_supported`]).
    pub fn decode(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            version: b[0],
            kind: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        }
    }

    /// The 8 wire bytes of this header (the reserved byte is zero).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let id = self.request_id.to_be_bytes();
        let len = self.content_length.to_be_bytes();
        [
            self.version,
            self.kind,
            id[0],
            id[1],
            len[0],
            len[1],
            self.padding_length,
            0,
        ]
    }

    pub fn is_supported(&self) -> bool {
        self.version == VERSION_1
    }

    /// Content plus padding: the bytes that follow the header.
    pub fn body_len(&self) -> usize {
        usize::from(self.content_length) + usize::from(self.padding_length)
    }

    /// Whether this is a management record (request id 0).
    pub fn is_management(&self) -> bool {
        self.request_id == NULL_REQUEST_ID
    }
}

/// The body of `FCGI_BEGIN_REQUEST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeginRequest {
    pub role: u16,
    pub flags: u8,
}

impl BeginRequest {
    /// Decodes the 8-byte body; `None` if the content is not exactly 8 bytes.
    pub fn decode(content: &[u8]) -> Option<BeginRequest> {
        match content {
            [r1, r0, flags, _, _, _, _, _] => Some(BeginRequest {
                role: u16::from_be_bytes([*r1, *r0]),
                flags: *flags,
            }),
            _ => None,
        }
    }

    pub fn encode(&self) -> [u8; 8] {
        let r = self.role.to_be_bytes();
        [r[0], r[1], self.flags, 0, 0, 0, 0, 0]
    }

    pub fn keep_conn(&self) -> bool {
        self.flags & KEEP_CONN != 0
    }
}

/// The body of `FCGI_END_REQUEST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndRequest {
    pub app_status: u32,
    pub protocol_status: u8,
}

impl EndRequest {
    pub fn decode(content: &[u8]) -> Option<EndRequest> {
        match content {
            [a3, a2, a1, a0, ps, _, _, _] => Some(EndRequest {
                app_status: u32::from_be_bytes([*a3, *a2, *a1, *a0]),
                protocol_status: *ps,
            }),
            _ => None,
        }
    }

    pub fn encode(&self) -> [u8; 8] {
        let s = self.app_status.to_be_bytes();
        [s[0], s[1], s[2], s[3], self.protocol_status, 0, 0, 0]
    }

    /// The whole 16-byte `FCGI_EndRequestRecord` for `request_id`.
    pub fn record(&self, request_id: u16) -> [u8; 16] {
        let mut rec = [0u8; 16];
        rec[..8].copy_from_slice(&Header::new(kind::END_REQUEST, request_id, 8).encode());
        rec[8..].copy_from_slice(&self.encode());
        rec
    }
}

/// The whole 16-byte `FCGI_UnknownTypeRecord` answering a management record of type `t`.
pub fn unknown_type_record(t: u8) -> [u8; 16] {
    let mut rec = [0u8; 16];
    rec[..8].copy_from_slice(&Header::new(kind::UNKNOWN_TYPE, NULL_REQUEST_ID, 8).encode());
    rec[8] = t;
    rec
}

/// Appends records of type `kind` carrying `data` to `out`, split into
/// records of at most [`MAX_CONTENT_LEN`] bytes. Writes nothing for empty
/// `data` (use [`push_end_of_stream`] for the terminating empty record).
pub fn push_stream_data(out: &mut Vec<u8>, kind: u8, request_id: u16, data: &[u8]) {
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        // chunks() never yields more than MAX_CONTENT_LEN bytes, so this fits.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&Header::new(kind, request_id, len).encode());
        out.extend_from_slice(chunk);
    }
}

/// Appends the empty record that ends stream `kind`.
pub fn push_end_of_stream(out: &mut Vec<u8>, kind: u8, request_id: u16) {
    out.extend_from_slice(&Header::new(kind, request_id, 0).encode());
}

/// Appends one discrete record (at most [`MAX_CONTENT_LEN`] bytes of content;
/// longer content is cut, which no caller in this crate produces).
pub fn push_record(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let content = &content[..content.len().min(MAX_CONTENT_LEN)];
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&Header::new(kind, request_id, len).encode());
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            version: 1,
            kind: kind::STDIN,
            request_id: 0x1234,
            content_length: 0xfffe,
            padding_length: 7,
        };
        let b = h.encode();
        assert_eq!(b, [1, 5, 0x12, 0x34, 0xff, 0xfe, 7, 0]);
        assert_eq!(Header::decode(&b), h);
        assert_eq!(h.body_len(), 0xfffe + 7);
    }

    #[test]
    fn begin_request_needs_eight_bytes() {
        assert_eq!(
            BeginRequest::decode(&[0, 1, 1, 0, 0, 0, 0, 0]),
            Some(BeginRequest { role: 1, flags: 1 })
        );
        assert!(BeginRequest::decode(&[0, 1, 1]).is_none());
        assert!(BeginRequest::decode(&[0; 9]).is_none());
        assert!(BeginRequest { role: 3, flags: 0 }.encode() == [0, 3, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn end_request_record_is_big_endian() {
        let rec = EndRequest {
            app_status: 0x01020304,
            protocol_status: status::UNKNOWN_ROLE,
        }
        .record(9);
        assert_eq!(rec, [1, 3, 0, 9, 0, 8, 0, 0, 1, 2, 3, 4, 3, 0, 0, 0]);
        assert_eq!(
            EndRequest::decode(&rec[8..]).unwrap().app_status,
            0x01020304
        );
    }

    #[test]
    fn stream_data_is_split_at_max_length() {
        let data = vec![7u8; MAX_CONTENT_LEN * 2 + 3];
        let mut out = Vec::new();
        push_stream_data(&mut out, kind::STDOUT, 1, &data);
        push_end_of_stream(&mut out, kind::STDOUT, 1);
        assert_eq!(out.len(), data.len() + 4 * HEADER_LEN);
        let first = Header::decode(out[..8].try_into().unwrap());
        assert_eq!(usize::from(first.content_length), MAX_CONTENT_LEN);
        let last = Header::decode(out[out.len() - 8..].try_into().unwrap());
        assert_eq!(last.content_length, 0);
    }

    #[test]
    fn unknown_type_names_the_type() {
        assert_eq!(
            unknown_type_record(42),
            [1, 11, 0, 0, 0, 8, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0]
        );
    }
}
