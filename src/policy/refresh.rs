//! When a client's resolver looks its host name up: at once when it
//! starts; again every `dns_refresh` after the last lookup ended, so that
//! new connections follow DNS changes; sooner when a connection to the
//! listed addresses failed, though never sooner than [`RETRY_GAP`] after
//! the last lookup began, so that a failing server does not turn into a
//! storm of lookups; and, while there is no address list (every lookup so
//! far failed), only when an attempt waits for one, with the same gap.
//!
//! One lookup at a time: whoever asks while one is under way waits for
//! its outcome. The time comes in as an argument, so the tests run on a
//! virtual clock.

use std::time::{Duration, Instant};

/// The least time between the start of one lookup and the start of a
/// lookup asked for by a failure (a connection's, or the lookup's own
/// while there is no list).
pub(crate) const RETRY_GAP: Duration = Duration::from_secs(1);

/// When the next lookup is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    Now,
    At(Instant),
    /// Not until something asks (or, with a lookup under way, until it
    /// ends).
    Idle,
}

/// The resolver's schedule.
#[derive(Debug)]
pub(crate) struct Refresh {
    /// `None`: no periodic lookup, only the ones failures ask for.
    every: Option<Duration>,
    /// A lookup succeeded once: there is an address list.
    listed: bool,
    /// A lookup is under way.
    resolving: bool,
    /// When the last lookup began, and when it ended.
    began: Option<Instant>,
    ended: Option<Instant>,
    /// An attempt waits for an address while there is no list.
    wanted: bool,
    /// A connection to the listed addresses failed since the last lookup
    /// began.
    suspect: bool,
}

impl Refresh {
    /// A schedule that refreshes the list `every` so long (`None`: only
    /// when a connection fails); the first lookup is due at once.
    pub(crate) fn new(every: Option<Duration>) -> Refresh {
        Refresh {
            every,
            listed: false,
            resolving: false,
            began: None,
            ended: None,
            wanted: false,
            suspect: false,
        }
    }

    /// When the next lookup is due, seen at `now`.
    pub(crate) fn due(&self, now: Instant) -> Due {
        if self.resolving {
            return Due::Idle;
        }
        let (Some(began), Some(ended)) = (self.began, self.ended) else {
            return Due::Now;
        };
        let retry = began.checked_add(RETRY_GAP);
        let at = if self.listed {
            let periodic = self.every.and_then(|every| ended.checked_add(every));
            let early = retry.filter(|_| self.suspect);
            match (periodic, early) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        } else {
            retry.filter(|_| self.wanted)
        };
        match at {
            Some(at) if at <= now => Due::Now,
            Some(at) => Due::At(at),
            None => Due::Idle,
        }
    }

    /// Whether a lookup is under way.
    pub(crate) fn resolving(&self) -> bool {
        self.resolving
    }

    /// A lookup begins at `now`: it answers whoever asked so far.
    pub(crate) fn began(&mut self, now: Instant) {
        self.resolving = true;
        self.began = Some(now);
        self.wanted = false;
        self.suspect = false;
    }

    /// The lookup under way ended at `now`, with addresses or not; a
    /// failed lookup leaves an earlier list as it was.
    pub(crate) fn ended(&mut self, now: Instant, found: bool) {
        self.resolving = false;
        self.ended = Some(now);
        self.listed |= found;
    }

    /// An attempt waits for an address and there is no list.
    pub(crate) fn want(&mut self) {
        self.wanted = true;
    }

    /// A connection to the listed addresses failed: the list may be stale.
    pub(crate) fn connect_failed(&mut self) {
        self.suspect = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(60);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A schedule whose first lookup ran from `t0` to `t0 + 5 ms`.
    fn after_first(every: Option<Duration>, found: bool) -> (Refresh, Instant) {
        let t0 = Instant::now();
        let mut r = Refresh::new(every);
        assert_eq!(r.due(t0), Due::Now);
        r.began(t0);
        assert_eq!(r.due(t0), Due::Idle, "one lookup at a time");
        r.ended(t0 + ms(5), found);
        (r, t0)
    }

    #[test]
    fn the_list_is_refreshed_every_period_after_the_last_lookup_ended() {
        let (mut r, t0) = after_first(Some(EVERY), true);
        let due = t0 + ms(5) + EVERY;
        assert_eq!(r.due(t0 + ms(5)), Due::At(due));
        assert_eq!(r.due(due), Due::Now);
        r.began(due);
        r.ended(due + ms(5), false);
        // A failed refresh keeps the list, and is tried again a period on.
        assert_eq!(r.due(due + ms(5)), Due::At(due + ms(5) + EVERY));
    }

    #[test]
    fn a_connect_failure_refreshes_early_but_not_within_the_gap() {
        let (mut r, t0) = after_first(Some(EVERY), true);
        r.connect_failed();
        assert_eq!(r.due(t0 + ms(100)), Due::At(t0 + RETRY_GAP));
        assert_eq!(r.due(t0 + RETRY_GAP), Due::Now);
        let t1 = t0 + ms(3_000);
        r.began(t1);
        r.ended(t1 + ms(5), true);
        // The failure was answered; back to the period.
        assert_eq!(r.due(t1 + ms(5)), Due::At(t1 + ms(5) + EVERY));
        // Failures during a lookup ask for the next one.
        r.began(t1 + ms(10));
        r.connect_failed();
        r.ended(t1 + ms(15), true);
        assert_eq!(r.due(t1 + ms(15)), Due::At(t1 + ms(10) + RETRY_GAP));
    }

    #[test]
    fn without_a_period_only_failures_refresh() {
        let (mut r, t0) = after_first(None, true);
        assert_eq!(r.due(t0 + EVERY * 100), Due::Idle);
        r.connect_failed();
        assert_eq!(r.due(t0 + EVERY), Due::Now);
    }

    #[test]
    fn without_a_list_a_lookup_waits_for_an_attempt_and_the_gap() {
        let (mut r, t0) = after_first(Some(EVERY), false);
        assert_eq!(r.due(t0 + EVERY * 2), Due::Idle, "nobody waits");
        r.connect_failed();
        assert_eq!(r.due(t0 + EVERY * 2), Due::Idle, "no list to suspect");
        r.want();
        assert_eq!(r.due(t0 + ms(10)), Due::At(t0 + RETRY_GAP));
        assert_eq!(r.due(t0 + RETRY_GAP), Due::Now);
        r.began(t0 + RETRY_GAP);
        r.ended(t0 + RETRY_GAP + ms(5), true);
        assert_eq!(
            r.due(t0 + RETRY_GAP + ms(5)),
            Due::At(t0 + RETRY_GAP + ms(5) + EVERY)
        );
    }
}
