//! The circuit breaker shared by all event loops: one atomic word, no lock.
//!
//! Every attempt, retries included, asks [`Breaker::allow`] first and gets
//! a [`Ticket`], or is refused. The attempt's outcome goes back with the
//! ticket: [`Breaker::on_success`] (2xx), [`Breaker::on_failure`]
//! (transport error, timeout, 5xx) or [`Breaker::on_neutral`] (4xx and
//! other statuses, an attempt abandoned at shutdown).
//!
//! # States
//!
//! ```text
//!            threshold consecutive failures
//!   Closed ───────────────────────────────────► Open ◄──────────┐
//!     ▲                                          │  reset_timeout │ probe fails
//!     │ probe succeeds                           ▼  passed: the   │ (or is released
//!     └────────────────────────────────────── HalfOpen ──────────┘  by on_neutral)
//!                                            one probe in flight
//! ```
//!
//! Closed lets every attempt through and counts consecutive failures; a
//! success resets the count, a neutral outcome leaves it. Open refuses
//! every attempt until its reset time. The first `allow` at or after that
//! time moves Open → HalfOpen in the same compare-and-swap that hands it
//! the probe ticket, so exactly one caller gets the probe; HalfOpen
//! refuses everyone else. The probe's success closes the circuit, its
//! failure re-opens it for another `reset_timeout`, and a neutral outcome
//! releases it: the circuit goes back to Open with its reset time passed,
//! so the next `allow` takes a new probe.
//!
//! # Generations
//!
//! Every state change (Closed → Open, Open → HalfOpen, HalfOpen → Closed
//! or Open) increments the generation, and a ticket carries the generation
//! it was issued in. A result whose generation is not the current one is
//! ignored: an answer that arrives after the circuit opened (or closed
//! again) cannot flip it, and when failures race across the threshold
//! only the first one past it opens the circuit. Resetting the failure
//! count is not a state change. The generation has 12 bits and wraps: a
//! result would be mistaken for a current one only if exactly a multiple
//! of 4096 transitions happened while its attempt was in flight.
//!
//! # The word
//!
//! | bits  | field | meaning |
//! |-------|-------|---------|
//! | 0–1   | state | 0 Closed, 1 Open, 2 HalfOpen (3 unused) |
//! | 2–11  | failures | consecutive failures while Closed, saturating at 1023; 0 otherwise |
//! | 12–23 | generation | incremented by every state change, wrapping at 4096 |
//! | 24–63 | open until | while Open: the reset time, in milliseconds since the client started (40 bits: about 34.8 years); 0 otherwise |
//!
//! The failure threshold is clamped to `1..=1023`, so the count reaches it
//! before it saturates. A reset time past the 40 bits saturates, which
//! after 34 years of uptime makes the reset immediate.
//!
//! # Cost
//!
//! While Closed and healthy, `allow` and `on_success` are one load each and
//! write nothing, so the loops share the word's cache line without
//! contention. Only failures and state changes write, with a CAS loop.
//! The breaker guards no other data, so Acquire/AcqRel orderings suffice.

use std::time::Duration;

use crate::sync::{AtomicU64, Ordering};

/// The state of a client's circuit breaker, as reported in `Stats`.
///
/// # Examples
///
/// ```
/// use notifier::CircuitState;
///
/// let state = CircuitState::Closed;
/// assert_ne!(state, CircuitState::Open);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Attempts go through; consecutive failures are counted.
    Closed,
    /// Too many consecutive failures: attempts fail at once with
    /// `FailureKind::CircuitOpen` until the reset timeout passes.
    Open,
    /// The reset timeout passed: the next attempt (the probe) goes through,
    /// or is in flight, and decides whether the circuit closes or re-opens.
    /// Every other attempt still fails at once.
    HalfOpen,
}

/// Settings of the circuit breaker shared by all of a client's event loops.
///
/// After `failure_threshold` consecutive failed attempts (transport errors,
/// timeouts, 5xx answers) the circuit opens: attempts fail at once with
/// `FailureKind::CircuitOpen`, without touching the network, and are not
/// retried. After `reset_timeout` one attempt, the probe, goes through; its
/// success closes the circuit, its failure re-opens it for another
/// `reset_timeout`. A 2xx answer resets the failure count; other statuses
/// (4xx, 3xx) count neither way.
///
/// Defaults: 5 failures, 30 s.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use notifier::CircuitBreakerConfig;
///
/// let breaker = CircuitBreakerConfig::default()
///     .failure_threshold(5u32)
///     .reset_timeout(Duration::from_secs(30));
/// # let _ = breaker;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    failure_threshold: u32,
    reset_timeout: Duration,
}

impl Default for CircuitBreakerConfig {
    /// 5 consecutive failures open the circuit for 30 s.
    fn default() -> CircuitBreakerConfig {
        CircuitBreakerConfig {
            failure_threshold: 5,
            reset_timeout: Duration::from_secs(30),
        }
    }
}

impl CircuitBreakerConfig {
    /// Consecutive failures that open the circuit. Default 5. Clamped to
    /// `1..=1023` (the width of the breaker's counter).
    ///
    /// # Examples
    ///
    /// ```
    /// use notifier::CircuitBreakerConfig;
    ///
    /// // Open after 3 failures in a row.
    /// let breaker = CircuitBreakerConfig::default().failure_threshold(3u32);
    /// # let _ = breaker;
    /// ```
    #[must_use]
    pub fn failure_threshold(mut self, n: u32) -> CircuitBreakerConfig {
        self.failure_threshold = n.clamp(1, MAX_FAILURES);
        self
    }

    /// How long an open circuit refuses attempts before it lets the probe
    /// through. Default 30 s. Kept to the millisecond, rounded up.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use notifier::CircuitBreakerConfig;
    ///
    /// let breaker = CircuitBreakerConfig::default().reset_timeout(Duration::from_secs(5));
    /// # let _ = breaker;
    /// ```
    #[must_use]
    pub fn reset_timeout(mut self, d: Duration) -> CircuitBreakerConfig {
        self.reset_timeout = d;
        self
    }
}

/// Permission for one attempt, from [`Breaker::allow`]; hand it back with
/// the attempt's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    generation: u16,
    probe: bool,
}

impl Ticket {
    /// Whether this admission is the half-open circuit's one probe.
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn is_probe(self) -> bool {
        self.probe
    }
}

/// What [`Breaker::on_failure`] did to the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Transition {
    /// The ticket was stale, or the failure changed nothing (a non-probe
    /// attempt while the circuit is not closed).
    Ignored,
    /// One more consecutive failure, below the threshold.
    Counted,
    /// The circuit opened (the threshold was reached) or re-opened (the
    /// probe failed).
    Opened,
}

/// The shared circuit breaker. See the module docs for the states and the
/// layout of its word.
#[derive(Debug)]
// Its own cache line: the word is read by every attempt of every loop.
#[repr(align(128))]
pub(crate) struct Breaker {
    word: AtomicU64,
    threshold: u32,
    reset_ms: u64,
}

const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;

const STATE_MASK: u64 = 0b11;
const FAILURES_SHIFT: u32 = 2;
const FAILURES_BITS: u32 = 10;
const GENERATION_SHIFT: u32 = 12;
const GENERATION_BITS: u32 = 12;
const UNTIL_SHIFT: u32 = 24;
const UNTIL_BITS: u32 = 40;

/// The most consecutive failures the word can count.
const MAX_FAILURES: u32 = (1 << FAILURES_BITS) - 1;
const GENERATION_MASK: u16 = (1 << GENERATION_BITS) - 1;
/// The latest reset time the word can hold, in ms since the client started.
const MAX_UNTIL: u64 = (1 << UNTIL_BITS) - 1;

// The fields tile the word exactly.
const _: () = assert!(UNTIL_SHIFT + UNTIL_BITS == 64);
const _: () = assert!(GENERATION_SHIFT + GENERATION_BITS == UNTIL_SHIFT);
const _: () = assert!(FAILURES_SHIFT + FAILURES_BITS == GENERATION_SHIFT);

/// One decoded value of the breaker's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Word(u64);

impl Word {
    fn closed(generation: u16, failures: u32) -> Word {
        debug_assert!(failures <= MAX_FAILURES);
        Word(CLOSED | u64::from(failures) << FAILURES_SHIFT | Word::gen_bits(generation))
    }

    fn open(generation: u16, until_ms: u64) -> Word {
        let until = until_ms.min(MAX_UNTIL);
        Word(OPEN | Word::gen_bits(generation) | until << UNTIL_SHIFT)
    }

    fn half_open(generation: u16) -> Word {
        Word(HALF_OPEN | Word::gen_bits(generation))
    }

    fn gen_bits(generation: u16) -> u64 {
        u64::from(generation & GENERATION_MASK) << GENERATION_SHIFT
    }

    fn state(self) -> u64 {
        self.0 & STATE_MASK
    }

    fn failures(self) -> u32 {
        // Ten bits: the cast cannot truncate.
        ((self.0 >> FAILURES_SHIFT) & u64::from(MAX_FAILURES)) as u32
    }

    fn generation(self) -> u16 {
        // Twelve bits: the cast cannot truncate.
        ((self.0 >> GENERATION_SHIFT) & u64::from(GENERATION_MASK)) as u16
    }

    /// The generation after this word's, for a state change.
    fn next_generation(self) -> u16 {
        self.generation().wrapping_add(1) & GENERATION_MASK
    }

    fn open_until(self) -> u64 {
        self.0 >> UNTIL_SHIFT
    }
}

impl Breaker {
    /// A closed breaker with `config`'s threshold and reset timeout.
    pub(crate) fn new(config: &CircuitBreakerConfig) -> Breaker {
        let reset_ms = config.reset_timeout.as_nanos().div_ceil(1_000_000);
        Breaker {
            word: AtomicU64::new(Word::closed(0, 0).0),
            threshold: config.failure_threshold.clamp(1, MAX_FAILURES),
            reset_ms: u64::try_from(reset_ms).unwrap_or(u64::MAX),
        }
    }

    /// Asks to make an attempt at `now_ms` (milliseconds since the client
    /// started). `None` means refused: the circuit is open, or half-open
    /// with the probe already taken. The first call at or after an open
    /// circuit's reset time gets the probe ticket.
    #[must_use]
    #[inline]
    pub(crate) fn allow(&self, now_ms: u64) -> Option<Ticket> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let word = Word(current);
            match word.state() {
                CLOSED => {
                    return Some(Ticket {
                        generation: word.generation(),
                        probe: false,
                    })
                }
                OPEN if now_ms >= word.open_until() => {
                    let next = Word::half_open(word.next_generation());
                    match self.word.compare_exchange_weak(
                        current,
                        next.0,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => {
                            return Some(Ticket {
                                generation: next.generation(),
                                probe: true,
                            })
                        }
                        Err(actual) => current = actual,
                    }
                }
                _ => return None,
            }
        }
    }

    /// The attempt succeeded (2xx): resets the failure count, or closes the
    /// circuit if it was the probe. Ignored if the ticket is stale.
    /// Returns whether it closed the circuit.
    #[inline]
    pub(crate) fn on_success(&self, ticket: Ticket) -> bool {
        let changed = self.update(|word| {
            if word.generation() != ticket.generation {
                return None;
            }
            match word.state() {
                CLOSED if word.failures() == 0 => None,
                CLOSED => Some(Word::closed(word.generation(), 0)),
                HALF_OPEN if ticket.probe => Some(Word::closed(word.next_generation(), 0)),
                _ => None,
            }
        });
        ticket.probe && changed.is_some()
    }

    /// The attempt failed (transport error, timeout, 5xx) at `now_ms`:
    /// counts it, opening the circuit at the threshold, or re-opens the
    /// circuit if it was the probe. Ignored if the ticket is stale.
    /// Returns what it did.
    pub(crate) fn on_failure(&self, ticket: Ticket, now_ms: u64) -> Transition {
        let until = now_ms.saturating_add(self.reset_ms);
        let changed = self.update(|word| {
            if word.generation() != ticket.generation {
                return None;
            }
            match word.state() {
                CLOSED => {
                    let failures = (word.failures() + 1).min(MAX_FAILURES);
                    Some(if failures >= self.threshold {
                        Word::open(word.next_generation(), until)
                    } else {
                        Word::closed(word.generation(), failures)
                    })
                }
                HALF_OPEN if ticket.probe => Some(Word::open(word.next_generation(), until)),
                _ => None,
            }
        });
        match changed {
            None => Transition::Ignored,
            Some(word) if word.state() == OPEN => Transition::Opened,
            Some(_) => Transition::Counted,
        }
    }

    /// The attempt counted neither way (a 4xx or other non-2xx, non-5xx
    /// status, or abandoned at shutdown). If it was the probe, the probe is
    /// released: the circuit goes back to Open with its reset time already
    /// passed, so the next [`Breaker::allow`] takes a new probe.
    pub(crate) fn on_neutral(&self, ticket: Ticket, _now_ms: u64) {
        if !ticket.probe {
            return;
        }
        self.update(|word| {
            (word.generation() == ticket.generation && word.state() == HALF_OPEN)
                // Reset time 0 is passed for every caller, whatever its
                // view of the clock.
                .then(|| Word::open(word.next_generation(), 0))
        });
    }

    /// The circuit's state at `now_ms`, for `Stats`. An open circuit whose
    /// reset time has passed reports [`CircuitState::HalfOpen`]: the next
    /// attempt will be let through as the probe.
    pub(crate) fn state(&self, now_ms: u64) -> CircuitState {
        let word = Word(self.word.load(Ordering::Acquire));
        match word.state() {
            CLOSED => CircuitState::Closed,
            OPEN if now_ms < word.open_until() => CircuitState::Open,
            _ => CircuitState::HalfOpen,
        }
    }

    /// Replaces the word with `f(word)` until the CAS succeeds or `f`
    /// returns `None` (nothing to change). Returns the word it stored.
    fn update(&self, mut f: impl FnMut(Word) -> Option<Word>) -> Option<Word> {
        let mut current = self.word.load(Ordering::Acquire);
        while let Some(next) = f(Word(current)) {
            match self.word.compare_exchange_weak(
                current,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(next),
                Err(actual) => current = actual,
            }
        }
        None
    }

    #[cfg(test)]
    fn word(&self) -> Word {
        Word(self.word.load(Ordering::Acquire))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const RESET_MS: u64 = 30_000;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(
            &CircuitBreakerConfig::default()
                .failure_threshold(threshold)
                .reset_timeout(Duration::from_millis(RESET_MS)),
        )
    }

    /// Makes an allowed attempt fail at `now`; what that did.
    fn fail(b: &Breaker, now: u64) -> Transition {
        let t = b.allow(now).expect("allowed");
        b.on_failure(t, now)
    }

    fn open(threshold: u32, now: u64) -> Breaker {
        let b = breaker(threshold);
        (1..threshold).for_each(|_| assert_eq!(fail(&b, now), Transition::Counted));
        assert_eq!(fail(&b, now), Transition::Opened);
        assert_eq!(b.state(now), CircuitState::Open);
        b
    }

    #[test]
    fn defaults_and_clamps() {
        let c = CircuitBreakerConfig::default();
        assert_eq!(
            (c.failure_threshold, c.reset_timeout),
            (5, Duration::from_secs(30))
        );
        assert_eq!(c.clone().failure_threshold(0).failure_threshold, 1);
        assert_eq!(
            c.failure_threshold(u32::MAX).failure_threshold,
            MAX_FAILURES
        );
        let sub_ms = CircuitBreakerConfig::default().reset_timeout(Duration::from_micros(1500));
        assert_eq!(Breaker::new(&sub_ms).reset_ms, 2, "rounded up");
        let forever = CircuitBreakerConfig::default().reset_timeout(Duration::MAX);
        assert_eq!(Breaker::new(&forever).reset_ms, u64::MAX);
    }

    #[test]
    fn word_fields_round_trip() {
        let w = Word::closed(GENERATION_MASK, MAX_FAILURES);
        assert_eq!(
            (w.state(), w.failures(), w.generation(), w.open_until()),
            (CLOSED, MAX_FAILURES, GENERATION_MASK, 0)
        );
        let w = Word::open(7, MAX_UNTIL);
        assert_eq!(
            (w.state(), w.failures(), w.generation(), w.open_until()),
            (OPEN, 0, 7, MAX_UNTIL)
        );
        assert_eq!(Word::open(7, u64::MAX).open_until(), MAX_UNTIL, "saturates");
        let w = Word::half_open(GENERATION_MASK);
        assert_eq!((w.state(), w.generation()), (HALF_OPEN, GENERATION_MASK));
        assert_eq!(w.next_generation(), 0, "wraps");
    }

    #[test]
    fn the_threshold_opens_the_circuit() {
        let b = breaker(3);
        assert_eq!(fail(&b, 0), Transition::Counted);
        assert_eq!(fail(&b, 1), Transition::Counted);
        assert_eq!(b.state(1), CircuitState::Closed);
        assert_eq!(b.word().failures(), 2);
        assert_eq!(fail(&b, 2), Transition::Opened);
        assert_eq!(b.state(2), CircuitState::Open);
        assert_eq!(b.word().open_until(), 2 + RESET_MS);
        assert_eq!(b.word().generation(), 1);
    }

    #[test]
    fn threshold_one_opens_on_the_first_failure() {
        let b = breaker(1);
        assert_eq!(fail(&b, 10), Transition::Opened);
        assert_eq!(b.allow(10), None);
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(3);
        assert_eq!(fail(&b, 0), Transition::Counted);
        assert_eq!(fail(&b, 0), Transition::Counted);
        let t = b.allow(0).expect("closed");
        b.on_success(t);
        assert_eq!(b.word(), Word::closed(0, 0));
        assert_eq!(fail(&b, 0), Transition::Counted);
        assert_eq!(fail(&b, 0), Transition::Counted);
        assert_eq!(b.state(0), CircuitState::Closed, "the count started over");
    }

    #[test]
    fn a_neutral_outcome_counts_neither_way() {
        let b = breaker(3);
        assert_eq!(fail(&b, 0), Transition::Counted);
        assert_eq!(fail(&b, 0), Transition::Counted);
        let t = b.allow(0).expect("closed");
        b.on_neutral(t, 0);
        assert_eq!(b.word(), Word::closed(0, 2), "neither reset nor counted");
        assert_eq!(fail(&b, 0), Transition::Opened);
        assert_eq!(b.state(0), CircuitState::Open);
    }

    #[test]
    fn an_open_circuit_refuses_until_the_reset_time() {
        let b = open(2, 1000);
        for now in [1000, 1001, 1000 + RESET_MS / 2, 1000 + RESET_MS - 1] {
            assert_eq!(b.allow(now), None, "at {now}");
            assert_eq!(b.state(now), CircuitState::Open);
        }
        assert_eq!(
            b.state(1000 + RESET_MS),
            CircuitState::HalfOpen,
            "probe due"
        );
        assert_eq!(b.word().state(), OPEN, "state() changes nothing");
    }

    #[test]
    fn exactly_one_probe_after_the_reset_timeout() {
        let b = open(2, 0);
        let probe = b.allow(RESET_MS).expect("the probe");
        assert!(probe.probe);
        assert_eq!(probe.generation, 2);
        assert_eq!(b.state(RESET_MS), CircuitState::HalfOpen);
        for now in [RESET_MS, RESET_MS + 1, 10 * RESET_MS] {
            assert_eq!(b.allow(now), None, "the probe is taken");
        }
    }

    #[test]
    fn the_probe_succeeding_closes_the_circuit() {
        let b = open(2, 0);
        let probe = b.allow(RESET_MS).expect("the probe");
        b.on_success(probe);
        assert_eq!(b.state(RESET_MS), CircuitState::Closed);
        assert_eq!(b.word(), Word::closed(3, 0));
        let t = b.allow(RESET_MS).expect("closed");
        assert!(!t.probe);
        // The count starts from zero: one failure does not re-open it.
        assert_eq!(b.on_failure(t, RESET_MS), Transition::Counted);
        assert_eq!(b.state(RESET_MS), CircuitState::Closed);
    }

    #[test]
    fn the_probe_failing_reopens_for_another_timeout() {
        let b = open(2, 0);
        let at = RESET_MS + 500;
        let probe = b.allow(at).expect("the probe");
        assert_eq!(b.on_failure(probe, at + 20), Transition::Opened);
        assert_eq!(b.state(at + 20), CircuitState::Open);
        assert_eq!(b.allow(at + 20 + RESET_MS - 1), None);
        let again = b.allow(at + 20 + RESET_MS).expect("the next probe");
        assert!(again.probe);
        b.on_success(again);
        assert_eq!(b.state(at + 20 + RESET_MS), CircuitState::Closed);
    }

    #[test]
    fn a_neutral_probe_is_released() {
        let b = open(2, 0);
        let probe = b.allow(RESET_MS).expect("the probe");
        b.on_neutral(probe, RESET_MS + 5);
        assert_eq!(b.word().state(), OPEN);
        assert_eq!(b.state(RESET_MS + 5), CircuitState::HalfOpen, "probe due");
        let next = b.allow(RESET_MS + 5).expect("a new probe at once");
        assert!(next.probe);
        assert_ne!(next.generation, probe.generation);
        // The released probe's late result changes nothing.
        b.on_success(probe);
        assert_eq!(b.on_failure(probe, RESET_MS + 6), Transition::Ignored);
        assert_eq!(b.allow(RESET_MS + 6), None, "still half-open");
        assert_eq!(b.on_failure(next, RESET_MS + 7), Transition::Opened);
        assert_eq!(b.allow(RESET_MS + 8), None, "re-opened by the new probe");
    }

    #[test]
    fn stale_results_are_ignored() {
        let b = breaker(2);
        let early: Vec<Ticket> = (0..4).map(|_| b.allow(0).expect("closed")).collect();
        assert_eq!(b.on_failure(early[0], 0), Transition::Counted);
        assert_eq!(b.on_failure(early[1], 0), Transition::Opened);
        assert_eq!(b.state(0), CircuitState::Open);
        let opened = b.word();
        // Late answers from before the circuit opened: no effect.
        b.on_success(early[2]);
        assert_eq!(b.on_failure(early[3], 5), Transition::Ignored);
        assert_eq!(b.word(), opened);

        let probe = b.allow(RESET_MS).expect("the probe");
        b.on_success(early[2]);
        assert_eq!(b.on_failure(early[3], RESET_MS), Transition::Ignored);
        b.on_neutral(early[3], RESET_MS);
        assert_eq!(b.state(RESET_MS), CircuitState::HalfOpen);
        b.on_success(probe);
        assert_eq!(b.state(RESET_MS), CircuitState::Closed);

        // A probe's late duplicate cannot re-open a closed circuit, and a
        // ticket from the old closed period does not count.
        assert_eq!(b.on_failure(probe, RESET_MS), Transition::Ignored);
        assert_eq!(b.on_failure(early[3], RESET_MS), Transition::Ignored);
        assert_eq!(b.word().failures(), 0);
    }

    #[test]
    fn non_probe_tickets_never_close_or_reopen() {
        let b = open(1, 0);
        let probe = b.allow(RESET_MS).expect("the probe");
        let forged = Ticket {
            generation: probe.generation,
            probe: false,
        };
        b.on_success(forged);
        assert_eq!(b.on_failure(forged, RESET_MS), Transition::Ignored);
        b.on_neutral(forged, RESET_MS);
        assert_eq!(b.word(), Word::half_open(probe.generation));
    }

    #[test]
    fn the_generation_wraps_without_harm() {
        let b = breaker(1);
        // Three transitions a round (Closed → Open → HalfOpen → Closed):
        // the 12-bit generation wraps several times.
        let mut now = 0;
        for _ in 0..(usize::from(GENERATION_MASK) + 10) {
            assert_eq!(fail(&b, now), Transition::Opened);
            now += RESET_MS;
            let probe = b.allow(now).expect("probe");
            b.on_success(probe);
        }
        assert_eq!(b.state(now), CircuitState::Closed);
        assert_eq!(fail(&b, now), Transition::Opened);
        assert_eq!(b.allow(now), None);
    }

    #[test]
    fn zero_reset_timeout_probes_at_once() {
        let b = Breaker::new(
            &CircuitBreakerConfig::default()
                .failure_threshold(1)
                .reset_timeout(Duration::ZERO),
        );
        assert_eq!(fail(&b, 7), Transition::Opened);
        assert!(b.allow(7).expect("probe").probe);
        assert_eq!(b.allow(7), None);
    }

    #[test]
    fn reset_times_past_the_word_saturate() {
        let b = Breaker::new(
            &CircuitBreakerConfig::default()
                .failure_threshold(1)
                .reset_timeout(Duration::MAX),
        );
        assert_eq!(fail(&b, 0), Transition::Opened);
        assert_eq!(b.word().open_until(), MAX_UNTIL);
        assert_eq!(b.allow(MAX_UNTIL - 1), None);
    }

    #[test]
    fn failures_saturate_at_the_counter_width() {
        let b = breaker(u32::MAX);
        for _ in 0..MAX_FAILURES - 1 {
            assert_eq!(fail(&b, 0), Transition::Counted);
        }
        assert_eq!(b.state(0), CircuitState::Closed);
        assert_eq!(b.word().failures(), MAX_FAILURES - 1);
        assert_eq!(fail(&b, 0), Transition::Opened);
        assert_eq!(b.state(0), CircuitState::Open, "the clamped threshold");
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    const RESET_MS: u64 = 10;

    fn breaker(threshold: u32) -> Breaker {
        Breaker::new(
            &CircuitBreakerConfig::default()
                .failure_threshold(threshold)
                .reset_timeout(Duration::from_millis(RESET_MS)),
        )
    }

    /// (a) After the reset timeout, three racing threads: exactly one gets
    /// the probe, in the CAS that moves Open → HalfOpen.
    #[test]
    fn loom_exactly_one_probe() {
        loom::model(|| {
            let b = Arc::new(breaker(1));
            let t = b.allow(0).expect("closed");
            assert_eq!(b.on_failure(t, 0), Transition::Opened);
            let racers: Vec<_> = (0..3)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || b.allow(RESET_MS))
                })
                .collect();
            let tickets: Vec<Ticket> = racers
                .into_iter()
                .filter_map(|r| r.join().expect("racer"))
                .collect();
            assert_eq!(tickets.len(), 1, "{tickets:?}");
            assert!(tickets[0].probe);
            assert_eq!(b.word(), Word::half_open(2));
        });
    }

    /// (a') The probe's failure races new callers: they are refused
    /// whether they come before or after it, and it re-opens the circuit
    /// exactly once.
    #[test]
    fn loom_probe_failure_races_callers() {
        loom::model(|| {
            let b = Arc::new(breaker(1));
            let t = b.allow(0).expect("closed");
            assert_eq!(b.on_failure(t, 0), Transition::Opened);
            let probe = b.allow(RESET_MS).expect("the probe");
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let b = b.clone();
                    thread::spawn(move || b.allow(RESET_MS))
                })
                .collect();
            assert_eq!(b.on_failure(probe, RESET_MS), Transition::Opened);
            for c in callers {
                assert_eq!(c.join().expect("caller"), None);
            }
            assert_eq!(b.word(), Word::open(3, 2 * RESET_MS));
        });
    }

    /// (b) Failures racing across the threshold open the circuit exactly
    /// once: one transition (generation 0 → 1), the later failures of the
    /// old generation ignored.
    #[test]
    fn loom_racing_failures_open_once() {
        loom::model(|| {
            let b = Arc::new(breaker(2));
            let tickets: Vec<Ticket> = (0..3).map(|_| b.allow(0).expect("closed")).collect();
            let failers: Vec<_> = tickets
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    let b = b.clone();
                    thread::spawn(move || b.on_failure(t, i as u64))
                })
                .collect();
            let opened = failers
                .into_iter()
                .map(|f| f.join().expect("failer"))
                .filter(|&t| t == Transition::Opened)
                .count();
            assert_eq!(opened, 1, "exactly one failure reports the opening");
            let word = b.word();
            assert_eq!((word.state(), word.generation()), (OPEN, 1), "{word:?}");
            assert!((RESET_MS..=RESET_MS + 2).contains(&word.open_until()));
        });
    }

    /// (b') Attempts that ask and fail concurrently, one of them a success:
    /// the circuit opens at most once and the count is never corrupted.
    #[test]
    fn loom_mixed_outcomes_stay_consistent() {
        loom::model(|| {
            let b = Arc::new(breaker(2));
            let workers: Vec<_> = [false, false, true]
                .into_iter()
                .map(|success| {
                    let b = b.clone();
                    thread::spawn(move || {
                        if let Some(t) = b.allow(0) {
                            if success {
                                b.on_success(t);
                            } else {
                                let _: Transition = b.on_failure(t, 0);
                            }
                        }
                    })
                })
                .collect();
            workers.into_iter().for_each(|w| w.join().expect("worker"));
            let word = b.word();
            match word.state() {
                CLOSED => assert!(word.generation() == 0 && word.failures() <= 1, "{word:?}"),
                OPEN => assert_eq!((word.generation(), word.failures()), (1, 0)),
                _ => panic!("half-open without a probe: {word:?}"),
            }
        });
    }
}
