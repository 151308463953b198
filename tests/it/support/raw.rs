//! The raw server: the scripted [`Server`] handing each accepted connection,
//! on its own thread, whole to a script ([`RawConn`]), for what an
//! [`Action`] cannot say, such as resetting a connection or never reading
//! from it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use super::server::{
    linger_close, nothing_yet, parse_request, set_blocking, sleep_unless_stopping, wait_closed,
    Action, ConnInfo, Ending, Next, Request, Server, Shared, POLL,
};

/// A raw script, given each accepted connection whole (see
/// [`Server::start_raw`]).
pub(super) type RawScript = dyn Fn(RawConn<'_>) + Send + Sync;

impl Server {
    /// Starts a plain `http` server that hands every accepted connection,
    /// on its own thread, to `script` (see [`RawConn`]): for what an
    /// [`Action`] cannot say, such as resetting a connection or never
    /// reading from it. Nothing is recorded unless the script says so
    /// ([`RawConn::record`]).
    pub(crate) fn start_raw(script: impl Fn(RawConn<'_>) + Send + Sync + 'static) -> Server {
        Server::launch(
            Box::new(|_, _| Action::Close),
            None,
            None,
            Some(Box::new(script)),
        )
    }
}

/// One connection of a raw server ([`Server::start_raw`]), on its own
/// thread: a blocking plain-TCP socket (reads wake every [`POLL`] to look at
/// the shutdown flag) and the bytes read from it but not yet parsed.
pub(crate) struct RawConn<'a> {
    tcp: TcpStream,
    index: usize,
    nth: usize,
    shared: &'a Shared,
    buf: Vec<u8>,
}

/// Hands the accepted connection `tcp`, the `index`th, to `script`.
pub(super) fn serve_raw(tcp: TcpStream, index: usize, shared: &Shared, script: &RawScript) {
    set_blocking(&tcp);
    let conn = RawConn {
        tcp,
        index,
        nth: 0,
        shared,
        buf: Vec::with_capacity(16 * 1024),
    };
    script(conn);
}

impl RawConn<'_> {
    /// The connection's index, in accept order from 0.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the server is stopping (the script should return).
    pub(crate) fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    fn info(&mut self) -> ConnInfo {
        let info = self.shared.info(self.index, self.nth);
        self.nth += 1;
        info
    }

    /// Reads the next complete request, consuming it. `None` when the
    /// client closed, the request did not parse (counted as malformed), or
    /// the server is stopping. Not recorded: see [`RawConn::record`].
    pub(crate) fn next_request(&mut self) -> Option<(Request, ConnInfo)> {
        match super::server::next_request(
            &mut self.tcp,
            &mut self.buf,
            self.index,
            self.shared,
            None,
        ) {
            Next::Request(request) => Some((request, self.info())),
            Next::Idle | Next::Ended => None,
        }
    }

    /// Waits until the next request is complete in the kernel's receive
    /// buffer and returns it without taking it from there (`MSG_PEEK`): a
    /// connection dropped afterwards is reset (RST), because closing a
    /// socket with unread input resets it, as `SO_LINGER` 0 would. `None`
    /// as for [`RawConn::next_request`], or when the request is larger
    /// than 64 KiB. Not recorded: see [`RawConn::record`].
    pub(crate) fn peek_request(&mut self) -> Option<(Request, ConnInfo)> {
        assert!(self.buf.is_empty(), "peek with bytes already read");
        let mut peeked = vec![0u8; 64 * 1024];
        while !self.shared.stopping() {
            let n = match self.tcp.peek(&mut peeked) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) if nothing_yet(&e) => continue,
                Err(_) => return None,
            };
            match parse_request(&peeked[..n], self.index) {
                Err(()) => {
                    self.shared.malformed();
                    return None;
                }
                Ok(Some((request, _))) => return Some((request, self.info())),
                Ok(None) if n == peeked.len() => return None,
                Ok(None) => thread::sleep(Duration::from_millis(1)),
            }
        }
        None
    }

    /// Reads until a request head and at least `body_bytes` bytes past it
    /// have arrived, and takes them, without parsing the request; what the
    /// client sent beyond stays unread in the kernel, so that dropping the
    /// connection now resets it (RST) in the middle of the request's body.
    /// Gives back how many body bytes were read (maybe more than asked);
    /// `None` when the client closed first or the server is stopping.
    /// Nothing is recorded.
    pub(crate) fn read_partial(&mut self, body_bytes: usize) -> Option<usize> {
        let mut chunk = [0u8; 4096];
        while !self.shared.stopping() {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let read = self.buf.len() - (end + 4);
                if read >= body_bytes {
                    return Some(read);
                }
            }
            // Small reads, so as to leave the rest of the body unread.
            match self.tcp.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if nothing_yet(&e) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// Records `request` as received, for [`Server::requests`].
    pub(crate) fn record(&self, request: Request) {
        self.shared.record(request);
    }

    /// Whether the client has closed its end, or reset the connection,
    /// already: what is written now, it will not read. Looks without
    /// waiting and without taking any byte.
    pub(crate) fn client_gone(&self) -> bool {
        if self.tcp.set_nonblocking(true).is_err() {
            return false;
        }
        let gone = match self.tcp.peek(&mut [0u8; 1]) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !nothing_yet(&e),
        };
        set_blocking(&self.tcp);
        gone
    }

    /// Turns Nagle's algorithm on (the server's sockets have it off): a
    /// small write then leaves only once what went before it is
    /// acknowledged, as on most servers that never set `TCP_NODELAY`.
    pub(crate) fn nagle(&self) {
        let _ = self.tcp.set_nodelay(false);
    }

    /// Writes `bytes`; false when the connection broke.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).is_ok()
    }

    /// Waits `d`; false when the server began stopping meanwhile.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        sleep_unless_stopping(d, self.shared)
    }

    /// Reads and discards until the client closes (or `limit`, or the
    /// server stops), and says how it ended.
    pub(crate) fn wait_closed(&mut self, limit: Option<Duration>) -> Ending {
        wait_closed(&mut self.tcp, self.shared, limit)
    }

    /// Closes gracefully: sends FIN, then reads until the client's EOF
    /// (bounded by a linger of a few seconds), and says how the client's
    /// side ended. The socket itself is closed when the script returns.
    pub(crate) fn close(&mut self) -> Ending {
        linger_close(&mut self.tcp, self.shared)
    }

    /// Drops the connection at once. After [`RawConn::peek_request`] (input
    /// left unread) the kernel resets it; otherwise it closes with a FIN.
    pub(crate) fn reset(self) {}

    /// Never reads again: holds the connection open until the server
    /// stops.
    pub(crate) fn hold(&self) {
        while !self.shared.stopping() {
            thread::sleep(POLL);
        }
    }
}
