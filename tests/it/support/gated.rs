//! A gated server: the scripted [`Server`] holding every request
//! unanswered until the test opens its gate, so that a client's slots stay
//! busy (and what it accepts meanwhile stays queued) for as long as the
//! test needs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::drive::wait_until;
use super::server::{Action, Server};

/// How long a request waits at most for the gate: far past any test's
/// own waits.
const HELD_AT_MOST: Duration = Duration::from_secs(60);

/// How long [`Gated::wait_arrived`] waits for something that should
/// happen at once.
const SOON: Duration = Duration::from_secs(10);

/// A server that holds every request unanswered until its gate opens,
/// then answers `204`. It counts the requests that arrived (parsed whole)
/// so far, answered or not. The gate opens on drop, so that a failing test
/// does not keep the server's threads waiting.
pub(crate) struct Gated {
    pub(crate) server: Server,
    open: Arc<AtomicBool>,
    arrived: Arc<AtomicUsize>,
}

impl Gated {
    pub(crate) fn start() -> Gated {
        let open = Arc::new(AtomicBool::new(false));
        let arrived = Arc::new(AtomicUsize::new(0));
        let server = {
            let (open, arrived) = (Arc::clone(&open), Arc::clone(&arrived));
            Server::start(move |_, _| {
                arrived.fetch_add(1, Ordering::SeqCst);
                wait_until(HELD_AT_MOST, || open.load(Ordering::SeqCst));
                Action::no_content()
            })
        };
        Gated {
            server,
            open,
            arrived,
        }
    }

    /// Requests that arrived so far, answered or not.
    pub(crate) fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    /// Waits until `n` requests have arrived; false after 10 s.
    pub(crate) fn wait_arrived(&self, n: usize) -> bool {
        wait_until(SOON, || self.arrived() >= n)
    }

    /// Opens the gate: held requests are answered, later ones at once.
    pub(crate) fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gated {
    fn drop(&mut self) {
        self.open();
    }
}
