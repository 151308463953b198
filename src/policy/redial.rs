//! When a slot with `preconnect` opens its next connection ahead of any
//! message: at once after a connection that served (it carried a
//! request, or stayed open [`HEALTHY_AFTER`] before the server closed it
//! while idle), and after a growing backoff while openings fail (connect
//! refused, handshake failed, timed out) or the server closes fresh idle
//! connections at once. The backoff is "equal jitter": the `n`-th failure
//! in a row waits between half of and the whole of
//! `min(MAX_BACKOFF, FIRST_BACKOFF · 2ⁿ⁻¹)`, never less, so a dead server
//! costs a few connects a second at first and one every half minute or so
//! after that, never a busy loop.
//!
//! The slot's event loop decides whether to open at all (not while the
//! client stops, nor while the circuit is not closed); this decides only
//! when. Time and the random draw come in as arguments, so the tests run
//! on a virtual clock.

use std::time::{Duration, Instant};

use crate::policy::RetryConfig;

/// The cap on the wait after the first failure in a row.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The cap on every wait.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection the server closes while idle counts as served when it was
/// open at least this long; closed sooner, it counts as a failed opening.
pub(crate) const HEALTHY_AFTER: Duration = Duration::from_secs(1);

/// One slot's openings ahead of messages.
#[derive(Debug, Default)]
pub(crate) struct Redial {
    /// Failures in a row.
    failures: u32,
    /// When the next opening may start; `None`: at once.
    at: Option<Instant>,
}

impl Redial {
    /// When the next opening may start; `None`: at once.
    pub(crate) fn due(&self) -> Option<Instant> {
        self.at
    }

    /// The connection served: the next opening starts at once.
    pub(crate) fn served(&mut self) {
        self.failures = 0;
        self.at = None;
    }

    /// An opening failed at `now`; `draw` is uniform in `0.0..1.0`.
    pub(crate) fn failed(&mut self, now: Instant, draw: f64) {
        self.failures = self.failures.saturating_add(1);
        let cap = backoff_cap(self.failures);
        let wait = cap.mul_f64(0.5 + 0.5 * draw.clamp(0.0, 1.0));
        self.at = now.checked_add(wait);
    }

    /// The server closed an idle connection opened at `opened`: served if
    /// it lived [`HEALTHY_AFTER`], else a failure.
    pub(crate) fn closed_idle(&mut self, now: Instant, opened: Instant, draw: f64) {
        if now.saturating_duration_since(opened) >= HEALTHY_AFTER {
            self.served();
        } else {
            self.failed(now, draw);
        }
    }
}

/// `min(MAX_BACKOFF, FIRST_BACKOFF · 2^(failures − 1))`: the retry
/// policy's cap, doubling.
fn backoff_cap(failures: u32) -> Duration {
    RetryConfig::default()
        .initial_backoff(FIRST_BACKOFF)
        .max_backoff(MAX_BACKOFF)
        .backoff_cap(failures.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_served_connection_is_replaced_at_once() {
        let t0 = Instant::now();
        let mut r = Redial::default();
        assert_eq!(r.due(), None);
        r.failed(t0, 0.0);
        r.served();
        assert_eq!(r.due(), None);
        r.failed(t0, 0.0);
        r.closed_idle(t0 + HEALTHY_AFTER, t0, 0.0);
        assert_eq!(r.due(), None, "it lived long enough");
    }

    #[test]
    fn failures_in_a_row_back_off_between_half_and_the_whole_cap() {
        let t0 = Instant::now();
        let mut r = Redial::default();
        let mut caps = Vec::new();
        for n in 0..12 {
            let draw = if n % 2 == 0 { 0.0 } else { 0.999_999 };
            r.failed(t0, draw);
            let wait = r.due().expect("a backoff") - t0;
            let cap = backoff_cap(n + 1);
            assert!(
                wait >= cap / 2 && wait <= cap,
                "{wait:?} for a cap of {cap:?}"
            );
            caps.push(cap);
        }
        assert_eq!(
            caps[..10],
            [
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1_600),
                ms(3_200),
                ms(6_400),
                ms(12_800),
                ms(25_600),
                MAX_BACKOFF
            ]
        );
        assert_eq!(backoff_cap(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn never_a_busy_loop_an_opening_that_fails_at_once_waits() {
        // A server that closes every fresh connection at once: each counts
        // as a failure, and the waits add up.
        let t0 = Instant::now();
        let mut r = Redial::default();
        let mut now = t0;
        let mut openings = 0;
        while now < t0 + Duration::from_secs(10) {
            openings += 1;
            r.closed_idle(now, now, 0.0);
            now = r.due().expect("a backoff");
        }
        // Waits of 50, 100, 200, … 6,400 ms: eight openings in ten seconds.
        assert_eq!(openings, 8);
    }
}
