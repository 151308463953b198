//! The only place with sockets, threads and clocks: the shared queue and
//! the event loops that drain it.

pub(crate) mod event_loop;
pub(crate) mod park;
pub(crate) mod queue;
pub(crate) mod sched;
pub(crate) mod slot;
pub(crate) mod timers;

use std::time::{Duration, Instant};

/// `now + d`, or a year from now when `d` is too large for an `Instant`
/// (a `Duration::MAX` timeout, a huge `Retry-After` under a huge
/// `max_backoff`): such a deadline is never reached in practice.
pub(crate) fn deadline_after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        assert_eq!(
            deadline_after(now, Duration::from_secs(1)),
            now + Duration::from_secs(1)
        );
        assert!(deadline_after(now, Duration::MAX) > now + Duration::from_secs(86_400));
    }
}
