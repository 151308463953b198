//! Connect attempts over several addresses, in the spirit of RFC 8305
//! (Happy Eyeballs v2): the address families alternate, each attempt has
//! [`CONNECT_ATTEMPT_DELAY`] to itself before the next address starts
//! beside it, a failed attempt starts the next address at once, and the
//! first attempt to connect wins (the caller closes the others). A
//! black-holed address costs the delay, not the whole attempt.
//!
//! [`Race`] only decides which address starts when; the sockets are the
//! event loop's. The time comes in as an argument, so the tests run on a
//! virtual clock.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a connect attempt runs alone before the next address starts
/// beside it, as RFC 8305 recommends.
pub(crate) const CONNECT_ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// `addrs` reordered so that the families alternate, starting with the
/// family of the first (the resolver's preference): v6, v4, v6, v4, … when
/// the first is v6. Each family keeps its own order; the family with more
/// addresses ends the list with the rest of them.
pub(crate) fn interleave(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return Vec::new();
    };
    let first_v6 = first.is_ipv6();
    let mut preferred = addrs.iter().filter(|a| a.is_ipv6() == first_v6);
    let mut other = addrs.iter().filter(|a| a.is_ipv6() != first_v6);
    let mut out = Vec::with_capacity(addrs.len());
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b).copied()),
        }
    }
}

/// What the race wants done next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Start a connect attempt to the address at this index of the list.
    Start(usize),
    /// Wait for an attempt in flight to connect or fail, or until this
    /// instant, when the next address is due (`None`: no address is left
    /// to start).
    Wait(Option<Instant>),
    /// Every address was tried and every attempt failed.
    Exhausted,
}

/// The schedule of connect attempts over a list of `len` addresses, taken
/// in order.
#[derive(Debug)]
pub(crate) struct Race {
    len: usize,
    /// The index of the next address to start.
    next: usize,
    /// Attempts started and not failed.
    in_flight: usize,
    /// When the next address starts beside the attempts in flight; `None`:
    /// at once.
    due: Option<Instant>,
}

impl Race {
    /// A race over `len` addresses; the first starts at once.
    pub(crate) fn new(len: usize) -> Race {
        Race {
            len,
            next: 0,
            in_flight: 0,
            due: None,
        }
    }

    /// What to do at `now`. After [`Next::Start`] the caller starts that
    /// attempt (and reports its failure, even an immediate one, with
    /// [`Race::failed`]) and asks again.
    pub(crate) fn next(&mut self, now: Instant) -> Next {
        let start = self.in_flight == 0 || self.due.is_none_or(|due| due <= now);
        if self.next < self.len && start {
            let index = self.next;
            self.next += 1;
            self.in_flight += 1;
            self.due = Some(now + CONNECT_ATTEMPT_DELAY);
            return Next::Start(index);
        }
        if self.in_flight == 0 {
            return Next::Exhausted;
        }
        Next::Wait(self.due())
    }

    /// An attempt in flight failed: the next address starts at once.
    pub(crate) fn failed(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.due = None;
    }

    /// When the next address is due to start, if one is left.
    pub(crate) fn due(&self) -> Option<Instant> {
        if self.next < self.len {
            self.due
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn families_alternate_from_the_first_one_each_in_its_order() {
        let v6a = addr("[2001:db8::1]:443");
        let v6b = addr("[2001:db8::2]:443");
        let v6c = addr("[2001:db8::3]:443");
        let v4a = addr("192.0.2.1:443");
        let v4b = addr("192.0.2.2:443");
        assert_eq!(
            interleave(&[v6a, v6b, v6c, v4a, v4b]),
            [v6a, v4a, v6b, v4b, v6c]
        );
        assert_eq!(interleave(&[v4a, v4b, v6a]), [v4a, v6a, v4b]);
        assert_eq!(interleave(&[v4a, v4b]), [v4a, v4b]);
        assert_eq!(interleave(&[v6a]), [v6a]);
        assert!(interleave(&[]).is_empty());
    }

    #[test]
    fn the_next_address_starts_after_the_delay_while_the_first_is_silent() {
        let t0 = Instant::now();
        let mut race = Race::new(3);
        assert_eq!(race.next(t0), Next::Start(0));
        let due = t0 + CONNECT_ATTEMPT_DELAY;
        assert_eq!(race.next(t0), Next::Wait(Some(due)));
        assert_eq!(
            race.next(due - Duration::from_millis(1)),
            Next::Wait(Some(due))
        );
        assert_eq!(race.next(due), Next::Start(1));
        let due = due + CONNECT_ATTEMPT_DELAY;
        assert_eq!(race.next(due), Next::Start(2));
        // Nothing left to start: wait for the three in flight.
        assert_eq!(race.next(due), Next::Wait(None));
        assert_eq!(race.due(), None);
    }

    #[test]
    fn a_failure_starts_the_next_address_at_once() {
        let t0 = Instant::now();
        let mut race = Race::new(3);
        assert_eq!(race.next(t0), Next::Start(0));
        let t1 = t0 + Duration::from_millis(10);
        race.failed();
        assert_eq!(race.next(t1), Next::Start(1));
        // The second one is slow: the third joins after the delay, counted
        // from the second's start.
        assert_eq!(race.next(t1), Next::Wait(Some(t1 + CONNECT_ATTEMPT_DELAY)));
        // A failure while others are in flight also starts the next.
        let t2 = t1 + Duration::from_millis(5);
        race.failed();
        assert_eq!(race.next(t2), Next::Start(2));
    }

    #[test]
    fn the_race_is_lost_only_when_every_attempt_failed() {
        let t0 = Instant::now();
        let mut race = Race::new(2);
        assert_eq!(race.next(t0), Next::Start(0));
        let t1 = t0 + CONNECT_ATTEMPT_DELAY;
        assert_eq!(race.next(t1), Next::Start(1));
        race.failed();
        assert_eq!(race.next(t1), Next::Wait(None), "one still in flight");
        race.failed();
        assert_eq!(race.next(t1), Next::Exhausted);
        assert_eq!(Race::new(0).next(t0), Next::Exhausted);
    }
}
