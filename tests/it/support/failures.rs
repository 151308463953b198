//! What became of a client's messages: the error handler's calls, collected
//! by [`Failures`], and the checks that every accepted message ended
//! exactly once.

use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use notifier::{Client, FailureKind, NotificationError, Stats};

use super::drive::{id_of, wait_until};
use super::server::{lock, Request, Server};

/// One call of the error handler.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the handler was given.
    pub(crate) error: NotificationError,
    /// When it was called.
    pub(crate) at: Instant,
    /// The thread it was called on.
    pub(crate) thread: ThreadId,
    /// That thread's name, if it has one.
    pub(crate) thread_name: Option<String>,
}

/// Collects the error handler's calls.
#[derive(Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Vec<Failure>>>);

impl Failures {
    /// A new, empty collector.
    pub(crate) fn new() -> Failures {
        Failures::default()
    }

    /// An error handler that records into this collector.
    pub(crate) fn handler(&self) -> impl Fn(NotificationError) + Send + Sync + 'static {
        let failures = self.clone();
        move |error| {
            let at = Instant::now();
            let thread = thread::current();
            failures.lock().push(Failure {
                error,
                at,
                thread: thread.id(),
                thread_name: thread.name().map(str::to_owned),
            })
        }
    }

    /// How many failures were recorded.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Takes the failures recorded so far.
    pub(crate) fn take(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.lock())
    }

    /// Takes the one failure recorded, and checks it is of `kind`, for
    /// `message`, after one attempt. Panics unless there was exactly one.
    pub(crate) fn take_single(&self, kind: FailureKind, message: &[u8]) -> Failure {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "expected one failure, got {all:?}");
        let failure = all.pop().unwrap();
        assert_eq!(failure.error.kind(), kind, "{}", failure.error);
        assert_eq!(failure.error.message(), message);
        assert_eq!(failure.error.attempts(), 1, "{}", failure.error);
        failure
    }

    /// Waits until at least `n` failures were recorded; false at `timeout`.
    pub(crate) fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.len() >= n)
    }

    /// Panics, listing them, when any failure was recorded.
    pub(crate) fn assert_none(&self) {
        let failures = self.lock();
        assert!(
            failures.is_empty(),
            "{} unexpected failures, first: {}",
            failures.len(),
            failures[0].error
        );
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Failure>> {
        lock(&self.0)
    }
}

/// Asserts that the bodies of `requests` are exactly `msg(0)..msg(n)`, each once.
pub(crate) fn assert_each_id_once(requests: &[Request], n: usize) {
    assert_each_body_once(requests.iter().map(|r| &r.body[..]), n);
}

/// Asserts that `bodies` are exactly `msg(0)..msg(n)`, each once: those a
/// server received, wherever they were recorded.
pub(crate) fn assert_each_body_once<'a>(bodies: impl IntoIterator<Item = &'a [u8]>, n: usize) {
    let mut seen = vec![0usize; n];
    for body in bodies {
        let id = id_of(body);
        assert!(id < n, "unexpected id {id} (expected below {n})");
        seen[id] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let repeated: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "{} missing (first {:?}), {} repeated (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
}

/// Checks the counters of a stopped client: every accepted message ended
/// exactly once, none left queued or in flight.
pub(crate) fn assert_balanced(stats: &Stats) {
    assert_eq!(
        stats.accepted,
        stats.delivered + stats.failed,
        "accepted != delivered + failed: {stats:?}"
    );
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
}

/// [`assert_balanced`], with `n` messages accepted and `failed` of them
/// at the error handler.
pub(crate) fn assert_each_ended(stats: &Stats, n: usize, failed: usize) {
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_balanced(stats);
    assert_eq!(stats.failed, failed as u64, "{stats:?}");
}

/// Checks, once `client` has stopped, that `msg(0)..msg(n)` were all
/// accepted and delivered to `server`, each once, and none failed.
pub(crate) fn assert_all_delivered(
    client: &Client,
    failures: &Failures,
    server: &Server,
    n: usize,
) {
    failures.assert_none();
    let stats = client.stats();
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_eq!(stats.delivered, n as u64, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_each_id_once(&server.requests(), n);
}
