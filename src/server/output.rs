//! The output streams of a request (FCGI_STDOUT, FCGI_STDERR): records
//! framed in place in one buffer (a header slot in front of each record's
//! content), so what is buffered goes out with one write and no copy; large
//! writes go straight from the caller's bytes.

use super::error::StreamError;
use crate::protocol::{HEADER_LEN, Header};
use crate::sys::BorrowedFd;
use std::io::IoSlice;

/// Content bytes per record when a large write is split (a multiple of 8
/// below FCGI_MAX_LENGTH, so records stay aligned without padding).
pub const RECORD_CHUNK: usize = 65528;

/// The most records a stream buffers before it sends them together.
pub const MAX_BUFFERED_RECORDS: usize = 4;

/// The largest buffer a stream may be given ([`OutputStream::set_capacity`]).
pub const MAX_CAPACITY: usize = 16 << 20;

pub struct OutputStream {
    kind: u8,
    /// `[header | content]` for each full record (header written), then
    /// `[header slot | content]` of the record being filled.
    buf: Vec<u8>,
    /// Where the header slot of the record being filled starts.
    last: usize,
    /// Content bytes buffered before a send.
    capacity: usize,
    pub closed: bool,
    pub error: Option<StreamError>,
    /// Anything was ever written (an unused STDERR sends no records at all).
    pub used: bool,
}

impl OutputStream {
    /// A stream of record type `kind` buffering up to `capacity` content
    /// bytes (at most [`MAX_BUFFERED_RECORDS`] records). Memory for more
    /// than one record is taken when a response first needs it.
    pub fn new(kind: u8, capacity: usize) -> Self {
        let capacity = capacity.clamp(8, MAX_BUFFERED_RECORDS * RECORD_CHUNK);
        let mut buf = Vec::with_capacity(HEADER_LEN + capacity.min(RECORD_CHUNK) + 32);
        buf.resize(HEADER_LEN, 0);
        OutputStream {
            kind,
            buf,
            last: 0,
            capacity,
            closed: false,
            error: None,
            used: false,
        }
    }

    pub fn kind(&self) -> u8 {
        self.kind
    }

    /// Content bytes buffered before a send.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Buffers up to `capacity` content bytes from now on (at most
    /// [`MAX_CAPACITY`]); 0: unbuffered, each write is sent at once. What
    /// is buffered stays: the next write or flush sends it. Memory is taken
    /// as writes need it, never here.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.min(MAX_CAPACITY);
    }

    /// Ready for a new request.
    pub fn reset(&mut self) {
        self.empty();
        self.closed = false;
        self.error = None;
        self.used = false;
    }

    /// Content bytes buffered.
    pub fn pending(&self) -> usize {
        // Every record before the last is full.
        let full = self.last / (HEADER_LEN + RECORD_CHUNK);
        full * RECORD_CHUNK + self.filling()
    }

    /// Content bytes in the record being filled.
    fn filling(&self) -> usize {
        self.buf.len() - self.last - HEADER_LEN
    }

    /// Forgets what is buffered: back to one empty header slot.
    fn empty(&mut self) {
        self.buf.truncate(HEADER_LEN);
        self.buf.resize(HEADER_LEN, 0);
        self.last = 0;
    }

    /// Appends `data` to the buffer (it fits in `capacity`), closing each
    /// record that fills up and opening the next one behind it.
    fn append(&mut self, id: u16, mut data: &[u8]) {
        loop {
            let room = RECORD_CHUNK - self.filling();
            if data.len() <= room {
                self.buf.extend_from_slice(data);
                return;
            }
            let (head, rest) = data.split_at(room);
            self.buf.extend_from_slice(head);
            data = rest;
            self.set_header(id, RECORD_CHUNK);
            if self.last == 0 {
                // A second record: take the room for all of them at once.
                let records = self.capacity.div_ceil(RECORD_CHUNK);
                let all = records * (HEADER_LEN + RECORD_CHUNK) + 32;
                self.buf.reserve_exact(all.saturating_sub(self.buf.len()));
            }
            self.last = self.buf.len();
            self.buf.resize(self.last + HEADER_LEN, 0);
        }
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
        self.empty();
        err
    }

    /// Writes `data`: buffered while it fits, else sent now together with
    /// what was buffered, in records of at most [`RECORD_CHUNK`] bytes, with
    /// one gathered system call. The last buffered record is topped up from
    /// `data` first, so records stay full.
    pub fn write(&mut self, fd: BorrowedFd<'_>, id: u16, data: &[u8]) -> Result<(), StreamError> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(());
        }
        self.used = true;
        let pending = self.pending();
        if pending + data.len() <= self.capacity {
            self.append(id, data);
            return Ok(());
        }
        // The record being filled takes the head of `data`.
        let filling = self.filling();
        let first = (RECORD_CHUNK - filling).min(data.len());
        self.set_header(id, filling + first);
        // Whole records of the rest go now; a shorter tail is kept for the
        // next write if it fits, so records stay full.
        let rest = &data[first..];
        let tail = rest.len() % RECORD_CHUNK;
        let keep = if tail <= self.capacity { tail } else { 0 };
        let (rest, later) = rest.split_at(rest.len() - keep);
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
        let r = super::watch::send_vectored(fd, &iov);
        drop(iov);
        match r {
            Ok(()) => {
                self.empty();
                self.append(id, later);
                Ok(())
            }
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Writes the header of the record being filled, for `len` content bytes.
    fn set_header(&mut self, id: u16, len: usize) {
        let h = Header::new(self.kind, id, len as u16).encode();
        self.buf[self.last..self.last + HEADER_LEN].copy_from_slice(&h);
    }

    /// Frames the record being filled; returns the bytes of all buffered
    /// records (an empty last record is left out: it would end the stream).
    fn framed(&mut self, id: u16) -> &[u8] {
        let filling = self.filling();
        if filling > 0 {
            self.set_header(id, filling);
            &self.buf
        } else {
            &self.buf[..self.last]
        }
    }

    /// Sends the buffered bytes as one record now (`FCGX_FFlush`).
    pub fn flush(&mut self, fd: BorrowedFd<'_>, id: u16) -> Result<(), StreamError> {
        if self.closed {
            return self.error.map_or(Ok(()), Err);
        }
        if self.pending() == 0 {
            return Ok(());
        }
        match super::watch::send(fd, self.framed(id)) {
            Ok(()) => {
                self.empty();
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
        let start = if self.filling() > 0 {
            self.set_header(id, self.filling());
            0
        } else if self.last > 0 {
            self.buf.truncate(self.last); // drop the empty slot
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
        self.empty();
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

    /// Writes `sizes` (with a flush after each size in `flush_after`),
    /// ends the stream with `tail`; returns the records and the content.
    fn stream_through(
        sizes: &[usize],
        flush_after: &[usize],
        tail: &[u8],
    ) -> (Vec<(u8, usize)>, Vec<u8>, Vec<u8>) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        let mut s = OutputStream::new(kind::STDOUT, MAX_BUFFERED_RECORDS * RECORD_CHUNK);
        let mut sent = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let data: Vec<u8> = (0..n).map(|j| (i * 7 + j) as u8).collect();
            s.write(a.as_fd(), 3, &data).unwrap();
            sent.extend_from_slice(&data);
            assert!(s.pending() <= MAX_BUFFERED_RECORDS * RECORD_CHUNK);
            if flush_after.contains(&n) {
                s.flush(a.as_fd(), 3).unwrap();
                assert_eq!(s.pending(), 0);
            }
        }
        let out = s.frame_final(3, true, tail).to_vec();
        crate::sys::write_all(a.as_fd(), &out).unwrap();
        s.sent(None);
        drop(a);
        let got = reader.join().unwrap();
        let recs = records(&got[..got.len() - tail.len()]);
        assert!(got.ends_with(tail));
        let mut content = Vec::new();
        let mut rest = &got[..got.len() - tail.len()];
        while !rest.is_empty() {
            let h = Header::decode(rest[..8].try_into().unwrap());
            assert_eq!(h.request_id, 3);
            content.extend_from_slice(&rest[8..8 + h.content_length as usize]);
            rest = &rest[8 + h.body_len()..];
        }
        (recs, content, sent)
    }

    #[test]
    fn records_fill_up_across_writes_and_leave_together() {
        // 8 KiB pieces of a 1 MiB response: full 65528-byte records, none
        // empty but the last, the content in order.
        let sizes = vec![8192; 128];
        let (recs, content, sent) = stream_through(&sizes, &[], b"TAIL");
        assert_eq!(content, sent);
        let (last, body) = recs.split_last().unwrap();
        assert_eq!(*last, (kind::STDOUT, 0));
        assert!(body.iter().all(|r| r.1 > 0 && r.1 <= RECORD_CHUNK));
        assert!(body[..body.len() - 1].iter().all(|r| r.1 == RECORD_CHUNK));
    }

    #[test]
    fn buffered_records_survive_odd_sizes_and_flushes() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..40 {
            let sizes: Vec<usize> = (0..12)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    [1, 7, 8184, 65527, 65528, 65529, 131_056, 300_000, 600_000]
                        [(seed % 9) as usize]
                        + (seed >> 40) as usize % 3
                })
                .collect();
            let flush: &[usize] = if round % 3 == 0 { &[7, 65529] } else { &[] };
            let (recs, content, sent) = stream_through(&sizes, flush, b"");
            assert_eq!(content, sent, "round {round}: {sizes:?}");
            let (last, body) = recs.split_last().unwrap();
            assert_eq!(*last, (kind::STDOUT, 0));
            assert!(
                body.iter().all(|r| r.1 > 0 && r.1 <= RECORD_CHUNK),
                "{recs:?}"
            );
        }
    }

    #[test]
    fn exactly_full_records_leave_no_empty_record_behind() {
        for n in [
            RECORD_CHUNK,
            2 * RECORD_CHUNK,
            MAX_BUFFERED_RECORDS * RECORD_CHUNK,
        ] {
            let (recs, content, sent) = stream_through(&[n], &[], b"");
            assert_eq!(content, sent);
            assert_eq!(recs.len(), n / RECORD_CHUNK + 1, "{recs:?}");
            let (recs, _, _) = stream_through(&[n], &[n], b"");
            assert_eq!(recs.len(), n / RECORD_CHUNK + 1, "flushed: {recs:?}");
        }
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
