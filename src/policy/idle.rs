//! How long a kept-alive connection may sit idle and still carry a request:
//! learned from the server.
//!
//! Servers close connections left idle past their keep-alive timeout
//! (nginx 75 s, Apache httpd and Node 5 s, lighttpd's
//! `server.max-keep-alive-idle`), most without saying how long that is. A
//! request written into a connection as the server closes it is lost: the
//! server may have read it (so it is not sent again without the retry
//! policy), or it closes without an answer. The client keeps clear of
//! that moment by never reusing a connection idle for as long as the
//! server keeps them:
//!
//! - When the server ends a connection that sat idle for `t` (an end of
//!   stream, a reset or a goodbye `408` arriving on the idle connection,
//!   or meeting the first request written to it after `t` of idle), the
//!   limit drops to `0.75 × t`, if that is lower. An end of stream after
//!   less than [`MIN_OBSERVED`] of idle is not an idle timeout (a server
//!   closing after its response, or restarting) and teaches nothing, so
//!   the limit learned this way is never below `0.75 ×` [`MIN_OBSERVED`].
//! - A `Keep-Alive: timeout=N` header is the server saying it: the limit is
//!   set to `0.75 × N` s, whatever was learned before (`timeout=0`: no
//!   reuse at all).
//! - The configured idle timeout bounds both.
//!
//! The limit is one per client, shared by its event loops: the server's
//! behaviour belongs to the endpoint, not to one loop's connections, so
//! what one loop learns keeps the others' requests out of the same trap.
//! It is one atomic word, read when a connection goes idle and when it is
//! taken for a request, and written only when it changes.
//!
//! Sans-IO: the idle periods come in as instants, so the tests run on a
//! virtual clock.

use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU64, Ordering};

/// The shortest idle period whose end of stream is taken for the server's
/// idle timeout.
pub(crate) const MIN_OBSERVED: Duration = Duration::from_millis(100);

/// The share of the server's idle timeout a connection may sit idle: far
/// enough from the server's deadline that the request is read before it.
fn three_quarters(d: Duration) -> Duration {
    d.mul_f64(0.75)
}

/// A duration as nanoseconds, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The idle limit of one client's connections.
#[derive(Debug)]
pub(crate) struct IdleLimit {
    /// `Builder::idle_timeout`: the limit is never longer.
    configured: Duration,
    /// The learned limit in nanoseconds; `u64::MAX` when nothing is learned
    /// (or it is longer than anything representable).
    learned: AtomicU64,
}

impl IdleLimit {
    /// Nothing learned yet: the limit is `configured`.
    pub(crate) fn new(configured: Duration) -> IdleLimit {
        IdleLimit {
            configured,
            learned: AtomicU64::new(u64::MAX),
        }
    }

    /// How long a connection may sit idle now.
    pub(crate) fn limit(&self) -> Duration {
        let learned = self.learned.load(Ordering::Relaxed);
        if learned == u64::MAX {
            return self.configured;
        }
        self.configured.min(Duration::from_nanos(learned))
    }

    /// Whether a connection idle since `since` may carry a request at
    /// `now`: it has been idle for less than the limit.
    pub(crate) fn may_reuse(&self, since: Instant, now: Instant) -> bool {
        now.saturating_duration_since(since) < self.limit()
    }

    /// The server ended, at `at`, a connection idle since `since`; the limit
    /// drops to three quarters of that idle period when it is lower (and
    /// the period at least [`MIN_OBSERVED`]).
    pub(crate) fn observe_close(&self, since: Instant, at: Instant) {
        let idle = at.saturating_duration_since(since);
        if idle < MIN_OBSERVED {
            return;
        }
        self.learned
            .fetch_min(nanos(three_quarters(idle)), Ordering::Relaxed);
    }

    /// The server announced `Keep-Alive: timeout=secs`: the limit is three
    /// quarters of it, replacing what was learned before.
    pub(crate) fn hint(&self, secs: u64) {
        let announced = Duration::from_secs(secs);
        let limit = nanos(three_quarters(announced));
        // Every response of such a server says it again: write only what
        // changes, so that the word stays shared between the loops' caches.
        if self.learned.load(Ordering::Relaxed) != limit {
            self.learned.store(limit, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    //! On a virtual clock: instants are `t0` plus offsets.

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn t0() -> Instant {
        Instant::now()
    }

    #[test]
    fn nothing_learned_the_configured_idle_timeout_is_the_limit() {
        let idle = IdleLimit::new(30_000 * MS);
        let t = t0();
        assert_eq!(idle.limit(), 30_000 * MS);
        assert!(idle.may_reuse(t, t + 29_999 * MS));
        assert!(!idle.may_reuse(t, t + 30_000 * MS));
    }

    #[test]
    fn an_idle_close_lowers_the_limit_to_three_quarters_of_the_idle_period() {
        let idle = IdleLimit::new(30_000 * MS);
        let t = t0();
        idle.observe_close(t, t + 1_000 * MS);
        assert_eq!(idle.limit(), 750 * MS);
        assert!(idle.may_reuse(t, t + 749 * MS));
        assert!(!idle.may_reuse(t, t + 750 * MS));
        // A later, longer idle period raises nothing; a shorter lowers it.
        idle.observe_close(t, t + 2_000 * MS);
        assert_eq!(idle.limit(), 750 * MS);
        idle.observe_close(t + 5_000 * MS, t + 5_400 * MS);
        assert_eq!(idle.limit(), 300 * MS);
    }

    #[test]
    fn an_end_of_stream_soon_after_a_response_teaches_nothing() {
        let idle = IdleLimit::new(30_000 * MS);
        let t = t0();
        idle.observe_close(t, t + MIN_OBSERVED - MS);
        idle.observe_close(t, t);
        assert_eq!(idle.limit(), 30_000 * MS);
        // The floor of what observations teach.
        idle.observe_close(t, t + MIN_OBSERVED);
        assert_eq!(idle.limit(), 75 * MS);
    }

    #[test]
    fn the_configured_idle_timeout_bounds_what_is_learned() {
        let idle = IdleLimit::new(500 * MS);
        let t = t0();
        idle.observe_close(t, t + 1_000 * MS);
        assert_eq!(idle.limit(), 500 * MS, "0.75 s learned, 0.5 s configured");
        idle.hint(5);
        assert_eq!(idle.limit(), 500 * MS);
        idle.observe_close(t, t + 400 * MS);
        assert_eq!(idle.limit(), 300 * MS);
    }

    #[test]
    fn a_keep_alive_hint_sets_the_limit_either_way() {
        let idle = IdleLimit::new(30_000 * MS);
        let t = t0();
        idle.hint(1);
        assert_eq!(idle.limit(), 750 * MS, "timeout=1 still allows reuse");
        idle.hint(5);
        assert_eq!(idle.limit(), 3_750 * MS, "raised by the server's word");
        idle.observe_close(t, t + 2_000 * MS);
        assert_eq!(idle.limit(), 1_500 * MS, "lowered by what it does");
        idle.hint(5);
        assert_eq!(idle.limit(), 3_750 * MS);
        idle.hint(0);
        assert_eq!(idle.limit(), Duration::ZERO, "timeout=0: no reuse");
        assert!(!idle.may_reuse(t, t));
        idle.hint(u64::MAX);
        assert_eq!(idle.limit(), 30_000 * MS, "no overflow");
    }

    #[test]
    fn clock_order_does_not_matter() {
        // An instant before `since` is an idle period of zero.
        let idle = IdleLimit::new(30_000 * MS);
        let t = t0() + 1_000 * MS;
        idle.observe_close(t, t - 500 * MS);
        assert_eq!(idle.limit(), 30_000 * MS);
        assert!(idle.may_reuse(t, t - 500 * MS));
    }
}
