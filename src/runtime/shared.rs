//! What a client's handle and its event loops share while it runs: the
//! queue, the configuration, the ledger (with the breaker's word), the
//! endpoint's addresses, each loop's counters, and the shutdown deadline.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::config::Config;
use crate::policy::idle::IdleLimit;
use crate::policy::ledger::Ledger;
use crate::runtime::handoff::Handoff;
use crate::runtime::queue::Queue;
use crate::runtime::resolver::Resolver;
use crate::stats::Stats;

/// The counters one event loop writes, and whether it died.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) retried: AtomicU64,
    /// Requests whose every byte was handed to the connection.
    pub(crate) requests: AtomicU64,
    /// Reads that left a response incomplete, acknowledged at once.
    pub(crate) quick_acks: AtomicU64,
    /// Failures that were `Expired` and `Dropped`.
    pub(crate) expired: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) handler_panics: AtomicU64,
    dead: AtomicBool,
}

/// State shared by the client handle and its event loops.
pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) config: Config,
    pub(crate) ledger: Ledger,
    /// Shared with the resolver's thread, for a host name.
    pub(crate) resolver: Arc<Resolver>,
    /// How long the connections of every loop may sit idle, learned from
    /// the server: its behaviour is the endpoint's, whichever loop meets it.
    pub(crate) idle: IdleLimit,
    /// Requests a slot could not send for want of a socket, for a slot of
    /// any loop.
    pub(crate) unsent: Handoff,
    pub(crate) loops: Box<[CachePadded<LoopStats>]>,
    /// Loops that have not died of a panic.
    alive: AtomicUsize,
    shutdown_deadline: OnceLock<Instant>,
    /// `flush` calls under way: while any is, batches do not linger.
    flushing: AtomicUsize,
    /// The breaker's clock counts milliseconds from here.
    epoch: Instant,
}

impl Shared {
    pub(crate) fn new(config: Config, queue: Queue) -> Shared {
        let loops = (0..config.threads)
            .map(|_| CachePadded::default())
            .collect();
        Shared {
            queue,
            ledger: Ledger::new(config.retry.clone(), config.breaker.as_ref()),
            resolver: Arc::new(Resolver::new(&config)),
            idle: IdleLimit::new(config.idle_timeout),
            unsent: Handoff::default(),
            alive: AtomicUsize::new(config.threads),
            loops,
            config,
            shutdown_deadline: OnceLock::new(),
            flushing: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    /// Milliseconds since the client was built: the ledger's time.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Sets the shutdown deadline, `timeout` from `now`, if none is set.
    /// A deadline too far to represent is no deadline.
    pub(crate) fn set_shutdown_deadline(&self, now: Instant, timeout: Duration) {
        if let Some(at) = deadline_after(now, timeout) {
            let _ = self.shutdown_deadline.set(at);
        }
    }

    pub(crate) fn shutdown_deadline(&self) -> Option<Instant> {
        self.shutdown_deadline.get().copied()
    }

    /// A `flush` call begins (`true`) or ends (`false`).
    pub(crate) fn flush_waits(&self, waits: bool) {
        if waits {
            self.flushing.fetch_add(1, Ordering::SeqCst);
        } else {
            self.flushing.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Whether a `flush` call is waiting.
    pub(crate) fn flushing(&self) -> bool {
        self.flushing.load(Ordering::Relaxed) > 0
    }

    /// Marks loop `id` dead; returns whether it was the last one alive.
    pub(crate) fn loop_died(&self, id: usize) -> bool {
        if self.loops[id].dead.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.alive.fetch_sub(1, Ordering::SeqCst) == 1
    }

    /// Whether every event loop died.
    pub(crate) fn all_loops_dead(&self) -> bool {
        self.alive.load(Ordering::SeqCst) == 0
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        let q = &self.queue;
        let queued = q.queued();
        let mut s = Stats {
            accepted: q.accepted(),
            delivered: 0,
            failed: 0,
            retried: 0,
            requests: 0,
            quick_acks: 0,
            expired: 0,
            dropped: 0,
            rejected: q.rejected(),
            wakeups: q.wakeups(),
            handler_panics: 0,
            queued,
            in_flight: q.in_system().saturating_sub(queued),
            circuit: self.ledger.circuit(self.millis(Instant::now())),
        };
        for l in self.loops.iter() {
            s.delivered += l.delivered.load(Ordering::SeqCst);
            s.failed += l.failed.load(Ordering::SeqCst);
            s.retried += l.retried.load(Ordering::Relaxed);
            s.requests += l.requests.load(Ordering::Relaxed);
            s.quick_acks += l.quick_acks.load(Ordering::Relaxed);
            s.expired += l.expired.load(Ordering::Relaxed);
            s.dropped += l.dropped.load(Ordering::Relaxed);
            s.handler_panics += l.handler_panics.load(Ordering::Relaxed);
        }
        s
    }
}

/// `now + d`, or `None` (no deadline) when that is too far to represent:
/// a `Duration::MAX` timeout, say. Never "now".
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Option<Instant> {
    now.checked_add(d)
}

/// The earlier of two deadlines, where `None` is no deadline.
pub(crate) fn earlier(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_too_far_to_represent_is_no_deadline() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(deadline_after(now, Duration::MAX), None);
    }
}
