//! The bytes on the wire: a prebuilt request whose id is patched per
//! request, and an incremental parser that checks every response record.

use fcgi::protocol::{BeginRequest, EndRequest, HEADER_LEN, Header, kind, push_pair, role};

/// Content bytes per STDIN record (nginx sends its body buffer in records
/// of at most 32 KiB).
const STDIN_CHUNK: usize = 32 * 1024;

/// One request, encoded once; only the request id changes between sends.
#[derive(Clone)]
pub struct Template {
    pub bytes: Vec<u8>,
    /// Offsets of every record header (the id sits at +2..+4).
    headers: Vec<usize>,
    pub params_len: usize,
    pub param_count: usize,
}

/// Appends one record padded to a multiple of 8, as nginx does.
fn push_padded(out: &mut Vec<u8>, headers: &mut Vec<usize>, kind: u8, id: u16, content: &[u8]) {
    let padding = (8 - content.len() % 8) % 8;
    let h = Header {
        version: 1,
        kind,
        request_id: id,
        content_length: content.len() as u16,
        padding_length: padding as u8,
    };
    headers.push(out.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
}

impl Template {
    pub fn new(params: &[(String, String)], body: &[u8], keep_conn: bool) -> Template {
        let mut bytes = Vec::with_capacity(256 + body.len() + body.len() / STDIN_CHUNK * 16);
        let mut headers = Vec::new();
        let begin = BeginRequest {
            role: role::RESPONDER,
            flags: u8::from(keep_conn),
        };
        push_padded(
            &mut bytes,
            &mut headers,
            kind::BEGIN_REQUEST,
            1,
            &begin.encode(),
        );
        let mut block = Vec::new();
        for (k, v) in params {
            push_pair(&mut block, k.as_bytes(), v.as_bytes());
        }
        for chunk in block.chunks(0xffff - 7) {
            push_padded(&mut bytes, &mut headers, kind::PARAMS, 1, chunk);
        }
        push_padded(&mut bytes, &mut headers, kind::PARAMS, 1, &[]);
        for chunk in body.chunks(STDIN_CHUNK) {
            push_padded(&mut bytes, &mut headers, kind::STDIN, 1, chunk);
        }
        push_padded(&mut bytes, &mut headers, kind::STDIN, 1, &[]);
        Template {
            bytes,
            headers,
            params_len: block.len(),
            param_count: params.len(),
        }
    }

    /// Writes `id` into every record header of `buf` (a copy of `bytes`).
    pub fn set_id(&self, buf: &mut [u8], id: u16) {
        let b = id.to_be_bytes();
        for &h in &self.headers {
            buf[h + 2] = b[0];
            buf[h + 3] = b[1];
        }
    }
}

/// Why a response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoError {
    BadVersion(u8),
    WrongId {
        got: u16,
        want: u16,
    },
    UnexpectedType(u8),
    BadEndRequest,
    /// Bytes after END_REQUEST (nothing was asked for).
    TrailingData,
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::BadVersion(v) => write!(f, "record with version {v}"),
            ProtoError::WrongId { got, want } => {
                write!(f, "record for request id {got}, expected {want}")
            }
            ProtoError::UnexpectedType(t) => write!(f, "unexpected record type {t}"),
            ProtoError::BadEndRequest => write!(f, "END_REQUEST body is not 8 bytes"),
            ProtoError::TrailingData => write!(f, "bytes after END_REQUEST"),
        }
    }
}

/// How responses are checked against the reference (the first response).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// STDOUT byte for byte.
    Full,
    /// STDOUT length only.
    Length,
    /// Framing, ids and END_REQUEST status only.
    Framing,
}

/// The end of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub app_status: u32,
    pub protocol_status: u8,
    /// STDOUT matched the reference (always true when not checked).
    pub content_ok: bool,
    pub stdout_len: usize,
    pub stderr_len: usize,
    /// Bytes of the input consumed, END_REQUEST included.
    pub consumed: usize,
}

/// Incremental parser of one response at a time.
pub struct Response {
    hdr: [u8; HEADER_LEN],
    hdr_fill: usize,
    /// Current record: type, content left, padding left. `None` between records.
    cur: Option<(u8, usize, usize)>,
    end_body: [u8; 8],
    end_fill: usize,
    stdout_len: usize,
    stderr_len: usize,
    mismatch: bool,
    /// Set for the reference request: STDOUT is kept.
    pub capture: Option<Vec<u8>>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    pub fn new() -> Response {
        Response {
            hdr: [0; HEADER_LEN],
            hdr_fill: 0,
            cur: None,
            end_body: [0; 8],
            end_fill: 0,
            stdout_len: 0,
            stderr_len: 0,
            mismatch: false,
            capture: None,
        }
    }

    /// Ready for the next response.
    pub fn reset(&mut self) {
        self.hdr_fill = 0;
        self.cur = None;
        self.end_fill = 0;
        self.stdout_len = 0;
        self.stderr_len = 0;
        self.mismatch = false;
    }

    fn on_stdout(&mut self, chunk: &[u8], reference: &[u8], verify: Verify) {
        if let Some(c) = self.capture.as_mut() {
            c.extend_from_slice(chunk);
        } else if verify == Verify::Full && !self.mismatch {
            let end = self.stdout_len + chunk.len();
            if end > reference.len() || reference[self.stdout_len..end] != *chunk {
                self.mismatch = true;
            }
        }
        self.stdout_len += chunk.len();
    }

    /// Feeds received bytes. `Ok(Some(end))` once END_REQUEST was parsed.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        want_id: u16,
        reference: &[u8],
        verify: Verify,
    ) -> Result<Option<End>, ProtoError> {
        let total = data.len();
        while !data.is_empty() {
            match self.cur {
                None => {
                    let take = (HEADER_LEN - self.hdr_fill).min(data.len());
                    self.hdr[self.hdr_fill..self.hdr_fill + take].copy_from_slice(&data[..take]);
                    self.hdr_fill += take;
                    data = &data[take..];
                    if self.hdr_fill < HEADER_LEN {
                        break;
                    }
                    self.hdr_fill = 0;
                    let h = Header::decode(&self.hdr);
                    if !h.is_supported() {
                        return Err(ProtoError::BadVersion(h.version));
                    }
                    if h.request_id != want_id {
                        return Err(ProtoError::WrongId {
                            got: h.request_id,
                            want: want_id,
                        });
                    }
                    match h.kind {
                        kind::STDOUT | kind::STDERR => {}
                        kind::END_REQUEST if h.content_length == 8 => {}
                        kind::END_REQUEST => return Err(ProtoError::BadEndRequest),
                        t => return Err(ProtoError::UnexpectedType(t)),
                    }
                    self.cur = Some((
                        h.kind,
                        usize::from(h.content_length),
                        usize::from(h.padding_length),
                    ));
                }
                Some((k, mut content, mut pad)) => {
                    if content > 0 {
                        let take = content.min(data.len());
                        let chunk = &data[..take];
                        match k {
                            kind::STDOUT => self.on_stdout(chunk, reference, verify),
                            kind::STDERR => self.stderr_len += take,
                            _ => {
                                self.end_body[self.end_fill..self.end_fill + take]
                                    .copy_from_slice(chunk);
                                self.end_fill += take;
                            }
                        }
                        data = &data[take..];
                        content -= take;
                    }
                    if content == 0 && pad > 0 {
                        let take = pad.min(data.len());
                        data = &data[take..];
                        pad -= take;
                    }
                    if content > 0 || pad > 0 {
                        // Only when `data` is used up.
                        self.cur = Some((k, content, pad));
                        continue;
                    }
                    self.cur = None;
                    if k == kind::END_REQUEST {
                        let Some(e) = EndRequest::decode(&self.end_body) else {
                            return Err(ProtoError::BadEndRequest);
                        };
                        let content_ok = !self.mismatch
                            && (verify == Verify::Framing
                                || self.capture.is_some()
                                || self.stdout_len == reference.len());
                        return Ok(Some(End {
                            app_status: e.app_status,
                            protocol_status: e.protocol_status,
                            content_ok,
                            stdout_len: self.stdout_len,
                            stderr_len: self.stderr_len,
                            consumed: total - data.len(),
                        }));
                    }
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fcgi::protocol::record::{push_end_of_stream, push_stream_data};

    fn response(id: u16, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push_stream_data(&mut v, kind::STDOUT, id, body);
        push_end_of_stream(&mut v, kind::STDOUT, id);
        v.extend_from_slice(
            &EndRequest {
                app_status: 0,
                protocol_status: 0,
            }
            .record(id),
        );
        v
    }

    #[test]
    fn byte_by_byte_and_whole() {
        let wire = response(7, b"hello");
        let mut r = Response::new();
        for (i, b) in wire.iter().enumerate() {
            let got = r.feed(&[*b], 7, b"hello", Verify::Full).unwrap();
            assert_eq!(got.is_some(), i == wire.len() - 1);
        }
        r.reset();
        let e = r.feed(&wire, 7, b"hello", Verify::Full).unwrap().unwrap();
        assert!(e.content_ok);
        assert_eq!(e.consumed, wire.len());
        r.reset();
        let e = r.feed(&wire, 7, b"hellx", Verify::Full).unwrap().unwrap();
        assert!(!e.content_ok);
        r.reset();
        let e = r.feed(&wire, 7, b"hellx", Verify::Length).unwrap().unwrap();
        assert!(e.content_ok);
        r.reset();
        assert_eq!(
            r.feed(&wire, 8, b"hello", Verify::Full),
            Err(ProtoError::WrongId { got: 7, want: 8 })
        );
    }

    #[test]
    fn template_ids() {
        let t = Template::new(&[("A".into(), "b".into())], &[1; 70000], true);
        let mut b = t.bytes.clone();
        t.set_id(&mut b, 0x1234);
        let mut off = 0;
        let mut n = 0;
        while off < b.len() {
            let h = Header::decode(b[off..off + 8].try_into().unwrap());
            assert_eq!(h.request_id, 0x1234);
            assert_eq!(h.body_len() % 8, 0);
            off += 8 + h.body_len();
            n += 1;
        }
        // BEGIN, PARAMS, empty PARAMS, 3 STDIN, empty STDIN.
        assert_eq!(n, 7);
    }
}
