//! A blocking FastCGI client: the web-server side of the protocol.
//!
//! Built on the pure codec in [`crate::protocol`]. It is meant for tests
//! (including hostile ones: [`Client::send_raw`] and [`Client::read_record`]
//! put arbitrary bytes on the wire and show whatever comes back), for a load
//! generator and for a command-line tool.
//!
//! ```no_run
//! use fcgi::client::{Client, Request};
//! let mut c = Client::connect("127.0.0.1:9000").unwrap();
//! let req = Request::responder().param("REQUEST_METHOD", "POST").stdin(b"hello".to_vec());
//! let resp = c.request(&req).unwrap();
//! println!("{}", String::from_utf8_lossy(&resp.stdout));
//! ```
//!
//! Addresses follow libfcgi's `FCGX_OpenSocket` syntax: `"host:port"` or
//! `":port"` (TCP; an empty host means the loopback address here) and
//! anything else (or a `unix:` prefix) is a Unix socket path.

use crate::protocol::{
    BeginRequest, EndRequest, HEADER_LEN, Header, MAX_CONTENT_LEN, kind, push_pair, role,
};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Name-value pairs, owned (PARAMS, GET_VALUES_RESULT).
pub type PairList = Vec<(Vec<u8>, Vec<u8>)>;

/// Default size of the STDIN and DATA records [`encode_request`] produces.
pub const DEFAULT_RECORD_SIZE: usize = 8192;

/// Why a client operation failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// No byte arrived within the read timeout.
    #[error("timed out waiting for the application")]
    Timeout,
    /// The peer closed the connection at a record boundary.
    #[error("connection closed by the application")]
    Closed,
    /// The peer closed the connection in the middle of a record.
    #[error("connection closed in the middle of a record ({have} of {need} bytes)")]
    Truncated { have: usize, need: usize },
    /// The peer sent something a FastCGI application must not send.
    #[error("protocol violation by the application: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether the connection ended (cleanly, mid-record, or by a reset).
    pub fn is_disconnect(&self) -> bool {
        match self {
            ClientError::Closed | ClientError::Truncated { .. } => true,
            ClientError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

/// Where an application listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// `host:port` (host may be a name, an IPv4 address or `[v6]`).
    Tcp(String),
    Unix(PathBuf),
}

impl Addr {
    /// Parses the `FCGX_OpenSocket` syntax (see the module documentation).
    pub fn parse(text: &str) -> Addr {
        if let Some(path) = text.strip_prefix("unix:") {
            return Addr::Unix(path.into());
        }
        if !text.contains('/') {
            if let Some((host, port)) = text.rsplit_once(':') {
                if port.parse::<u16>().is_ok_and(|p| p != 0) {
                    let host = if host.is_empty() || host == "*" {
                        "127.0.0.1"
                    } else {
                        host
                    };
                    return Addr::Tcp(format!("{host}:{port}"));
                }
            }
        }
        Addr::Unix(text.into())
    }
}

#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match self {
            Stream::Tcp(s) => s.read_timeout(),
            Stream::Unix(s) => s.read_timeout(),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how),
            Stream::Unix(s) => s.shutdown(how),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One request as a web server would send it. Built with the chained
/// setters; [`encode_request`] turns it into wire bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u16,
    pub role: u16,
    pub keep_conn: bool,
    pub params: PairList,
    pub stdin: Vec<u8>,
    /// The FCGI_DATA stream (FILTER role). `None`: no DATA records at all.
    pub data: Option<Vec<u8>>,
    /// Content bytes per STDIN/DATA record (1..=65535).
    pub record_size: usize,
    /// Content bytes per PARAMS record (1..=65535); a pair may straddle records.
    pub params_record_size: usize,
    /// Pad every non-empty record to a multiple of 8 bytes, as the
    /// specification recommends (padding bytes are zero).
    pub align: bool,
    /// Send the empty STDIN record that ends the body.
    pub end_stdin: bool,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            id: 1,
            role: role::RESPONDER,
            keep_conn: false,
            params: Vec::new(),
            stdin: Vec::new(),
            data: None,
            record_size: DEFAULT_RECORD_SIZE,
            params_record_size: MAX_CONTENT_LEN,
            align: false,
            end_stdin: true,
        }
    }
}

impl Request {
    pub fn responder() -> Request {
        Request::default()
    }

    pub fn authorizer() -> Request {
        Request {
            role: role::AUTHORIZER,
            ..Request::default()
        }
    }

    /// A FILTER request; its DATA stream starts empty.
    pub fn filter() -> Request {
        Request {
            role: role::FILTER,
            data: Some(Vec::new()),
            ..Request::default()
        }
    }

    pub fn id(mut self, id: u16) -> Request {
        self.id = id;
        self
    }

    pub fn role(mut self, role: u16) -> Request {
        self.role = role;
        self
    }

    pub fn keep_conn(mut self, keep: bool) -> Request {
        self.keep_conn = keep;
        self
    }

    pub fn param(mut self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Request {
        self.params
            .push((name.as_ref().to_vec(), value.as_ref().to_vec()));
        self
    }

    pub fn params<N: AsRef<[u8]>, V: AsRef<[u8]>>(
        mut self,
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Request {
        self.params.extend(
            pairs
                .into_iter()
                .map(|(n, v)| (n.as_ref().to_vec(), v.as_ref().to_vec())),
        );
        self
    }

    pub fn stdin(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.stdin = body.into();
        self
    }

    pub fn data(mut self, data: impl Into<Vec<u8>>) -> Request {
        self.data = Some(data.into());
        self
    }

    /// Content bytes per STDIN/DATA record, clamped to 1..=65535.
    pub fn record_size(mut self, n: usize) -> Request {
        self.record_size = n.clamp(1, MAX_CONTENT_LEN);
        self
    }

    /// Content bytes per PARAMS record, clamped to 1..=65535.
    pub fn params_record_size(mut self, n: usize) -> Request {
        self.params_record_size = n.clamp(1, MAX_CONTENT_LEN);
        self
    }

    pub fn align(mut self, align: bool) -> Request {
        self.align = align;
        self
    }

    pub fn end_stdin(mut self, end: bool) -> Request {
        self.end_stdin = end;
        self
    }

    /// The first value of parameter `name`.
    pub fn get_param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Appends one record with `padding` zero bytes of padding. Content longer
/// than 65535 bytes is cut (use [`push_stream`] for long data).
pub fn push_padded_record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8], padding: u8) {
    let content = &content[..content.len().min(MAX_CONTENT_LEN)];
    let len = u16::try_from(content.len()).unwrap_or(u16::MAX);
    let h = Header {
        padding_length: padding,
        ..Header::new(kind, id, len)
    };
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(content);
    out.resize(out.len() + usize::from(padding), 0);
}

/// The padding that brings `len` content bytes to a multiple of 8.
pub fn padding_for(len: usize) -> u8 {
    ((8 - len % 8) % 8) as u8
}

/// One record as wire bytes, without padding.
pub fn record(kind: u8, id: u16, content: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + content.len());
    push_padded_record(&mut v, kind, id, content, 0);
    v
}

/// Appends `data` as records of at most `chunk` bytes (no end-of-stream
/// record; nothing at all for empty data).
pub fn push_stream(out: &mut Vec<u8>, kind: u8, id: u16, data: &[u8], chunk: usize, align: bool) {
    for piece in data.chunks(chunk.clamp(1, MAX_CONTENT_LEN)) {
        let pad = if align { padding_for(piece.len()) } else { 0 };
        push_padded_record(out, kind, id, piece, pad);
    }
}

/// Encodes name-value pairs as a PARAMS / GET_VALUES block.
pub fn encode_pairs<N: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: impl IntoIterator<Item = (N, V)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        push_pair(&mut out, n.as_ref(), v.as_ref());
    }
    out
}

/// The wire bytes of a whole request: BEGIN_REQUEST, the PARAMS stream and
/// its end, the STDIN stream (and its end unless `end_stdin` is off), and
/// for a request with `data` the DATA stream and its end.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let params = encode_pairs(req.params.iter().map(|(n, v)| (n, v)));
    let data_len = req.data.as_ref().map_or(0, Vec::len);
    let mut out =
        Vec::with_capacity(64 + params.len() + req.stdin.len() * 9 / 8 + data_len * 9 / 8);
    let flags = if req.keep_conn {
        crate::protocol::record::KEEP_CONN
    } else {
        0
    };
    let begin = BeginRequest {
        role: req.role,
        flags,
    }
    .encode();
    push_padded_record(&mut out, kind::BEGIN_REQUEST, req.id, &begin, 0);
    push_stream(
        &mut out,
        kind::PARAMS,
        req.id,
        &params,
        req.params_record_size,
        req.align,
    );
    push_padded_record(&mut out, kind::PARAMS, req.id, &[], 0);
    push_stream(
        &mut out,
        kind::STDIN,
        req.id,
        &req.stdin,
        req.record_size,
        req.align,
    );
    if req.end_stdin {
        push_padded_record(&mut out, kind::STDIN, req.id, &[], 0);
    }
    if let Some(data) = &req.data {
        push_stream(
            &mut out,
            kind::DATA,
            req.id,
            data,
            req.record_size,
            req.align,
        );
        push_padded_record(&mut out, kind::DATA, req.id, &[], 0);
    }
    out
}

/// A GET_VALUES record asking for `names`.
pub fn encode_get_values<N: AsRef<[u8]>>(names: impl IntoIterator<Item = N>) -> Vec<u8> {
    let block = encode_pairs(names.into_iter().map(|n| (n, b"")));
    record(kind::GET_VALUES, 0, &block)
}

/// One record received from the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub header: Header,
    pub content: Vec<u8>,
    /// The padding bytes as received (a careful sender zeroes them).
    pub padding: Vec<u8>,
}

impl Record {
    /// The decoded END_REQUEST body, if this is a well-formed END_REQUEST.
    pub fn end_request(&self) -> Option<EndRequest> {
        if self.header.kind == kind::END_REQUEST {
            EndRequest::decode(&self.content)
        } else {
            None
        }
    }

    /// The name-value pairs of a GET_VALUES_RESULT (or any pair block);
    /// `None` if malformed.
    pub fn pairs(&self) -> Option<PairList> {
        crate::protocol::pairs(&self.content)
            .map(|p| p.ok().map(|(n, v)| (n.to_vec(), v.to_vec())))
            .collect()
    }
}

/// The application's answer to one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    pub request_id: u16,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub app_status: u32,
    pub protocol_status: u8,
    /// Headers of every record of this request, END_REQUEST included, in
    /// arrival order.
    pub records: Vec<Header>,
    /// Records for other request ids or management records that arrived
    /// while this response was read.
    pub other_records: Vec<Record>,
    /// The empty STDOUT record that ends the stream was received.
    pub stdout_ended: bool,
    /// The empty STDERR record was received.
    pub stderr_ended: bool,
    /// Sending the request failed after the response had begun (set by
    /// [`Client::request`] only; the application may close early on purpose).
    pub send_error: Option<io::ErrorKind>,
}

impl Response {
    /// Where the CGI header block of STDOUT ends (index of the body).
    pub fn body_start(&self) -> Option<usize> {
        let crlf = find(&self.stdout, b"\r\n\r\n").map(|i| i + 4);
        let lf = find(&self.stdout, b"\n\n").map(|i| i + 2);
        match (crlf, lf) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The CGI headers of STDOUT as (name, value) pairs, value trimmed.
    pub fn cgi_headers(&self) -> Vec<(String, String)> {
        let end = self.body_start().unwrap_or(0);
        String::from_utf8_lossy(&self.stdout[..end])
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// The first CGI header called `name` (case-insensitive).
    pub fn cgi_header(&self, name: &str) -> Option<String> {
        self.cgi_headers()
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// STDOUT after the CGI header block (all of it if there is none).
    pub fn body(&self) -> &[u8] {
        &self.stdout[self.body_start().unwrap_or(0)..]
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Feeds received records into a [`Response`] for request `id`.
/// Returns `Ok(true)` once END_REQUEST for `id` has been seen.
fn absorb(resp: &mut Response, rec: Record) -> Result<bool, ClientError> {
    let h = rec.header;
    if h.request_id != resp.request_id || h.is_management() {
        resp.other_records.push(rec);
        return Ok(false);
    }
    resp.records.push(h);
    match h.kind {
        kind::STDOUT | kind::STDERR => {
            let (buf, ended) = if h.kind == kind::STDOUT {
                (&mut resp.stdout, &mut resp.stdout_ended)
            } else {
                (&mut resp.stderr, &mut resp.stderr_ended)
            };
            if *ended {
                return Err(ClientError::Protocol(format!(
                    "record of type {} after the end of its stream",
                    h.kind
                )));
            }
            if rec.content.is_empty() {
                *ended = true;
            } else {
                buf.extend_from_slice(&rec.content);
            }
            Ok(false)
        }
        kind::END_REQUEST => {
            let end = rec.end_request().ok_or_else(|| {
                ClientError::Protocol(format!(
                    "END_REQUEST with {} content bytes",
                    rec.content.len()
                ))
            })?;
            resp.app_status = end.app_status;
            resp.protocol_status = end.protocol_status;
            Ok(true)
        }
        k => Err(ClientError::Protocol(format!(
            "unexpected record type {k} for request {}",
            h.request_id
        ))),
    }
}

/// What [`Client::drain`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// The peer closed the connection (EOF).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Nothing more arrived within the idle time; the connection is open.
    Idle,
}

/// A connection to a FastCGI application.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
}

const READ_CHUNK: usize = 64 * 1024;

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl Client {
    /// Connects to `addr` (see [`Addr::parse`]).
    pub fn connect(addr: &str) -> io::Result<Client> {
        Client::connect_addr(&Addr::parse(addr))
    }

    pub fn connect_addr(addr: &Addr) -> io::Result<Client> {
        let stream = match addr {
            Addr::Tcp(hp) => Stream::Tcp(TcpStream::connect(hp)?),
            Addr::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
        };
        Ok(Client::from_stream(stream))
    }

    /// Connects with a bound on the TCP connect time (Unix sockets connect
    /// at once or fail).
    pub fn connect_timeout(addr: &str, timeout: Duration) -> io::Result<Client> {
        match Addr::parse(addr) {
            Addr::Tcp(hp) => {
                let mut last =
                    io::Error::new(io::ErrorKind::NotFound, format!("no address for {hp}"));
                for sa in hp.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&sa, timeout) {
                        Ok(s) => return Ok(Client::from_stream(Stream::Tcp(s))),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
            a @ Addr::Unix(_) => Client::connect_addr(&a),
        }
    }

    pub fn from_tcp(s: TcpStream) -> Client {
        Client::from_stream(Stream::Tcp(s))
    }

    pub fn from_unix(s: UnixStream) -> Client {
        Client::from_stream(Stream::Unix(s))
    }

    fn from_stream(stream: Stream) -> Client {
        if let Stream::Tcp(s) = &stream {
            let _ = s.set_nodelay(true);
        }
        Client {
            stream,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Bounds every wait for the application (`None`: wait forever).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(t)
    }

    /// Builder form of both timeouts.
    pub fn with_timeout(self, t: Duration) -> io::Result<Client> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))?;
        Ok(self)
    }

    /// Sends the whole request. For a large body that the application
    /// echoes while reading, use [`Client::request`] instead, which reads
    /// while it sends.
    pub fn send(&mut self, req: &Request) -> io::Result<()> {
        self.send_raw(&encode_request(req))
    }

    /// Sends arbitrary bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the sending direction (the application sees EOF).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Shuts the connection down in one or both directions (unlike a drop,
    /// this also affects clones made with [`Client::try_clone`]).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }

    /// A second handle on the same connection with its own read buffer,
    /// e.g. to send from one thread while another reads.
    pub fn try_clone(&self) -> io::Result<Client> {
        Ok(Client {
            stream: self.stream.try_clone()?,
            buf: Vec::new(),
            start: 0,
        })
    }

    /// Bytes received but not yet handed out as records.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Reads more bytes into the buffer. `Ok(0)` at EOF.
    fn fill(&mut self) -> Result<usize, ClientError> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > READ_CHUNK {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let r = loop {
            match self.stream.read(&mut self.buf[old..]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(old);
                return Err(if is_timeout(&e) {
                    ClientError::Timeout
                } else {
                    ClientError::Io(e)
                });
            }
        };
        self.buf.truncate(old + n);
        Ok(n)
    }

    fn need(&mut self, n: usize) -> Result<(), ClientError> {
        while self.buf.len() - self.start < n {
            if self.fill()? == 0 {
                let have = self.buf.len() - self.start;
                return Err(if have == 0 {
                    ClientError::Closed
                } else {
                    ClientError::Truncated { have, need: n }
                });
            }
        }
        Ok(())
    }

    /// Reads the next record, whatever it is. A header with a version other
    /// than 1 is a protocol error (the bytes stay buffered; see
    /// [`Client::buffered`]).
    pub fn read_record(&mut self) -> Result<Record, ClientError> {
        self.need(HEADER_LEN)?;
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let header = Header::decode(&raw);
        if !header.is_supported() {
            return Err(ClientError::Protocol(format!(
                "record header with version {}: {raw:02x?}",
                header.version
            )));
        }
        self.need(HEADER_LEN + header.body_len())?;
        let c = self.start + HEADER_LEN;
        let p = c + usize::from(header.content_length);
        let end = c + header.body_len();
        let rec = Record {
            header,
            content: self.buf[c..p].to_vec(),
            padding: self.buf[p..end].to_vec(),
        };
        self.start = end;
        Ok(rec)
    }

    /// Reads records until END_REQUEST for `id`; records of other ids and
    /// management records are kept in [`Response::other_records`].
    pub fn read_response(&mut self, id: u16) -> Result<Response, ClientError> {
        let mut resp = Response {
            request_id: id,
            ..Response::default()
        };
        loop {
            let rec = self.read_record()?;
            if absorb(&mut resp, rec)? {
                return Ok(resp);
            }
        }
    }

    /// Sends `req` and reads its response, sending from a second thread so
    /// that an application echoing a large body never deadlocks with us.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        let bytes = encode_request(req);
        if bytes.len() <= 64 * 1024 {
            self.send_raw(&bytes)?;
            return self.read_response(req.id);
        }
        let mut writer = self.stream.try_clone()?;
        std::thread::scope(|s| {
            let sender = s.spawn(move || writer.write_all(&bytes));
            let got = self.read_response(req.id);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("sender thread panicked")));
            match (got, sent) {
                (Ok(mut resp), Err(e)) => {
                    resp.send_error = Some(e.kind());
                    Ok(resp)
                }
                (got, _) => got,
            }
        })
    }

    /// Asks the application for `names` with GET_VALUES and returns the
    /// pairs of its GET_VALUES_RESULT (records of other types are skipped).
    pub fn get_values<N: AsRef<[u8]>>(
        &mut self,
        names: impl IntoIterator<Item = N>,
    ) -> Result<PairList, ClientError> {
        self.send_raw(&encode_get_values(names))?;
        loop {
            let rec = self.read_record()?;
            if rec.header.kind == kind::GET_VALUES_RESULT && rec.header.is_management() {
                return rec
                    .pairs()
                    .ok_or_else(|| ClientError::Protocol("malformed GET_VALUES_RESULT".into()));
            }
        }
    }

    /// Reads whatever arrives until the peer closes the connection or
    /// nothing arrives for `idle`, for at most `limit` overall. Returns the
    /// bytes (including those already buffered) and how it ended.
    pub fn drain(
        &mut self,
        idle: Duration,
        limit: Duration,
    ) -> Result<(Vec<u8>, DrainEnd), ClientError> {
        let saved = self.stream.read_timeout()?;
        let result = self.drain_inner(idle, limit);
        self.stream.set_read_timeout(saved)?;
        result
    }

    fn drain_inner(
        &mut self,
        idle: Duration,
        limit: Duration,
    ) -> Result<(Vec<u8>, DrainEnd), ClientError> {
        let deadline = Instant::now() + limit;
        let mut out = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok((out, DrainEnd::Idle));
            }
            self.stream
                .set_read_timeout(Some(idle.min(left).max(Duration::from_millis(1))))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok((out, DrainEnd::Closed)),
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => return Ok((out, DrainEnd::Idle)),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    return Ok((out, DrainEnd::Reset));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// Splits raw bytes into records; the second value is the trailing bytes
/// that do not form a whole record (or start with a bad version byte).
pub fn parse_records(mut bytes: &[u8]) -> (Vec<Record>, &[u8]) {
    let mut out = Vec::new();
    while bytes.len() >= HEADER_LEN {
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&bytes[..HEADER_LEN]);
        let header = Header::decode(&raw);
        if !header.is_supported() || bytes.len() < HEADER_LEN + header.body_len() {
            break;
        }
        let p = HEADER_LEN + usize::from(header.content_length);
        let end = HEADER_LEN + header.body_len();
        out.push(Record {
            header,
            content: bytes[HEADER_LEN..p].to_vec(),
            padding: bytes[p..end].to_vec(),
        });
        bytes = &bytes[end..];
    }
    (out, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{pairs, status};

    fn headers(bytes: &[u8]) -> Vec<Header> {
        let (recs, rest) = parse_records(bytes);
        assert!(rest.is_empty(), "trailing bytes {rest:?}");
        recs.into_iter().map(|r| r.header).collect()
    }

    #[test]
    fn address_syntax() {
        assert_eq!(Addr::parse(":9000"), Addr::Tcp("127.0.0.1:9000".into()));
        assert_eq!(Addr::parse("*:9000"), Addr::Tcp("127.0.0.1:9000".into()));
        assert_eq!(Addr::parse("10.0.0.1:80"), Addr::Tcp("10.0.0.1:80".into()));
        assert_eq!(Addr::parse("[::1]:80"), Addr::Tcp("[::1]:80".into()));
        assert_eq!(Addr::parse("/tmp/x.sock"), Addr::Unix("/tmp/x.sock".into()));
        assert_eq!(Addr::parse("/tmp/a:1"), Addr::Unix("/tmp/a:1".into()));
        assert_eq!(Addr::parse("sock"), Addr::Unix("sock".into()));
        assert_eq!(Addr::parse("host:0"), Addr::Unix("host:0".into()));
        assert_eq!(Addr::parse("unix:rel:80"), Addr::Unix("rel:80".into()));
    }

    #[test]
    fn encode_simple_request() {
        let req = Request::responder()
            .id(7)
            .keep_conn(true)
            .param("A", "b")
            .stdin(b"xyz".to_vec());
        let wire = encode_request(&req);
        let mut expect = vec![1, 1, 0, 7, 0, 8, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0];
        expect.extend_from_slice(&[1, 4, 0, 7, 0, 4, 0, 0, 1, 1, b'A', b'b']);
        expect.extend_from_slice(&[1, 4, 0, 7, 0, 0, 0, 0]);
        expect.extend_from_slice(&[1, 5, 0, 7, 0, 3, 0, 0, b'x', b'y', b'z']);
        expect.extend_from_slice(&[1, 5, 0, 7, 0, 0, 0, 0]);
        assert_eq!(wire, expect);
    }

    #[test]
    fn body_split_into_records_with_alignment() {
        let body: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let req = Request::responder()
            .stdin(body.clone())
            .record_size(300)
            .align(true);
        let wire = encode_request(&req);
        let (recs, rest) = parse_records(&wire);
        assert!(rest.is_empty());
        let stdin: Vec<&Record> = recs
            .iter()
            .filter(|r| r.header.kind == kind::STDIN)
            .collect();
        let lens: Vec<u16> = stdin.iter().map(|r| r.header.content_length).collect();
        assert_eq!(lens, vec![300, 300, 300, 100, 0]);
        // 300 % 8 = 4 -> 4 bytes of padding; 100 % 8 = 4 -> 4; empty record: none.
        let pads: Vec<u8> = stdin.iter().map(|r| r.header.padding_length).collect();
        assert_eq!(pads, vec![4, 4, 4, 4, 0]);
        let joined: Vec<u8> = stdin.iter().flat_map(|r| r.content.clone()).collect();
        assert_eq!(joined, body);
        assert!(stdin.iter().all(|r| r.padding.iter().all(|&b| b == 0)));
    }

    #[test]
    fn params_may_straddle_records() {
        let long = vec![b'v'; 200];
        let req = Request::responder()
            .param("NAME", &long)
            .param("X", "")
            .params_record_size(50);
        let wire = encode_request(&req);
        let (recs, _) = parse_records(&wire);
        let block: Vec<u8> = recs
            .iter()
            .filter(|r| r.header.kind == kind::PARAMS)
            .flat_map(|r| r.content.clone())
            .collect();
        let got: Vec<_> = pairs(&block).map(Result::unwrap).collect();
        assert_eq!(got, vec![(&b"NAME"[..], &long[..]), (&b"X"[..], &b""[..])]);
        let n = recs
            .iter()
            .filter(|r| r.header.kind == kind::PARAMS)
            .count();
        // 209 + 3 = 212 bytes of pairs in 50-byte records, then the empty one.
        assert_eq!(n, 5 + 1);
        assert_eq!(req.get_param(b"NAME"), Some(&long[..]));
    }

    #[test]
    fn filter_has_data_stream_and_no_stdin_end_when_asked() {
        let req = Request::filter().data(b"d".to_vec()).end_stdin(false).id(3);
        let kinds: Vec<(u8, u16)> = headers(&encode_request(&req))
            .iter()
            .map(|h| (h.kind, h.content_length))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (kind::BEGIN_REQUEST, 8),
                (kind::PARAMS, 0),
                (kind::DATA, 1),
                (kind::DATA, 0)
            ]
        );
        let begin = &encode_request(&req)[8..16];
        assert_eq!(BeginRequest::decode(begin).unwrap().role, role::FILTER);
    }

    #[test]
    fn get_values_record() {
        let rec = encode_get_values(["FCGI_MAX_CONNS"]);
        assert_eq!(&rec[..8], &[1, 9, 0, 0, 0, 16, 0, 0]);
        assert_eq!(rec[8], 14);
        assert_eq!(rec[9], 0);
        assert_eq!(&rec[10..], b"FCGI_MAX_CONNS");
    }

    #[test]
    fn parse_records_stops_at_partial_or_bad_version() {
        let mut b = record(kind::STDOUT, 1, b"hi");
        b.extend_from_slice(&[1, 6, 0, 1, 0, 9, 0]);
        let (recs, rest) = parse_records(&b);
        assert_eq!(recs.len(), 1);
        assert_eq!(rest.len(), 7);
        let b = [2u8, 6, 0, 1, 0, 0, 0, 0];
        assert_eq!(parse_records(&b).0.len(), 0);
    }

    /// A fake application on a socket pair: checks the client side of
    /// reading responses, including interleaved records of other ids.
    #[test]
    fn read_response_collects_streams() {
        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        let mut wire = Vec::new();
        push_padded_record(&mut wire, kind::STDOUT, 1, b"Content-Type: x\r\n\r\nbo", 3);
        wire.extend(record(kind::STDERR, 1, b"warn"));
        wire.extend(
            EndRequest {
                app_status: 0,
                protocol_status: status::CANT_MPX_CONN,
            }
            .record(2),
        );
        wire.extend(record(kind::GET_VALUES_RESULT, 0, b""));
        wire.extend(record(kind::STDOUT, 1, b"dy"));
        wire.extend(record(kind::STDERR, 1, b""));
        wire.extend(record(kind::STDOUT, 1, b""));
        wire.extend(
            EndRequest {
                app_status: 0xfffffffe,
                protocol_status: 0,
            }
            .record(1),
        );
        wire.extend(record(kind::STDOUT, 9, b"next"));
        // Written in odd-sized pieces to exercise partial reads.
        let writer = std::thread::spawn(move || {
            for piece in wire.chunks(5) {
                app.write_all(piece).unwrap();
            }
            app
        });
        let r = c.read_response(1).unwrap();
        let _app = writer.join().unwrap();
        assert_eq!(r.stdout, b"Content-Type: x\r\n\r\nbody");
        assert_eq!(r.body(), b"body");
        assert_eq!(r.cgi_header("content-type").as_deref(), Some("x"));
        assert_eq!(r.stderr, b"warn");
        assert_eq!(r.app_status, 0xfffffffe);
        assert_eq!(r.protocol_status, 0);
        assert!(r.stdout_ended && r.stderr_ended);
        assert_eq!(r.records.len(), 6);
        assert_eq!(r.other_records.len(), 2);
        assert_eq!(
            r.other_records[0].end_request().unwrap().protocol_status,
            status::CANT_MPX_CONN
        );
        // The record after END_REQUEST stays buffered for the next read.
        let next = c.read_record().unwrap();
        assert_eq!(
            (next.header.request_id, next.content),
            (9, b"next".to_vec())
        );
        // Nothing more: the read times out rather than hanging.
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        assert!(matches!(c.read_record(), Err(ClientError::Timeout)));
    }

    #[test]
    fn protocol_violations_are_reported() {
        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        app.write_all(&record(kind::STDOUT, 1, b"")).unwrap();
        app.write_all(&record(kind::STDOUT, 1, b"late")).unwrap();
        assert!(matches!(c.read_response(1), Err(ClientError::Protocol(_))));

        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        app.write_all(&record(kind::END_REQUEST, 1, b"short"))
            .unwrap();
        assert!(matches!(c.read_response(1), Err(ClientError::Protocol(_))));

        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        app.write_all(&[7, 6, 0, 1, 0, 0, 0, 0]).unwrap();
        assert!(matches!(c.read_record(), Err(ClientError::Protocol(_))));
        assert_eq!(c.buffered().len(), 8);
    }

    #[test]
    fn eof_and_truncation() {
        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        app.write_all(&[1, 6, 0, 1, 0, 10, 0, 0, b'a']).unwrap();
        drop(app);
        let e = c.read_record().unwrap_err();
        assert!(
            matches!(e, ClientError::Truncated { have: 9, need: 18 }),
            "{e:?}"
        );
        assert!(e.is_disconnect());

        let (a, app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a);
        drop(app);
        assert!(matches!(c.read_record(), Err(ClientError::Closed)));
    }

    #[test]
    fn drain_reports_close_and_idle() {
        let (a, mut app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a);
        app.write_all(b"abc").unwrap();
        let (bytes, end) = c
            .drain(Duration::from_millis(50), Duration::from_secs(5))
            .unwrap();
        assert_eq!((bytes.as_slice(), end), (&b"abc"[..], DrainEnd::Idle));
        app.write_all(b"de").unwrap();
        drop(app);
        let (bytes, end) = c
            .drain(Duration::from_secs(5), Duration::from_secs(5))
            .unwrap();
        assert_eq!((bytes.as_slice(), end), (&b"de"[..], DrainEnd::Closed));
        assert_eq!(
            c.stream.read_timeout().unwrap(),
            None,
            "drain must restore the read timeout"
        );
    }

    /// A large request is sent while the response is read: an echoing
    /// peer that never buffers more than a little must not deadlock us.
    #[test]
    fn request_streams_large_bodies_both_ways() {
        let (a, app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(20))
            .unwrap();
        let body: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let echo = std::thread::spawn(move || {
            let mut app = Client::from_unix(app)
                .with_timeout(Duration::from_secs(20))
                .unwrap();
            let mut id;
            let mut sent = 0usize;
            loop {
                let rec = app.read_record().unwrap();
                id = rec.header.request_id;
                if rec.header.kind == kind::STDIN {
                    if rec.content.is_empty() {
                        break;
                    }
                    sent += rec.content.len();
                    app.send_raw(&record(kind::STDOUT, id, &rec.content))
                        .unwrap();
                }
            }
            let mut tail = record(kind::STDOUT, id, b"");
            tail.extend(
                EndRequest {
                    app_status: 5,
                    protocol_status: 0,
                }
                .record(id),
            );
            app.send_raw(&tail).unwrap();
            sent
        });
        let r = c
            .request(
                &Request::responder()
                    .id(4)
                    .stdin(body.clone())
                    .record_size(65535),
            )
            .unwrap();
        assert_eq!(echo.join().unwrap(), body.len());
        assert_eq!(r.stdout, body);
        assert_eq!(r.app_status, 5);
        assert_eq!(r.send_error, None);
    }

    #[test]
    fn get_values_round_trip() {
        let (a, app) = UnixStream::pair().unwrap();
        let mut c = Client::from_unix(a)
            .with_timeout(Duration::from_secs(5))
            .unwrap();
        let peer = std::thread::spawn(move || {
            let mut app = Client::from_unix(app)
                .with_timeout(Duration::from_secs(5))
                .unwrap();
            let q = app.read_record().unwrap();
            assert_eq!(q.header.kind, kind::GET_VALUES);
            let mut reply = Vec::new();
            crate::protocol::get_values_reply(&q.content, &Default::default(), &mut reply);
            app.send_raw(&record(kind::UNKNOWN_TYPE, 0, &[0; 8]))
                .unwrap();
            app.send_raw(&record(kind::GET_VALUES_RESULT, 0, &reply))
                .unwrap();
        });
        let got = c.get_values(["FCGI_MPXS_CONNS", "FCGI_MAX_REQS"]).unwrap();
        peer.join().unwrap();
        assert_eq!(
            got,
            vec![
                (b"FCGI_MPXS_CONNS".to_vec(), b"0".to_vec()),
                (b"FCGI_MAX_REQS".to_vec(), b"1".to_vec())
            ]
        );
    }
}
