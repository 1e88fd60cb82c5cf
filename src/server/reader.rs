//! The input side of a connection: one buffer, read in large chunks, out
//! of which whole records are handed out in place.
//!
//! The buffer is sized once (it holds the largest possible record) and
//! reused for every connection a worker serves: no allocation depends on a
//! length the peer declared, and none happens per request.

use crate::protocol::{HEADER_LEN, Header};
use crate::sys;
use crate::sys::BorrowedFd;
use std::io;
use std::ops::Range;
use thiserror::Error;

/// Room for the largest record (8 + 65535 + 255) with space to read ahead:
/// what the buffer grows to when a record does not fit its first size.
pub const INPUT_BUFFER_SIZE: usize = 128 * 1024;
/// The buffer's first size: a whole request of the usual kind (BEGIN,
/// parameters, a small body) fits, so a worker that serves only such
/// requests never touches more memory than this.
pub const INITIAL_INPUT_BUFFER_SIZE: usize = 8 * 1024;

/// Why no record could be read.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("connection closed by the peer")]
    Closed,
    #[error("connection closed in the middle of a record")]
    Truncated,
    #[error("unsupported FastCGI version {0}")]
    BadVersion(u8),
    #[error("no complete record available yet")]
    WouldBlock,
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// How `fill` waits for bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    Block,
    /// Block, but let a signal's EINTR through (as `ReadError::Io`).
    Interruptible,
    NoWait,
}

pub struct InputBuffer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The last read took everything the socket had (it returned less
    /// than the room offered, or would have blocked): nothing waits unread
    /// in the kernel but what arrived since. An edge-triggered watch of a
    /// connection whose buffer is not drained could miss its input.
    drained: bool,
}

impl Default for InputBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl InputBuffer {
    pub fn new() -> Self {
        InputBuffer {
            buf: vec![0; INITIAL_INPUT_BUFFER_SIZE],
            start: 0,
            end: 0,
            drained: true,
        }
    }

    /// Forgets buffered bytes (the connection they came from is gone).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
        self.drained = true;
    }

    /// Whether the last read left nothing unread in the socket.
    pub fn drained(&self) -> bool {
        self.drained
    }

    /// Input may wait in the socket (a parked connection fired).
    pub fn expect_input(&mut self) {
        self.drained = false;
    }

    /// Bytes received but not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Whether the next `next_record` makes no system call: a whole record
    /// is buffered, or a header it refuses at once (unsupported version).
    pub fn has_record(&self) -> bool {
        if self.buffered() < HEADER_LEN {
            return false;
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let h = Header::decode(&raw);
        !h.is_supported() || self.buffered() >= HEADER_LEN + h.body_len()
    }

    /// Makes room for `need` bytes from `start` (moving or growing the
    /// buffer), so that a record is never split by its end.
    fn make_room(&mut self, need: usize) {
        debug_assert!(need <= INPUT_BUFFER_SIZE);
        if self.buffered() == 0 {
            // Nothing kept: read from the front, so a request is not split
            // across two reads by the end of the buffer.
            self.start = 0;
            self.end = 0;
        }
        if need > self.buf.len() {
            // Grown once, to the size that holds any record.
            self.buf.resize(INPUT_BUFFER_SIZE, 0);
        }
        if self.start + need > self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }

    /// One read into the room after the buffered bytes. `Ok(false)` at end
    /// of file.
    fn read_once(&mut self, fd: BorrowedFd<'_>, wait: Wait) -> Result<bool, ReadError> {
        let room = &mut self.buf[self.end..];
        let offered = room.len();
        let got = match wait {
            Wait::Block => sys::read(fd, room).map(Some),
            Wait::Interruptible => sys::read_interruptible(fd, room).map(Some),
            Wait::NoWait => sys::read_nonblocking(fd, room),
        };
        let n = match got {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.drained = true;
                return Err(ReadError::WouldBlock);
            }
            Err(e) => {
                // Interrupted while waiting: nothing was there.
                self.drained = e.kind() == std::io::ErrorKind::Interrupted;
                return Err(e.into());
            }
        };
        self.drained = n < offered;
        self.end += n;
        Ok(n > 0)
    }

    /// Makes at least `need` bytes available from `start`. `Ok(false)` if
    /// the peer closed the connection first.
    fn fill(&mut self, fd: BorrowedFd<'_>, need: usize, wait: Wait) -> Result<bool, ReadError> {
        if self.buffered() >= need {
            return Ok(true);
        }
        self.make_room(need);
        while self.buffered() < need {
            if !self.read_once(fd, wait)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// One read of whatever has arrived towards the next record (room is
    /// made for the whole record once its header is here). `Ok(false)` at
    /// end of file. Callers that time a wait call this once per wait, so
    /// a peer that keeps sending is never taken for a stalled one.
    pub fn read_more(&mut self, fd: BorrowedFd<'_>, wait: Wait) -> Result<bool, ReadError> {
        let need = if self.buffered() >= HEADER_LEN {
            let mut raw = [0u8; HEADER_LEN];
            raw.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
            HEADER_LEN + Header::decode(&raw).body_len()
        } else {
            HEADER_LEN
        };
        self.make_room(need);
        self.read_once(fd, wait)
    }

    /// Reads the next whole record (header, content, padding). Returns its
    /// header and where its content sits; the content stays valid until the
    /// next call. `ReadError::Closed` only at a record boundary.
    pub fn next_record(
        &mut self,
        fd: BorrowedFd<'_>,
        wait: Wait,
    ) -> Result<(Header, Range<usize>), ReadError> {
        if !self.fill(fd, HEADER_LEN, wait)? {
            return Err(if self.buffered() == 0 {
                ReadError::Closed
            } else {
                ReadError::Truncated
            });
        }
        let mut raw = [0u8; HEADER_LEN];
        raw.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        let header = Header::decode(&raw);
        if !header.is_supported() {
            return Err(ReadError::BadVersion(header.version));
        }
        if !self.fill(fd, HEADER_LEN + header.body_len(), wait)? {
            return Err(ReadError::Truncated);
        }
        let content =
            self.start + HEADER_LEN..self.start + HEADER_LEN + usize::from(header.content_length);
        self.start += HEADER_LEN + header.body_len();
        Ok((header, content))
    }

    /// The bytes of a range returned by [`next_record`](Self::next_record).
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::record::{kind, push_record};
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn records_with_padding_and_partial_reads() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut wire = Vec::new();
        push_record(&mut wire, kind::PARAMS, 1, b"abc");
        wire[6] = 5; // padding length
        wire.extend_from_slice(&[0xEE; 5]);
        push_record(&mut wire, kind::STDIN, 1, b"");
        let mut ib = InputBuffer::new();
        a.write_all(&wire[..5]).unwrap();
        assert!(matches!(
            ib.next_record(b.as_fd(), Wait::NoWait),
            Err(ReadError::WouldBlock)
        ));
        a.write_all(&wire[5..]).unwrap();
        let (h, r) = ib.next_record(b.as_fd(), Wait::Block).unwrap();
        assert_eq!((h.kind, ib.get(r)), (kind::PARAMS, &b"abc"[..]));
        let (h, r) = ib.next_record(b.as_fd(), Wait::Block).unwrap();
        assert_eq!((h.kind, r.len()), (kind::STDIN, 0));
        drop(a);
        assert!(matches!(
            ib.next_record(b.as_fd(), Wait::Block),
            Err(ReadError::Closed)
        ));
    }

    #[test]
    fn truncated_and_bad_version() {
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[1, 5, 0, 1, 0, 10, 0, 0, 1, 2]).unwrap();
        drop(a);
        let mut ib = InputBuffer::new();
        assert!(matches!(
            ib.next_record(b.as_fd(), Wait::Block),
            Err(ReadError::Truncated)
        ));

        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&[2, 5, 0, 1, 0, 0, 0, 0]).unwrap();
        let mut ib = InputBuffer::new();
        assert!(matches!(
            ib.next_record(b.as_fd(), Wait::Block),
            Err(ReadError::BadVersion(2))
        ));
    }

    #[test]
    fn many_max_size_records_compact_the_buffer() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let payload = vec![9u8; 65535];
        let writer = std::thread::spawn(move || {
            for _ in 0..10 {
                let mut rec = Vec::new();
                push_record(&mut rec, kind::STDIN, 1, &payload);
                rec[6] = 255;
                rec.extend_from_slice(&[0; 255]);
                a.write_all(&rec).unwrap();
            }
        });
        let mut ib = InputBuffer::new();
        assert_eq!(ib.buf.len(), INITIAL_INPUT_BUFFER_SIZE);
        for _ in 0..10 {
            let (h, r) = ib.next_record(b.as_fd(), Wait::Block).unwrap();
            assert_eq!(h.content_length, 65535);
            assert!(ib.get(r).iter().all(|&x| x == 9));
        }
        writer.join().unwrap();
        assert_eq!(
            ib.buf.len(),
            INPUT_BUFFER_SIZE,
            "grown once for the large records"
        );
    }
}
