//! Tests that must have the process to themselves.
//!
//! The tests of one binary run in parallel threads of one process. A test
//! that measures the whole process (its resident set), or loads the machine
//! enough to upset the timing of others, runs alone: it calls [`alone`]
//! first, which waits until no other test holds a [`Share`], and while it
//! runs no other test gets one. Every other test holds a share without
//! asking for it: each [`Server`](super::Server) holds one while it lives,
//! and so does each client that [`started`](super::started) or
//! [`recording`](super::recording) made. A share never waits unless a test
//! runs alone, so shares cannot deadlock each other; a test that waits to
//! run alone may wait until the others have finished.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use super::server::lock;

/// Who holds what.
struct Holders {
    /// The thread of the test running alone, if one does.
    alone: Option<ThreadId>,
    /// The thread each share was taken on, once per share.
    shares: Vec<ThreadId>,
}

static HOLDERS: Mutex<Holders> = Mutex::new(Holders {
    alone: None,
    shares: Vec::new(),
});

/// Signalled whenever a share or the right to run alone is given back.
static RELEASED: Condvar = Condvar::new();

fn wait(holders: MutexGuard<'_, Holders>) -> MutexGuard<'_, Holders> {
    RELEASED
        .wait(holders)
        .unwrap_or_else(PoisonError::into_inner)
}

/// A test's share of the process, given back on drop.
pub(super) struct Share {
    taken_on: ThreadId,
}

/// Takes a share: waits while another test runs alone. The test running
/// alone gets its own shares at once.
pub(super) fn share() -> Share {
    let me = thread::current().id();
    let mut holders = lock(&HOLDERS);
    while holders.alone.is_some_and(|owner| owner != me) {
        holders = wait(holders);
    }
    holders.shares.push(me);
    Share { taken_on: me }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut holders = lock(&HOLDERS);
        if let Some(i) = holders.shares.iter().position(|&t| t == self.taken_on) {
            holders.shares.swap_remove(i);
        }
        RELEASED.notify_all();
    }
}

/// The right to run alone, given back on drop.
pub(crate) struct Alone(());

/// Waits until no other test holds a share or runs alone, then keeps the
/// others from starting a server or a client until the guard is dropped.
/// To be called on the test's own thread before it starts any server or
/// client.
pub(crate) fn alone() -> Alone {
    let me = thread::current().id();
    let mut holders = lock(&HOLDERS);
    assert!(
        !holders.shares.contains(&me),
        "alone() after this test started a server or a client: it would wait for itself"
    );
    while holders.alone.is_some() || !holders.shares.is_empty() {
        holders = wait(holders);
    }
    holders.alone = Some(me);
    Alone(())
}

impl Drop for Alone {
    fn drop(&mut self) {
        lock(&HOLDERS).alone = None;
        RELEASED.notify_all();
    }
}
