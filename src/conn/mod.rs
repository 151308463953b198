//! The byte pipe under the HTTP codec: a TCP stream, plain or wrapped in a
//! rustls client session. The slot's state machine talks to a [`Conn`] the
//! same way for both; TLS records, handshakes and `close_notify` stay in
//! here, driven without ever blocking.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::proto::request::{Cursor, RequestBytes};

pub(crate) mod tls;

/// Why the pipe failed.
#[derive(Debug)]
pub(crate) enum ConnError {
    Io(io::Error),
    Tls(rustls::Error),
}

impl From<io::Error> for ConnError {
    fn from(e: io::Error) -> Self {
        ConnError::Io(e)
    }
}

/// One connection: the socket and, for `https`, its TLS session.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    /// Bytes the kernel took from this connection so far.
    sent: u64,
    /// Request bytes gathered for rustls, at most [`TLS_CHUNK`], kept for
    /// the next request: one contiguous write spares rustls a slice list
    /// allocation and makes one record rather than three.
    gather: Vec<u8>,
}

/// The most plaintext a TLS record carries: what one TLS write copies.
const TLS_CHUNK: usize = 16 * 1024;

/// Slices in one vectored write of a batch: the kernel's `IOV_MAX` (1024
/// on Linux, the least POSIX systems allow `writev`), so a batch of 500
/// small messages (about a thousand slices with their separators) goes in
/// one write. Measured on loopback, 500 × 64 B: four writes of 256 slices
/// cost the sender 82 ns a message and the receiver 19 µs a batch; one of
/// 1024, 61 ns and 7 µs. The array (16 KiB of stack) is filled only for
/// requests of more than [`FEW_SLICES`] parts.
const MAX_SLICES: usize = 1024;

/// Slices in one vectored write of a request with few parts.
const FEW_SLICES: usize = 8;

/// One vectored write of the slices from `cursor` on, at most `N` of them.
fn write_vectored<const N: usize>(
    stream: &mut TcpStream,
    request: &RequestBytes<'_>,
    cursor: &Cursor,
) -> io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); N];
    let n = request.slices(cursor, &mut slices);
    stream.write_vectored(&slices[..n])
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Conn {
    pub(crate) fn plain(stream: TcpStream) -> Conn {
        Conn {
            stream,
            tls: None,
            sent: 0,
            gather: Vec::new(),
        }
    }

    pub(crate) fn tls(
        stream: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<Conn, rustls::Error> {
        Ok(Conn {
            stream,
            tls: Some(Box::new(ClientConnection::new(config, name)?)),
            sent: 0,
            gather: Vec::new(),
        })
    }

    /// Whether a read returning less than asked proves the socket drained
    /// (true for plain TCP; TLS may hold decrypted bytes back).
    pub(crate) fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Bytes the kernel took from this connection so far.
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Acknowledges what the socket received at once instead of delaying
    /// the ACK: Linux's `TCP_QUICKACK`, which the kernel clears again by
    /// itself, so it serves the one response under way. Whether it was set
    /// (never off Linux).
    pub(crate) fn ack_now(&self) -> bool {
        quick_ack(&self.stream)
    }

    /// Drives the TLS handshake as far as the socket allows. `Ok(true)`
    /// once it is complete (at once for plain TCP).
    pub(crate) fn handshake(&mut self) -> Result<bool, ConnError> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(true);
        };
        loop {
            if !flush_records(tls, &mut self.stream, &mut self.sent)? {
                return Ok(false);
            }
            if !tls.is_handshaking() {
                return Ok(true);
            }
            match tls.read_tls(&mut self.stream) {
                Ok(0) => {
                    return Err(ConnError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    )))
                }
                Ok(_) => process(tls, &mut self.stream)?,
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Hands request bytes from `cursor` on to the connection; returns how
    /// many it took. Plain TCP writes them straight from their buffers as
    /// one vectored write of at most [`MAX_SLICES`] slices (a large batch
    /// takes several). Over TLS at most one record's worth ([`TLS_CHUNK`])
    /// is copied and encrypted per call, and only once the records of the
    /// previous call have left (else `WouldBlock`), so a large message
    /// never sits in memory twice more over; see also [`Conn::flush`].
    pub(crate) fn write(
        &mut self,
        request: &RequestBytes<'_>,
        cursor: &Cursor,
    ) -> io::Result<usize> {
        let Some(tls) = self.tls.as_deref_mut() else {
            // A single message's request is three slices: a small array
            // spares it preparing a batch's.
            let k = if request.fits_in(cursor, FEW_SLICES) {
                write_vectored::<FEW_SLICES>(&mut self.stream, request, cursor)?
            } else {
                write_vectored::<MAX_SLICES>(&mut self.stream, request, cursor)?
            };
            self.sent += k as u64;
            return Ok(k);
        };
        if !flush_records(tls, &mut self.stream, &mut self.sent)? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.gather.clear();
        for slice in request.remaining(cursor) {
            let room = TLS_CHUNK - self.gather.len();
            if room == 0 {
                break;
            }
            self.gather
                .extend_from_slice(&slice[..slice.len().min(room)]);
        }
        let k = tls.writer().write(&self.gather)?;
        // What the socket does not take now goes with the next call or
        // `flush`.
        match flush_records(tls, &mut self.stream, &mut self.sent) {
            Ok(_) => Ok(k),
            Err(e) if would_block(&e) => Ok(k),
            Err(e) => Err(e),
        }
    }

    /// Writes pending TLS records. `Ok(true)` when nothing is left.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        match self.tls.as_deref_mut() {
            None => Ok(true),
            Some(tls) => flush_records(tls, &mut self.stream, &mut self.sent),
        }
    }

    /// Reads response bytes. `Ok(0)` is the end of the stream: a TCP EOF,
    /// or a TLS `close_notify`. A TLS stream cut without `close_notify`
    /// fails with `UnexpectedEof`. `WouldBlock` when nothing is there.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConnError> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(self.stream.read(buf)?);
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e.into()),
            }
            match tls.read_tls(&mut self.stream) {
                // The reader reports the end on the next turn: `Ok(0)` after
                // a close_notify, `UnexpectedEof` without one.
                Ok(_) => process(tls, &mut self.stream)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Closes the connection, sending a TLS `close_notify` when the socket
    /// takes it without waiting.
    pub(crate) fn close(mut self, registry: &mio::Registry) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            // Best effort: a full socket or a dead peer loses the alert,
            // which only tells the server what the FIN tells it anyway.
            let _: io::Result<usize> = tls.write_tls(&mut self.stream);
        }
        // Closing the socket removes it from the poll set anyway.
        let _: io::Result<()> = registry.deregister(&mut self.stream);
    }
}

/// Sets `TCP_QUICKACK` on `stream`: an ACK the kernel was delaying goes at
/// once. Whether the kernel took it.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn quick_ack(stream: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the descriptor is the open socket `stream` owns, which lives
    // through the call. `on` is an initialised `c_int` that outlives the
    // call, and the length passed is its size, so the kernel reads exactly
    // that value and writes no memory of this process.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            std::ptr::from_ref(&on).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    set == 0
}

/// `TCP_QUICKACK` is Linux's: elsewhere the ACK is left to the kernel.
#[cfg(not(target_os = "linux"))]
fn quick_ack(_stream: &TcpStream) -> bool {
    false
}

/// Writes `tls`'s pending records to `stream` as far as it takes them,
/// counting the bytes in `sent`. `Ok(true)` when nothing is left.
fn flush_records(
    tls: &mut ClientConnection,
    stream: &mut TcpStream,
    sent: &mut u64,
) -> io::Result<bool> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(n) => *sent += n as u64,
            Err(e) if would_block(&e) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Decrypts what `read_tls` brought; on a TLS error sends the alert rustls
/// queued for the peer, best effort.
fn process(tls: &mut ClientConnection, stream: &mut TcpStream) -> Result<(), ConnError> {
    match tls.process_new_packets() {
        Ok(_) => {
            if tls.wants_write() {
                // Post-handshake messages (key updates): flushed now or with
                // the next request.
                let _: io::Result<usize> = tls.write_tls(stream);
            }
            Ok(())
        }
        Err(e) => {
            let _: io::Result<usize> = tls.write_tls(stream);
            Err(ConnError::Tls(e))
        }
    }
}
