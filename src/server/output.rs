//! The output streams of a request (FCGI_STDOUT, FCGI_STDERR): a buffer
//! with the record header slot in front, so a record goes out with one
//! write and no copy; large writes go straight from the caller's bytes.

use super::error::StreamError;
use crate::protocol::{HEADER_LEN, Header};
use crate::sys;
use crate::sys::BorrowedFd;
use std::io::IoSlice;

/// Content bytes per record when a large write is split (a multiple of 8
/// below FCGI_MAX_LENGTH, so records stay aligned without padding).
pub const RECORD_CHUNK: usize = 65528;

pub struct OutputStream {
    kind: u8,
    /// `[header slot | buffered content]`.
    buf: Vec<u8>,
    capacity: usize,
    pub closed: bool,
    pub error: Option<StreamError>,
    /// Anything was ever written (an unused STDERR sends no records at all).
    pub used: bool,
}

impl OutputStream {
    /// A stream of record type `kind` buffering up to `capacity` bytes
    /// (at most [`RECORD_CHUNK`]).
    pub fn new(kind: u8, capacity: usize) -> Self {
        let capacity = capacity.clamp(8, RECORD_CHUNK);
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity + 32);
        buf.resize(HEADER_LEN, 0);
        OutputStream {
            kind,
            buf,
            capacity,
            closed: false,
            error: None,
            used: false,
        }
    }

    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// Ready for a new request.
    pub fn reset(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.closed = false;
        self.error = None;
        self.used = false;
    }

    pub fn pending(&self) -> usize {
        self.buf.len() - HEADER_LEN
    }

    fn check_open(&self) -> Result<(), StreamError> {
        match (self.closed, self.error) {
            (_, Some(e)) => Err(e),
            (true, None) => Err(StreamError::CallSeq),
            (false, None) => Ok(()),
        }
    }

    fn fail(&mut self, e: &std::io::Error) -> StreamError {
        let err = StreamError::from_io(e);
        self.error = Some(err);
        self.closed = true;
        self.buf.truncate(HEADER_LEN);
        err
    }

    /// Writes `data`: buffered while it fits, else sent now together with
    /// what was buffered, in records of at most [`RECORD_CHUNK`] bytes, with
    /// one gathered system call.
    pub fn write(&mut self, fd: BorrowedFd<'_>, id: u16, data: &[u8]) -> Result<(), StreamError> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(());
        }
        self.used = true;
        let pending = self.pending();
        if pending + data.len() <= self.capacity {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        // First record: the buffered bytes plus the head of `data`.
        let first = (RECORD_CHUNK - pending).min(data.len());
        self.set_header(id, pending + first);
        let rest = &data[first..];
        let headers: Vec<[u8; HEADER_LEN]> = rest
            .chunks(RECORD_CHUNK)
            .map(|c| Header::new(self.kind, id, c.len() as u16).encode())
            .collect();
        let mut iov = Vec::with_capacity(2 + 2 * headers.len());
        iov.push(IoSlice::new(&self.buf));
        iov.push(IoSlice::new(&data[..first]));
        for (h, c) in headers.iter().zip(rest.chunks(RECORD_CHUNK)) {
            iov.push(IoSlice::new(h));
            iov.push(IoSlice::new(c));
        }
        let r = sys::write_all_vectored(fd, &iov);
        drop(iov);
        match r {
            Ok(()) => {
                self.buf.truncate(HEADER_LEN);
                Ok(())
            }
            Err(e) => Err(self.fail(&e)),
        }
    }

    fn set_header(&mut self, id: u16, len: usize) {
        let h = Header::new(self.kind, id, len as u16).encode();
        self.buf[..HEADER_LEN].copy_from_slice(&h);
    }

    /// Sends the buffered bytes as one record now (`FCGX_FFlush`).
    pub fn flush(&mut self, fd: BorrowedFd<'_>, id: u16) -> Result<(), StreamError> {
        if self.closed {
            return self.error.map_or(Ok(()), Err);
        }
        if self.pending() == 0 {
            return Ok(());
        }
        self.set_header(id, self.pending());
        match sys::write_all(fd, &self.buf) {
            Ok(()) => {
                self.buf.truncate(HEADER_LEN);
                Ok(())
            }
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Frames what is left for the final write: the buffered record (if
    /// any), when `end` the empty record that ends the stream (always for
    /// STDOUT, only if used for STDERR), then `tail` (FCGI_END_REQUEST, so
    /// a response's end goes out as one contiguous buffer; the buffer keeps
    /// room for both). Returns the bytes to send (possibly empty); call
    /// [`sent`](Self::sent) after sending them.
    pub fn frame_final(&mut self, id: u16, end: bool, tail: &[u8]) -> &[u8] {
        let pending = self.pending();
        let start = if pending > 0 {
            self.set_header(id, pending);
            0
        } else {
            HEADER_LEN
        };
        if end && (self.used || self.kind == crate::protocol::kind::STDOUT) {
            self.buf
                .extend_from_slice(&Header::new(self.kind, id, 0).encode());
        }
        self.buf.extend_from_slice(tail);
        &self.buf[start..]
    }

    /// Marks the framed bytes as sent (or lost with `err`) and the stream closed.
    pub fn sent(&mut self, err: Option<&std::io::Error>) {
        self.buf.truncate(HEADER_LEN);
        self.closed = true;
        if let Some(e) = err {
            self.error.get_or_insert(StreamError::from_io(e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::kind;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    fn records(bytes: &[u8]) -> Vec<(u8, usize)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        while rest.len() >= 8 {
            let h = Header::decode(rest[..8].try_into().unwrap());
            out.push((h.kind, h.content_length as usize));
            rest = &rest[8 + h.body_len()..];
        }
        assert!(rest.is_empty());
        out
    }

    #[test]
    fn small_writes_are_buffered_then_framed_once() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut s = OutputStream::new(kind::STDOUT, 100);
        s.write(a.as_fd(), 1, b"hello ").unwrap();
        s.write(a.as_fd(), 1, b"world").unwrap();
        let framed = s.frame_final(1, true, &[]).to_vec();
        s.sent(None);
        assert_eq!(
            records(&framed),
            vec![(kind::STDOUT, 11), (kind::STDOUT, 0)]
        );
        assert!(s.write(a.as_fd(), 1, b"x").is_err());
        drop(a);
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn large_write_is_split_into_records() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        let mut s = OutputStream::new(kind::STDOUT, 1000);
        s.write(a.as_fd(), 1, b"abc").unwrap();
        let big = vec![b'z'; 200_000];
        s.write(a.as_fd(), 1, &big).unwrap();
        assert_eq!(s.pending(), 0);
        drop(a);
        let got = reader.join().unwrap();
        let recs = records(&got);
        assert_eq!(recs.iter().map(|r| r.1).sum::<usize>(), 200_003);
        assert!(recs.iter().all(|r| r.1 <= RECORD_CHUNK));
    }

    #[test]
    fn unused_stderr_sends_nothing() {
        let mut s = OutputStream::new(kind::STDERR, 100);
        assert!(s.frame_final(1, true, &[]).is_empty());
    }

    #[test]
    fn write_to_closed_peer_is_epipe() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let mut s = OutputStream::new(kind::STDOUT, 8);
        let e = s.write(a.as_fd(), 1, &[0; 64]).unwrap_err();
        assert_eq!(e, StreamError::Os(libc::EPIPE));
        assert!(s.closed);
    }
}
