//! Shared by the `engine` and `capi_streams` targets: the peer (a web
//! server played from the fuzz input), a model of what it sent, and a
//! checker for what the library sent back.
//!
//! Input layout: `[peer script length: u16 LE][peer script][app script]`.
//! The peer script is a list of operations, each a record (or raw bytes):
//!
//! | op & 0x0f | record | operands |
//! |---|---|---|
//! | 0 | BEGIN_REQUEST | id (1 byte), role (1 byte, mod 5), flags |
//! | 1 | PARAMS chunk | n (1 byte), n content bytes |
//! | 2 | empty PARAMS | |
//! | 3 | STDIN chunk | n (2 bytes LE, at most 64 KiB), bytes (see 0x40) |
//! | 4 | empty STDIN | |
//! | 5 | DATA chunk | as STDIN |
//! | 6 | empty DATA | |
//! | 7 | ABORT_REQUEST | |
//! | 8 | GET_VALUES (id 0) | n, n bytes |
//! | 9 | any type, any id | type, id (1 byte), n, n bytes |
//! | 10 | raw garbage | n, n bytes (the model gives up) |
//! | 11 | bad version | version, type, n, n bytes (the model gives up) |
//! | 12 | nginx-like PARAMS | a whole parameter set, encoded, in one record |
//!
//! Modifier bits: 0x10 the record goes to the current id + 1 (another
//! request); 0x20 a padding byte follows the operands; 0x40 (chunks) the
//! content given is repeated to reach n.

#![allow(dead_code)]

use fcgi::protocol::record::{kind, EndRequest, Header, HEADER_LEN};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;

/// A cursor over fuzz bytes that never fails: past the end it yields 0.
pub struct Bytes<'a> {
    pub b: &'a [u8],
}

impl<'a> Bytes<'a> {
    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.b.split_first() {
            Some((x, rest)) => {
                self.b = rest;
                *x
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.b.len());
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        a
    }
}

/// Splits the input into the peer script and the application script.
pub fn split_input(data: &[u8]) -> (&[u8], &[u8]) {
    let mut c = Bytes { b: data };
    let n = usize::from(c.u16());
    let peer = c.take(n);
    (peer, c.b)
}

fn header(out: &mut Vec<u8>, version: u8, t: u8, id: u16, len: usize, pad: u8) {
    let mut h = Header::new(t, id, len as u16);
    h.version = version;
    h.padding_length = pad;
    out.extend_from_slice(&h.encode());
}

fn record(out: &mut Vec<u8>, t: u8, id: u16, content: &[u8], pad: u8) {
    let content = &content[..content.len().min(0xffff)];
    header(out, 1, t, id, content.len(), pad);
    out.extend_from_slice(content);
    // Padding bytes are arbitrary: make them look like a header.
    out.extend((0..pad).map(|i| i.wrapping_mul(37) | 1));
}

/// nginx's fastcgi_params, in its order, for a request to `uri` with a
/// body of `len` bytes.
pub fn nginx_params(uri: &[u8], method: &[u8], len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    let clen = len.to_string();
    let path = uri.split(|&b| b == b'?').next().unwrap_or(b"");
    let query = uri.splitn(2, |&b| b == b'?').nth(1).unwrap_or(b"");
    let body: &[u8] = if len > 0 { b"application/x-www-form-urlencoded" } else { b"" };
    let pairs: [(&[u8], &[u8]); 17] = [
        (b"QUERY_STRING", query),
        (b"REQUEST_METHOD", method),
        (b"CONTENT_TYPE", body),
        (b"CONTENT_LENGTH", if len > 0 { clen.as_bytes() } else { b"" }),
        (b"SCRIPT_NAME", path),
        (b"REQUEST_URI", uri),
        (b"DOCUMENT_URI", path),
        (b"DOCUMENT_ROOT", b"/var/www/html"),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REQUEST_SCHEME", b"http"),
        (b"GATEWAY_INTERFACE", b"CGI/1.1"),
        (b"SERVER_SOFTWARE", b"nginx/1.22.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"REMOTE_PORT", b"51234"),
        (b"SERVER_ADDR", b"127.0.0.1"),
        (b"SERVER_PORT", b"80"),
        (b"SERVER_NAME", b"localhost"),
    ];
    for (n, v) in pairs {
        fcgi::protocol::params::push_pair(&mut p, n, v);
    }
    fcgi::protocol::params::push_pair(&mut p, b"HTTP_HOST", b"localhost");
    fcgi::protocol::params::push_pair(&mut p, b"HTTP_USER_AGENT", b"curl/7.88.1");
    p
}

/// Plays the peer script into wire bytes. Returns the bytes and whether
/// they are well-framed version-1 records only (so the model applies).
pub fn build_wire(script: &[u8]) -> (Vec<u8>, bool) {
    let mut c = Bytes { b: script };
    let mut out = Vec::new();
    let mut clean = true;
    let mut id: u16 = 1;
    while !c.is_empty() {
        let op = c.u8();
        let rid = if op & 0x10 != 0 { id.wrapping_add(1) } else { id };
        let chunk = |c: &mut Bytes| -> Vec<u8> {
            let n = usize::from(c.u16());
            if op & 0x40 != 0 {
                let k = usize::from(c.u8()) + 1;
                let unit = c.take(k);
                let unit: &[u8] = if unit.is_empty() { b"x" } else { unit };
                unit.iter().copied().cycle().take(n).collect()
            } else {
                c.take(n).to_vec()
            }
        };
        let mut content = Vec::new();
        let t;
        let mut rid = rid;
        match op & 0x0f {
            0 => {
                id = u16::from(c.u8());
                rid = if op & 0x10 != 0 { id.wrapping_add(1) } else { id };
                let role = u16::from(c.u8() % 5);
                let flags = c.u8();
                content.extend_from_slice(&[0, role as u8, flags, 0, 0, 0, 0, 0]);
                t = kind::BEGIN_REQUEST;
            }
            1 => {
                let n = usize::from(c.u8());
                content.extend_from_slice(c.take(n));
                t = kind::PARAMS;
            }
            2 => t = kind::PARAMS,
            3 => {
                content = chunk(&mut c);
                t = kind::STDIN;
            }
            4 => t = kind::STDIN,
            5 => {
                content = chunk(&mut c);
                t = kind::DATA;
            }
            6 => t = kind::DATA,
            7 => t = kind::ABORT_REQUEST,
            8 => {
                let n = usize::from(c.u8());
                content.extend_from_slice(c.take(n));
                rid = 0;
                t = kind::GET_VALUES;
            }
            9 => {
                t = c.u8();
                rid = u16::from(c.u8());
                let n = usize::from(c.u8());
                content.extend_from_slice(c.take(n));
            }
            10 => {
                let n = usize::from(c.u8());
                out.extend_from_slice(c.take(n));
                clean = false;
                continue;
            }
            11 => {
                let v = c.u8();
                let tt = c.u8();
                let n = usize::from(c.u8());
                let body = c.take(n);
                header(&mut out, v, tt, rid, body.len(), 0);
                out.extend_from_slice(body);
                if v != 1 {
                    clean = false;
                }
                continue;
            }
            12 => {
                let sel = c.u8();
                let len = usize::from(c.u16());
                let uris: [&[u8]; 4] = [b"/", b"/index.php?a=1&b=2", b"/upload", b"/x/y.cgi?q"];
                let method: &[u8] = if len > 0 { b"POST" } else { b"GET" };
                content = nginx_params(uris[usize::from(sel % 4)], method, len);
                t = kind::PARAMS;
            }
            _ => {
                // Unassigned: an unknown record type for the request.
                t = 12 + (op >> 4);
            }
        }
        let pad = if op & 0x20 != 0 { c.u8() } else { 0 };
        record(&mut out, t, rid, &content, pad);
    }
    (out, clean)
}

/// One request as the peer sent it: what the engine must deliver if it
/// serves this BEGIN_REQUEST.
#[derive(Debug, Default, Clone)]
pub struct ModelRequest {
    pub id: u16,
    pub role: u16,
    pub keep_conn: bool,
    /// The PARAMS content up to the empty PARAMS record (None: never ended).
    pub params: Option<Vec<u8>>,
    pub stdin: Vec<u8>,
    /// The empty STDIN record was sent.
    pub stdin_done: bool,
    pub data: Vec<u8>,
    pub data_done: bool,
}

/// Frames `wire` into records (the wire is known to be clean).
pub fn frame(mut b: &[u8]) -> Vec<(Header, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= HEADER_LEN {
        let h = Header::decode(b[..HEADER_LEN].try_into().unwrap());
        let rest = &b[HEADER_LEN..];
        if rest.len() < h.body_len() {
            break;
        }
        out.push((h, &rest[..usize::from(h.content_length)]));
        b = &rest[h.body_len()..];
    }
    out
}

/// Every BEGIN_REQUEST (8-byte body, non-zero id) of a clean wire with the
/// streams that follow it for its id: STDIN up to its empty record or an
/// ABORT_REQUEST for the id, likewise DATA and PARAMS.
pub fn model(wire: &[u8]) -> Vec<ModelRequest> {
    let recs = frame(wire);
    let mut reqs = Vec::new();
    for (i, (h, c)) in recs.iter().enumerate() {
        if h.kind != kind::BEGIN_REQUEST || h.request_id == 0 || c.len() != 8 {
            continue;
        }
        let mut m = ModelRequest {
            id: h.request_id,
            role: u16::from_be_bytes([c[0], c[1]]),
            keep_conn: c[2] & 1 != 0,
            ..Default::default()
        };
        let mut params = Vec::new();
        let (mut p_open, mut s_open, mut d_open) = (true, true, true);
        for (h2, c2) in &recs[i + 1..] {
            if h2.request_id != m.id {
                continue;
            }
            match h2.kind {
                kind::ABORT_REQUEST => break,
                kind::PARAMS if p_open => {
                    if c2.is_empty() {
                        p_open = false;
                        m.params = Some(std::mem::take(&mut params));
                    } else {
                        params.extend_from_slice(c2);
                    }
                }
                kind::STDIN if s_open => {
                    if c2.is_empty() {
                        s_open = false;
                        m.stdin_done = true;
                    } else {
                        m.stdin.extend_from_slice(c2);
                    }
                }
                kind::DATA if d_open => {
                    if c2.is_empty() {
                        d_open = false;
                        m.data_done = true;
                    } else {
                        m.data.extend_from_slice(c2);
                    }
                }
                _ => {}
            }
        }
        reqs.push(m);
    }
    reqs
}

/// The pairs of a PARAMS block, decoded independently of the library.
pub fn ref_pairs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    fn len(b: &[u8]) -> Option<(usize, usize)> {
        let f = *b.first()?;
        if f < 0x80 {
            return Some((usize::from(f), 1));
        }
        let x = b.get(..4)?;
        Some(((u32::from_be_bytes([x[0] & 0x7f, x[1], x[2], x[3]])) as usize, 4))
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let (n, a) = len(b)?;
        let (v, c) = len(&b[a..])?;
        let body = &b[a + c..];
        if n.checked_add(v)? > body.len() {
            return None;
        }
        out.push((body[..n].to_vec(), body[n..n + v].to_vec()));
        b = &body[n + v..];
    }
    Some(out)
}

/// Pairs as a C program sees them in envp: `NAME=value` cut at its first
/// NUL, split at its first `=` (none: all name).
pub fn c_view(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs
        .iter()
        .map(|(n, v)| {
            let mut s = n.clone();
            s.push(b'=');
            s.extend_from_slice(v);
            c_split(&s)
        })
        .collect()
}

/// Splits one envp string (up to its NUL) at its first `=`.
pub fn c_split(s: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    match s.iter().position(|&b| b == b'=') {
        Some(i) => (s[..i].to_vec(), s[i + 1..].to_vec()),
        None => (s.to_vec(), Vec::new()),
    }
}

/// What the application did in one served request.
#[derive(Debug, Default)]
pub struct Served {
    pub id: u16,
    pub role: u16,
    pub keep_conn: bool,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes read from the stream's own records (pushed-back bytes aside).
    pub stdin: Vec<u8>,
    pub data: Vec<u8>,
    /// A read of STDIN / DATA ended at a clean end of stream.
    pub stdin_eof: bool,
    pub data_eof: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// A write, flush or close failed, or the request was not finished
    /// normally: its output is not compared.
    pub out_error: bool,
    pub exit_status: i32,
}

/// Checks the application's view of each served request against the
/// model (for a clean wire): matched in order with BEGIN_REQUESTs of the
/// same id, role, flags and parameters, whose STDIN (and DATA) the bytes
/// read are a prefix of, and all of it when the read saw a clean end.
/// With `c_view`, parameters are compared as a C program sees them in
/// envp ([`c_view`]).
pub fn check_served(model: &[ModelRequest], served: &[Served], c_view: bool) {
    let mut next = 0;
    for (k, s) in served.iter().enumerate() {
        let fits = |m: &ModelRequest| {
            let sent = m.params.as_deref().and_then(ref_pairs);
            let sent = if c_view { sent.map(|p| self::c_view(&p)) } else { sent };
            m.id == s.id
                && m.role == s.role
                && m.keep_conn == s.keep_conn
                && sent.as_ref() == Some(&s.params)
                && m.stdin.starts_with(&s.stdin)
                && (!s.stdin_eof || (m.stdin_done && m.stdin == s.stdin))
                && m.data.starts_with(&s.data)
                && (!s.data_eof || (m.data_done && m.data == s.data))
        };
        match model[next..].iter().position(fits) {
            Some(i) => next += i + 1,
            None => panic!(
                "served request {k} (id {}, role {}, {} params, {} stdin bytes, eof {}) \
                 matches no BEGIN_REQUEST the peer sent from #{next}: {:?}",
                s.id,
                s.role,
                s.params.len(),
                s.stdin.len(),
                s.stdin_eof,
                model
                    .iter()
                    .map(|m| (m.id, m.role, m.params.is_some(), m.stdin.len(), m.stdin_done))
                    .collect::<Vec<_>>()
            ),
        }
    }
}

/// One request's answer on the wire: from its first record to its
/// END_REQUEST.
#[derive(Debug, Default)]
pub struct Answer {
    pub id: u16,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stdout_records: usize,
    pub stdout_ended: bool,
    pub end: Option<EndRequest>,
}

/// Parses what the library sent: every record version 1, of a type it
/// may send, with a body that is all there; END_REQUEST bodies 8 bytes;
/// nothing after a stream's empty record. Returns the answers ending in
/// END_REQUEST, in order.
pub fn check_output(mut b: &[u8]) -> Vec<Answer> {
    let mut open: Vec<Answer> = Vec::new();
    let mut done = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= HEADER_LEN, "output ends inside a header: {b:?}");
        let h = Header::decode(b[..HEADER_LEN].try_into().unwrap());
        assert_eq!(h.version, 1, "output record version");
        assert_eq!(b[7], 0, "reserved byte");
        let rest = &b[HEADER_LEN..];
        assert!(rest.len() >= h.body_len(), "output ends inside a record: {h:?}");
        let c = &rest[..usize::from(h.content_length)];
        b = &rest[h.body_len()..];
        match h.kind {
            kind::STDOUT | kind::STDERR | kind::END_REQUEST => {
                assert_ne!(h.request_id, 0, "request record with id 0");
                let i = match open.iter().position(|a| a.id == h.request_id) {
                    Some(i) => i,
                    None => {
                        open.push(Answer { id: h.request_id, ..Default::default() });
                        open.len() - 1
                    }
                };
                let a = &mut open[i];
                match h.kind {
                    kind::STDOUT => {
                        assert!(!a.stdout_ended, "STDOUT after its end");
                        a.stdout_records += 1;
                        a.stdout_ended = c.is_empty();
                        a.stdout.extend_from_slice(c);
                    }
                    kind::STDERR => a.stderr.extend_from_slice(c),
                    _ => {
                        assert_eq!(c.len(), 8, "END_REQUEST body");
                        let mut a = open.remove(i);
                        a.end = EndRequest::decode(c);
                        assert!(a.end.unwrap().protocol_status <= 3);
                        done.push(a);
                    }
                }
            }
            kind::GET_VALUES_RESULT | kind::UNKNOWN_TYPE => {
                assert_eq!(h.request_id, 0, "management reply with an id");
                if h.kind == kind::UNKNOWN_TYPE {
                    assert_eq!(c.len(), 8, "UNKNOWN_TYPE body");
                } else {
                    assert!(ref_pairs(c).is_some(), "GET_VALUES_RESULT pairs");
                }
            }
            t => panic!("output record of type {t}"),
        }
    }
    done
}

/// Compares the answers with what the served requests wrote: served
/// requests' answers are those with STDOUT records, in order.
pub fn check_answers(answers: &[Answer], served: &[Served], complete: bool) {
    let mine: Vec<&Answer> = answers.iter().filter(|a| a.stdout_records > 0).collect();
    for a in &mine {
        assert!(a.stdout_ended, "an answer whose STDOUT was not ended");
    }
    if !complete {
        return;
    }
    assert_eq!(mine.len(), served.len(), "one answer per served request");
    for (a, s) in mine.iter().zip(served) {
        assert_eq!(a.id, s.id);
        if s.out_error {
            continue;
        }
        assert!(a.stdout == s.stdout, "STDOUT differs from what was written");
        assert!(a.stderr == s.stderr, "STDERR differs from what was written");
        assert_eq!(a.end.unwrap().app_status, s.exit_status as u32);
    }
}

/// The peer's end: a thread writes `wire` then shuts down writing,
/// another reads everything the library sends.
pub struct Peer {
    writer: JoinHandle<()>,
    reader: JoinHandle<Vec<u8>>,
}

impl Peer {
    pub fn start(peer: UnixStream, wire: Vec<u8>) -> Peer {
        let mut w = peer.try_clone().expect("clone the peer socket");
        let mut r = peer;
        let writer = std::thread::spawn(move || {
            // The library may close early (a protocol error): EPIPE is fine.
            let _ = w.write_all(&wire);
            let _ = w.shutdown(std::net::Shutdown::Write);
        });
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let _ = r.read_to_end(&mut got);
            got
        });
        Peer { writer, reader }
    }

    /// Waits for the library's side to be closed; what it sent.
    pub fn finish(self) -> Vec<u8> {
        self.writer.join().expect("writer thread");
        self.reader.join().expect("reader thread")
    }
}

/// The library's settings for fuzzing: no log, short timeouts, a short
/// drain at close. Call before any library call.
pub fn quiet_library() {
    std::env::set_var("LIBFCGI_LOG", "off");
    std::env::set_var("LIBFCGI_OS_CLOSE_POLL_TIMEOUT", "200");
    std::env::set_var("LIBFCGI_HEAD_TIMEOUT", "2000");
    std::env::set_var("LIBFCGI_STDIN_TIMEOUT", "2000");
    std::env::set_var("LIBFCGI_WRITE_TIMEOUT", "2000");
    std::env::set_var("LIBFCGI_MAX_PARAMS", "50");
    std::env::set_var("LIBFCGI_MAX_PARAMS_SIZE", "100000");
}
