//! What an event loop does when it has a free slot and nothing is queued:
//! keep watching the queue (so that `notify` need not wake it) or park
//! (so that it costs nothing). Sans-IO: time comes in as arguments.
//!
//! A parked loop costs no CPU, but the `notify` that finds every loop
//! parked pays for the wake-up: a syscall, and on a virtual machine the
//! exit that delivers it, microseconds to tens of microseconds on the
//! caller's thread. A loop that watches costs CPU instead, and only while
//! messages keep coming. The adaptive rule watches for a window sized from
//! the gaps between the arrivals it saw: [`WATCH_GAPS`] times their
//! average, at most [`WATCH_MAX`]. When arrivals come closer than
//! [`SPIN_GAP`] it spins (polls without sleeping), the only way to pick a
//! message up within microseconds; when they are further apart it dozes,
//! sleeping [`DOZE`] between looks, which costs a fraction of a core and
//! adds up to that much to the message's way to the server. Past the
//! window it parks, so a client that receives nothing for
//! [`WATCH_MAX`] uses no CPU at all.
//!
//! [`Builder::spin`](crate::Builder::spin)'s fixed window comes first:
//! within it a loop spins whatever the gaps.

use std::time::{Duration, Instant};

/// A loop watches for this many average gaps after the last arrival
/// before it parks. Arrivals at random (Poisson) times leave a gap longer
/// than eight times their mean once in about three thousand.
pub(crate) const WATCH_GAPS: u32 = 8;

/// The longest a loop watches after the last arrival: what a client that
/// stopped receiving messages spends before it costs nothing.
pub(crate) const WATCH_MAX: Duration = Duration::from_millis(10);

/// Arrivals closer than this on average are watched by spinning.
pub(crate) const SPIN_GAP: Duration = Duration::from_micros(100);

/// A dozing loop sleeps this long between looks at the queue. Each sleep
/// costs 15 to 25 µs of CPU on a virtual machine (the timer and the
/// halted CPU's wake-up), a few on bare metal: 50 µs keeps a dozing loop
/// near a quarter of a core there, and adds 25 µs on average to a
/// message's way to the server.
pub(crate) const DOZE: Duration = Duration::from_micros(50);

/// What a loop with a free slot and an empty queue does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Look at the sockets without blocking, then at the queue again;
    /// `fixed` when the builder's fixed window, not the adaptive rule,
    /// says so (every loop in it spins, not only one).
    Spin { fixed: bool },
    /// Sleep this long, then look at the sockets and the queue again.
    Doze(Duration),
    /// Block until a producer or a socket wakes the loop.
    Park,
}

impl Idle {
    /// Whether producers may count on the loop to look at the queue soon.
    pub(crate) fn watches(self) -> bool {
        self != Idle::Park
    }
}

/// One loop's record of the arrivals it saw, and its settings.
#[derive(Debug)]
pub(crate) struct Watch {
    /// The builder's fixed spin window, after any activity.
    spin: Duration,
    /// Whether the adaptive rule applies past the fixed window.
    adaptive: bool,
    /// The last activity (work taken, or a socket event).
    active_at: Option<Instant>,
    /// The last time the loop found work after having found none.
    arrived_at: Option<Instant>,
    /// Average gap between those arrivals (each gap capped at
    /// [`WATCH_MAX`]), weighted a quarter to the newest.
    gap: Duration,
}

impl Watch {
    pub(crate) fn new(spin: Duration, adaptive: bool) -> Watch {
        Watch {
            spin,
            adaptive,
            active_at: None,
            arrived_at: None,
            gap: WATCH_MAX,
        }
    }

    /// The loop found work at `now`. `after_idle` says whether it had
    /// found the queue empty since it last found work: only then is this
    /// an arrival whose gap counts.
    pub(crate) fn found_work(&mut self, now: Instant, after_idle: bool) {
        self.active_at = Some(now);
        if !after_idle && self.arrived_at.is_some() {
            return;
        }
        if let Some(before) = self.arrived_at {
            let gap = now.saturating_duration_since(before).min(WATCH_MAX);
            self.gap = (self.gap * 3 + gap) / 4;
        }
        self.arrived_at = Some(now);
    }

    /// A socket event at `now`: activity for the fixed spin window, not an
    /// arrival.
    pub(crate) fn socket_event(&mut self, now: Instant) {
        self.active_at = Some(now);
    }

    /// What to do at `now` with a free slot and nothing queued.
    pub(crate) fn next(&self, now: Instant) -> Idle {
        let since = |at: Option<Instant>| at.map(|at| now.saturating_duration_since(at));
        if since(self.active_at).is_some_and(|d| d < self.spin) {
            return Idle::Spin { fixed: true };
        }
        if !self.adaptive {
            return Idle::Park;
        }
        let window = (self.gap * WATCH_GAPS).min(WATCH_MAX);
        match since(self.arrived_at) {
            Some(idle) if idle < window && self.gap <= SPIN_GAP => Idle::Spin { fixed: false },
            Some(idle) if idle < window => Idle::Doze(DOZE),
            _ => Idle::Park,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Arrivals every `gap`, `n` of them from `start`; returns the last.
    fn arrivals(w: &mut Watch, start: Instant, gap: Duration, n: u32) -> Instant {
        let mut at = start;
        for i in 0..n {
            at = start + gap * i;
            w.found_work(at, true);
        }
        at
    }

    #[test]
    fn a_loop_that_never_saw_work_parks() {
        let w = Watch::new(Duration::ZERO, true);
        assert_eq!(w.next(Instant::now()), Idle::Park);
    }

    #[test]
    fn close_arrivals_are_watched_by_spinning_for_eight_gaps_then_park() {
        let mut w = Watch::new(Duration::ZERO, true);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 50 * US, 40);
        assert_eq!(w.next(last + US), Idle::Spin { fixed: false });
        assert_eq!(w.next(last + 300 * US), Idle::Spin { fixed: false });
        assert_eq!(w.next(last + 500 * US), Idle::Park);
    }

    #[test]
    fn sparse_arrivals_are_watched_by_dozing() {
        let mut w = Watch::new(Duration::ZERO, true);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 1_000 * US, 40);
        assert_eq!(w.next(last + 900 * US), Idle::Doze(DOZE));
        assert_eq!(w.next(last + 7_000 * US), Idle::Doze(DOZE));
        assert_eq!(w.next(last + 9_000 * US), Idle::Park);
    }

    #[test]
    fn no_loop_watches_longer_than_the_maximum() {
        let mut w = Watch::new(Duration::ZERO, true);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 5 * WATCH_MAX, 40);
        assert_eq!(w.next(last + WATCH_MAX - US), Idle::Doze(DOZE));
        assert_eq!(w.next(last + WATCH_MAX), Idle::Park);
    }

    #[test]
    fn work_found_without_an_idle_look_between_is_no_new_arrival() {
        let mut w = Watch::new(Duration::ZERO, true);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 1_000 * US, 40);
        // A burst taken over several passes does not shrink the gap.
        for i in 1..100 {
            w.found_work(last + i * US, false);
        }
        assert_eq!(w.next(last + 200 * US), Idle::Doze(DOZE));
    }

    #[test]
    fn the_gap_average_follows_a_change_of_rate() {
        let mut w = Watch::new(Duration::ZERO, true);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 1_000 * US, 40);
        let last = arrivals(&mut w, last + 20 * US, 20 * US, 30);
        assert_eq!(w.next(last + 10 * US), Idle::Spin { fixed: false });
    }

    #[test]
    fn the_fixed_spin_window_spins_after_any_activity_even_unadaptive() {
        let mut w = Watch::new(100 * US, false);
        let t = Instant::now();
        w.socket_event(t);
        assert_eq!(w.next(t + 99 * US), Idle::Spin { fixed: true });
        assert_eq!(w.next(t + 100 * US), Idle::Park);
    }

    #[test]
    fn without_the_adaptive_rule_a_loop_parks_at_once() {
        let mut w = Watch::new(Duration::ZERO, false);
        let t = Instant::now();
        let last = arrivals(&mut w, t, 20 * US, 40);
        assert_eq!(w.next(last + US), Idle::Park);
    }
}
