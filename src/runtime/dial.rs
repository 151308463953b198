//! The sockets of one connection's connect attempts, raced over the
//! endpoint's addresses as [`Race`] decides: the first to connect becomes
//! the connection, the others are closed.
//!
//! Every socket is registered with its own token: the low [`SLOT_BITS`]
//! bits name the slot, the bits above which address of the list it dials
//! (from 1; a connection keeps the token of the attempt that won). Any
//! event of any of them makes the slot look at all of them.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::config::MAX_WORKERS;
use crate::policy::eyeballs::{Next, Race};
use crate::policy::shortage;

/// The bits of a token that name the slot: enough for every slot of a
/// loop, since a client has at most `MAX_WORKERS` of them.
const SLOT_BITS: u32 = 16;
const _: () = assert!(MAX_WORKERS <= 1 << SLOT_BITS);

/// The index of the slot that `token` belongs to.
pub(crate) fn slot_of(token: Token) -> usize {
    token.0 & ((1 << SLOT_BITS) - 1)
}

/// The token of slot `slot`'s attempt at address `index`.
fn token(slot: usize, index: usize) -> Token {
    Token(slot | (index + 1) << SLOT_BITS)
}

/// Connect attempts under way for one slot.
#[derive(Debug)]
pub(crate) struct Dial {
    addrs: Arc<[SocketAddr]>,
    race: Race,
    /// The attempts in flight.
    sockets: Vec<TcpStream>,
    /// The last attempt's failure, reported when every one failed.
    last: Option<io::Error>,
}

/// Where a dial stands.
#[derive(Debug)]
pub(crate) enum Dialed {
    Connected(TcpStream),
    Pending(Dial),
    Failed(io::Error),
    /// No socket could be opened for a local reason (out of descriptors,
    /// buffers or ports): nothing is known of the addresses, and the
    /// attempts in flight were closed.
    Short(io::Error),
}

impl Dial {
    /// A dial over `addrs`, in their order; nothing started yet.
    pub(crate) fn new(addrs: Arc<[SocketAddr]>) -> Dial {
        Dial {
            race: Race::new(addrs.len()),
            addrs,
            sockets: Vec::new(),
            last: None,
        }
    }

    /// When the next address is due to start beside the attempts in
    /// flight.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.race.due()
    }

    /// Looks at the attempts in flight for slot `slot`, then starts what
    /// is due at `now`.
    pub(crate) fn advance(mut self, registry: &Registry, slot: usize, now: Instant) -> Dialed {
        let mut i = 0;
        while i < self.sockets.len() {
            match connected(&self.sockets[i]) {
                Ok(false) => i += 1,
                Ok(true) => {
                    let stream = self.sockets.swap_remove(i);
                    self.close(registry);
                    return Dialed::Connected(stream);
                }
                Err(e) => {
                    let mut stream = self.sockets.swap_remove(i);
                    let _: io::Result<()> = registry.deregister(&mut stream);
                    self.race.failed();
                    self.last = Some(e);
                }
            }
        }
        loop {
            match self.race.next(now) {
                Next::Start(index) => match open(registry, self.addrs[index], token(slot, index)) {
                    Ok(stream) => self.sockets.push(stream),
                    Err(e) if shortage::is_local(&e) => {
                        self.close(registry);
                        return Dialed::Short(e);
                    }
                    Err(e) => {
                        self.race.failed();
                        self.last = Some(e);
                    }
                },
                Next::Wait(_) => return Dialed::Pending(self),
                Next::Exhausted => {
                    let e = self.last.take().unwrap_or_else(|| {
                        io::Error::new(io::ErrorKind::NotFound, "no address to connect to")
                    });
                    return Dialed::Failed(e);
                }
            }
        }
    }

    /// Closes the attempts in flight.
    pub(crate) fn close(self, registry: &Registry) {
        for mut stream in self.sockets {
            let _: io::Result<()> = registry.deregister(&mut stream);
        }
    }
}

/// A non-blocking connect to `addr`, registered for both directions.
fn open(registry: &Registry, addr: SocketAddr, token: Token) -> io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr)?;
    registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
    Ok(stream)
}

/// Whether a connect under way has completed; its error if it failed.
fn connected(stream: &TcpStream) -> io::Result<bool> {
    if let Some(e) = stream.take_error()? {
        return Err(e);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}
