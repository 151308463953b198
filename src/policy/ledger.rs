//! The ledger: what becomes of a message after each attempt.
//!
//! One place decides, for every message, whether an attempt may start (the
//! circuit breaker's admission), what its outcome means (delivered, retried
//! after a backoff, or failed for good), what it tells the breaker, when a
//! written request may be re-sent on a fresh connection without counting
//! an attempt, and what ends the messages still held when the client gives
//! up on them (shutdown, a dead event loop). The event loops do what it
//! says and count what it returns.
//!
//! It is sans-IO like the rest of `policy`: the time comes in as
//! milliseconds since the client started and randomness as a
//! `fastrand::Rng`, so its tests run on a virtual clock with seeded draws.

use std::time::Duration;

use crate::error::{BreakerVerdict, Failure, FailureKind};
use crate::policy::breaker::{Breaker, Ticket, Transition};
use crate::policy::{CircuitBreakerConfig, CircuitState, RetryConfig};

/// How often one attempt may be re-sent on a fresh connection, after the
/// reused connection it was written to turned out closed before it took a
/// byte of the request.
pub(crate) const MAX_RESENDS: u8 = 5;

/// A message's books: its attempts so far and the breaker's admission of
/// the one under way.
#[derive(Debug, Default)]
pub(crate) struct Record {
    attempts: u32,
    ticket: Option<Ticket>,
    resends: u8,
}

impl Record {
    /// Attempts made, counting one the breaker refused.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether the attempt under way is the half-open circuit's probe.
    #[cfg_attr(not(any(test, feature = "tracing")), allow(dead_code))]
    pub(crate) fn is_probe(&self) -> bool {
        self.ticket.is_some_and(|t| t.is_probe())
    }
}

/// What shows that the server never read a request written to a reused
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unread {
    /// The connection failed before the kernel took any byte of it.
    Untouched,
    /// The server answered with this status. A `408 Request Timeout` is a
    /// server's goodbye to a connection it found idle, written as the
    /// request arrived: it closes without reading it (Go's transport reads
    /// it the same way); any other status is an answer to the request.
    Answered(u16),
}

/// Whether an admitted attempt is the message's first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    First,
    /// A retry, counted in `Stats::retried`.
    Retry,
}

/// What becomes of a message after an attempt.
#[derive(Debug)]
pub(crate) enum Fate {
    /// The server answered 2xx.
    Delivered,
    /// Try again once this wait has passed.
    Retry(Duration),
    /// Done trying: hand it to the error handler.
    Failed(Failure),
}

/// An attempt's result booked: the message's fate, and whether it opened
/// the circuit (then retries waiting anywhere must fail now rather than
/// wait out their backoff) or, as the probe, closed it.
#[derive(Debug)]
pub(crate) struct Settled {
    pub(crate) fate: Fate,
    pub(crate) opened_circuit: bool,
    pub(crate) closed_circuit: bool,
}

/// The retry policy and the circuit breaker of one client, shared by its
/// event loops (the breaker is one atomic word; the rest is immutable).
#[derive(Debug)]
pub(crate) struct Ledger {
    retry: Option<RetryConfig>,
    breaker: Option<Breaker>,
}

impl Ledger {
    pub(crate) fn new(
        retry: Option<RetryConfig>,
        breaker: Option<&CircuitBreakerConfig>,
    ) -> Ledger {
        Ledger {
            retry,
            breaker: breaker.map(Breaker::new),
        }
    }

    /// Books the start of an attempt at `now_ms`: counts it and asks the
    /// breaker. A refusal is the message's end: a `CircuitOpen` failure,
    /// not retried.
    pub(crate) fn admit(&self, record: &mut Record, now_ms: u64) -> Result<Attempt, Failure> {
        record.attempts = record.attempts.saturating_add(1);
        record.resends = 0;
        if let Some(breaker) = &self.breaker {
            match breaker.allow(now_ms) {
                Some(ticket) => record.ticket = Some(ticket),
                None => return Err(Failure::of(FailureKind::CircuitOpen)),
            }
        }
        Ok(if record.attempts > 1 {
            Attempt::Retry
        } else {
            Attempt::First
        })
    }

    /// Books an attempt's result at `now_ms`: tells the breaker, and
    /// decides between delivered, a retry after a full-jitter backoff
    /// drawn from `rng` (raised to a 5xx's `Retry-After`), and failure.
    pub(crate) fn settle(
        &self,
        record: &mut Record,
        result: Result<(), Failure>,
        now_ms: u64,
        rng: &mut fastrand::Rng,
    ) -> Settled {
        let failure = match result {
            Ok(()) => {
                let closed_circuit = match (&self.breaker, record.ticket.take()) {
                    (Some(breaker), Some(ticket)) => breaker.on_success(ticket),
                    _ => false,
                };
                return Settled {
                    fate: Fate::Delivered,
                    opened_circuit: false,
                    closed_circuit,
                };
            }
            Err(failure) => failure,
        };
        let verdict = failure.class().breaker;
        self.settle_failure(record, failure, verdict, now_ms, rng)
    }

    /// Books an attempt that never reached the endpoint: its deadline
    /// passed while no socket could be opened for a local reason (see
    /// [`shortage`](crate::policy::shortage)). The breaker hears nothing;
    /// the retry policy decides as for any failure of its kind.
    pub(crate) fn lapse(
        &self,
        record: &mut Record,
        failure: Failure,
        now_ms: u64,
        rng: &mut fastrand::Rng,
    ) -> Settled {
        self.settle_failure(record, failure, BreakerVerdict::Neutral, now_ms, rng)
    }

    /// Books a failed attempt, telling the breaker `verdict`.
    fn settle_failure(
        &self,
        record: &mut Record,
        failure: Failure,
        verdict: BreakerVerdict,
        now_ms: u64,
        rng: &mut fastrand::Rng,
    ) -> Settled {
        let class = failure.class();
        let mut opened_circuit = false;
        if let (Some(breaker), Some(ticket)) = (&self.breaker, record.ticket.take()) {
            match verdict {
                BreakerVerdict::Failure => {
                    opened_circuit = breaker.on_failure(ticket, now_ms) == Transition::Opened;
                }
                BreakerVerdict::Neutral => breaker.on_neutral(ticket, now_ms),
            }
        }
        let retry_after = failure
            .retry_after
            .filter(|_| failure.status.is_some_and(|s| s >= 500));
        let fate = match &self.retry {
            Some(retry) if class.retryable => {
                match retry.next_delay(record.attempts, retry_after, rng) {
                    Some(wait) => Fate::Retry(wait),
                    None => Fate::Failed(failure),
                }
            }
            _ => Fate::Failed(failure),
        };
        Settled {
            fate,
            opened_circuit,
            closed_circuit: false,
        }
    }

    /// Whether the attempt under way may be re-sent on a fresh connection
    /// without counting an attempt or telling the breaker, because `sign`
    /// shows that the server never read its request. Only a request on a
    /// `reused` connection (one that carried an exchange before, and sat
    /// idle since) may be: the server closed that connection as idle while
    /// the request was on its way. A fresh connection's failure is the
    /// server's answer to the request. At most [`MAX_RESENDS`] times per
    /// attempt.
    pub(crate) fn may_resend(&self, record: &mut Record, reused: bool, sign: Unread) -> bool {
        let unread = match sign {
            Unread::Untouched => true,
            Unread::Answered(status) => status == 408,
        };
        if !(reused && unread) || record.resends >= MAX_RESENDS {
            return false;
        }
        record.resends += 1;
        true
    }

    /// Ends the attempt under way, or the wait for the next one, with
    /// `kind` (the client shuts down, the message's event loop died): the
    /// breaker hears nothing of the endpoint's health, and a probe it had
    /// granted is released for another attempt.
    pub(crate) fn give_up(&self, record: &mut Record, kind: FailureKind, now_ms: u64) -> Failure {
        if let (Some(breaker), Some(ticket)) = (&self.breaker, record.ticket.take()) {
            breaker.on_neutral(ticket, now_ms);
        }
        Failure::of(kind)
    }

    /// Ends a message waiting for its retry because the circuit opened: the
    /// retry it was refused counts as an attempt, as at admission.
    pub(crate) fn refuse_waiting(&self, record: &mut Record) -> Failure {
        record.attempts = record.attempts.saturating_add(1);
        Failure::of(FailureKind::CircuitOpen)
    }

    /// The circuit's state at `now_ms`; `Closed` without a breaker.
    pub(crate) fn circuit(&self, now_ms: u64) -> CircuitState {
        self.breaker
            .as_ref()
            .map_or(CircuitState::Closed, |b| b.state(now_ms))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    //! Every test runs on a virtual clock: `now` is a number of
    //! milliseconds the test advances by hand.

    use super::*;
    use crate::error::Cause;
    use crate::proto::retry_after::RetryAfter;

    const RESET_MS: u64 = 1_000;

    fn rng() -> fastrand::Rng {
        fastrand::Rng::with_seed(7)
    }

    fn retry(max_attempts: u32) -> RetryConfig {
        RetryConfig::default()
            .max_attempts(max_attempts)
            .initial_backoff(Duration::from_millis(100))
            .max_backoff(Duration::from_secs(5))
    }

    fn breaker(threshold: u32) -> CircuitBreakerConfig {
        CircuitBreakerConfig::default()
            .failure_threshold(threshold)
            .reset_timeout(Duration::from_millis(RESET_MS))
    }

    fn io() -> Result<(), Failure> {
        Err(Failure::caused(
            FailureKind::Io,
            Cause::Io(std::io::ErrorKind::ConnectionReset.into()),
        ))
    }

    fn status(code: u16, retry_after: Option<Duration>) -> Result<(), Failure> {
        Err(Failure::status(code, retry_after))
    }

    /// One whole attempt at `now`: admitted, then settled with `result`.
    fn attempt(
        ledger: &Ledger,
        record: &mut Record,
        result: Result<(), Failure>,
        now: u64,
    ) -> Settled {
        ledger.admit(record, now).expect("admitted");
        ledger.settle(record, result, now, &mut rng())
    }

    fn failed_kind(settled: &Settled) -> Option<(FailureKind, Option<u16>)> {
        match &settled.fate {
            Fate::Failed(f) => Some((f.kind, f.status)),
            _ => None,
        }
    }

    #[test]
    fn a_2xx_is_delivered_after_one_attempt() {
        let ledger = Ledger::new(Some(retry(3)), Some(&breaker(2)));
        let mut record = Record::default();
        assert_eq!(ledger.admit(&mut record, 0).expect("go"), Attempt::First);
        let settled = ledger.settle(&mut record, Ok(()), 5, &mut rng());
        assert!(matches!(settled.fate, Fate::Delivered));
        assert!(!settled.opened_circuit);
        assert_eq!(record.attempts(), 1);
    }

    #[test]
    fn retryable_failures_wait_a_jittered_backoff_until_attempts_run_out() {
        let ledger = Ledger::new(Some(retry(3)), None);
        let mut record = Record::default();
        let caps = [Duration::from_millis(100), Duration::from_millis(200)];
        for (n, cap) in caps.into_iter().enumerate() {
            let settled = attempt(&ledger, &mut record, io(), 0);
            match settled.fate {
                Fate::Retry(wait) => assert!(wait <= cap, "retry {n}: {wait:?} > {cap:?}"),
                other => panic!("retry {n}: {other:?}"),
            }
        }
        assert_eq!(ledger.admit(&mut record, 0).expect("go"), Attempt::Retry);
        let last = ledger.settle(&mut record, io(), 0, &mut rng());
        assert_eq!(failed_kind(&last), Some((FailureKind::Io, None)));
        assert_eq!(record.attempts(), 3);
    }

    #[test]
    fn every_retryable_kind_is_retried_and_no_other() {
        let ledger = Ledger::new(Some(retry(2)), None);
        let retried = |result: Result<(), Failure>| {
            let mut record = Record::default();
            matches!(
                attempt(&ledger, &mut record, result, 0).fate,
                Fate::Retry(_)
            )
        };
        for kind in [
            FailureKind::Connect,
            FailureKind::Io,
            FailureKind::Timeout,
            FailureKind::Protocol,
        ] {
            assert!(retried(Err(Failure::of(kind))), "{kind:?}");
        }
        assert!(retried(status(500, None)));
        assert!(retried(status(503, None)));
        for code in [301, 400, 404, 429] {
            assert!(!retried(status(code, None)), "{code}");
        }
        for kind in [
            FailureKind::Tls,
            FailureKind::CircuitOpen,
            FailureKind::Shutdown,
            FailureKind::Internal,
            FailureKind::Expired,
            FailureKind::Dropped,
        ] {
            assert!(!retried(Err(Failure::of(kind))), "{kind:?}");
        }
    }

    #[test]
    fn without_a_retry_policy_every_failure_is_final() {
        let ledger = Ledger::new(None, None);
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, status(503, None), 0);
        assert_eq!(
            failed_kind(&settled),
            Some((FailureKind::Status, Some(503)))
        );
    }

    #[test]
    fn retry_after_raises_the_wait_only_on_a_5xx() {
        let ledger = Ledger::new(Some(retry(5)), None);
        let asked = Some(Duration::from_secs(3));
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, status(503, asked), 0);
        assert!(matches!(settled.fate, Fate::Retry(w) if w == Duration::from_secs(3)));
        // Capped by max_backoff (5 s).
        let mut record = Record::default();
        let hour = Some(Duration::from_secs(3600));
        let settled = attempt(&ledger, &mut record, status(500, hour), 0);
        assert!(matches!(settled.fate, Fate::Retry(w) if w == Duration::from_secs(5)));
        // A 429's Retry-After does not make it retryable.
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, status(429, asked), 0);
        assert_eq!(
            failed_kind(&settled),
            Some((FailureKind::Status, Some(429)))
        );
    }

    #[test]
    fn the_failure_that_opens_the_circuit_says_so() {
        let ledger = Ledger::new(Some(retry(10)), Some(&breaker(3)));
        let opened: Vec<bool> = (0..3)
            .map(|i| {
                let mut record = Record::default();
                attempt(&ledger, &mut record, io(), i).opened_circuit
            })
            .collect();
        assert_eq!(opened, [false, false, true]);
        assert_eq!(ledger.circuit(3), CircuitState::Open);
    }

    #[test]
    fn an_open_circuit_refuses_attempts_and_counts_them() {
        let ledger = Ledger::new(Some(retry(10)), Some(&breaker(1)));
        let mut first = Record::default();
        assert!(attempt(&ledger, &mut first, io(), 0).opened_circuit);
        // The message's retry meets the open circuit: refused, not retried.
        let refused = ledger.admit(&mut first, 10).expect_err("open");
        assert_eq!(refused.kind, FailureKind::CircuitOpen);
        assert!(!refused.class().retryable);
        assert_eq!(first.attempts(), 2, "the refused attempt counts");
        let mut other = Record::default();
        assert!(ledger.admit(&mut other, RESET_MS - 1).is_err());
    }

    #[test]
    fn after_the_reset_timeout_one_probe_decides() {
        let ledger = Ledger::new(None, Some(&breaker(1)));
        let mut record = Record::default();
        attempt(&ledger, &mut record, io(), 0);
        assert_eq!(ledger.circuit(RESET_MS), CircuitState::HalfOpen);
        let mut probe = Record::default();
        ledger.admit(&mut probe, RESET_MS).expect("the probe");
        let mut other = Record::default();
        assert!(
            ledger.admit(&mut other, RESET_MS).is_err(),
            "one probe at a time"
        );
        assert!(probe.is_probe() && !other.is_probe());
        let settled = ledger.settle(&mut probe, Ok(()), RESET_MS + 1, &mut rng());
        assert!(matches!(settled.fate, Fate::Delivered));
        assert!(settled.closed_circuit, "the probe's success closes it");
        assert_eq!(ledger.circuit(RESET_MS + 1), CircuitState::Closed);
        let mut later = Record::default();
        ledger.admit(&mut later, RESET_MS + 2).expect("closed");
        let settled = ledger.settle(&mut later, Ok(()), RESET_MS + 3, &mut rng());
        assert!(!settled.closed_circuit, "it was closed already");
    }

    #[test]
    fn a_failed_probe_reopens_the_circuit() {
        let ledger = Ledger::new(None, Some(&breaker(1)));
        attempt(&ledger, &mut Record::default(), io(), 0);
        let settled = attempt(&ledger, &mut Record::default(), io(), RESET_MS);
        assert!(settled.opened_circuit);
        assert_eq!(ledger.circuit(2 * RESET_MS - 1), CircuitState::Open);
        assert_eq!(ledger.circuit(2 * RESET_MS), CircuitState::HalfOpen);
    }

    #[test]
    fn a_4xx_counts_neither_way_and_a_2xx_resets_the_count() {
        let ledger = Ledger::new(None, Some(&breaker(2)));
        attempt(&ledger, &mut Record::default(), io(), 0);
        attempt(&ledger, &mut Record::default(), status(404, None), 1);
        assert_eq!(
            ledger.circuit(1),
            CircuitState::Closed,
            "a 404 did not count"
        );
        attempt(&ledger, &mut Record::default(), Ok(()), 2);
        attempt(&ledger, &mut Record::default(), io(), 3);
        assert_eq!(ledger.circuit(3), CircuitState::Closed, "the 2xx reset it");
        assert!(attempt(&ledger, &mut Record::default(), io(), 4).opened_circuit);
    }

    #[test]
    fn tls_failures_count_for_the_breaker_but_are_not_retried() {
        let ledger = Ledger::new(Some(retry(3)), Some(&breaker(1)));
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, Err(Failure::of(FailureKind::Tls)), 0);
        assert!(settled.opened_circuit);
        assert_eq!(failed_kind(&settled), Some((FailureKind::Tls, None)));
    }

    #[test]
    fn giving_up_on_a_probe_releases_it() {
        let ledger = Ledger::new(None, Some(&breaker(1)));
        attempt(&ledger, &mut Record::default(), io(), 0);
        let mut probe = Record::default();
        ledger.admit(&mut probe, RESET_MS).expect("the probe");
        let failure = ledger.give_up(&mut probe, FailureKind::Shutdown, RESET_MS + 1);
        assert_eq!(failure.kind, FailureKind::Shutdown);
        let mut next = Record::default();
        ledger
            .admit(&mut next, RESET_MS + 1)
            .expect("a new probe at once");
    }

    #[test]
    fn a_waiting_retry_refused_by_the_circuit_counts_an_attempt() {
        let ledger = Ledger::new(Some(retry(5)), Some(&breaker(1)));
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, io(), 0);
        assert!(matches!(settled.fate, Fate::Retry(_)));
        let failure = ledger.refuse_waiting(&mut record);
        assert_eq!(failure.kind, FailureKind::CircuitOpen);
        assert_eq!(record.attempts(), 2);
    }

    #[test]
    fn resends_are_bounded_per_attempt_and_count_nothing() {
        let ledger = Ledger::new(Some(retry(3)), Some(&breaker(1)));
        let mut record = Record::default();
        ledger.admit(&mut record, 0).expect("go");
        for _ in 0..MAX_RESENDS {
            assert!(ledger.may_resend(&mut record, true, Unread::Untouched));
        }
        assert!(
            !ledger.may_resend(&mut record, true, Unread::Untouched),
            "bounded"
        );
        assert_eq!(record.attempts(), 1, "no attempt counted");
        assert_eq!(
            ledger.circuit(0),
            CircuitState::Closed,
            "no breaker failure"
        );
        // The next attempt gets its own re-sends.
        let settled = ledger.settle(
            &mut record,
            Err(Failure::of(FailureKind::Timeout)),
            0,
            &mut rng(),
        );
        assert!(settled.opened_circuit);
        let mut fresh = Record::default();
        ledger.admit(&mut fresh, RESET_MS).expect("probe");
        assert!(ledger.may_resend(&mut fresh, true, Unread::Untouched));
    }

    #[test]
    fn only_a_request_on_a_reused_connection_is_resent() {
        let ledger = Ledger::new(None, None);
        let mut record = Record::default();
        ledger.admit(&mut record, 0).expect("go");
        assert!(!ledger.may_resend(&mut record, false, Unread::Untouched));
        assert!(!ledger.may_resend(&mut record, false, Unread::Answered(408)));
        assert!(ledger.may_resend(&mut record, true, Unread::Untouched));
    }

    #[test]
    fn a_408_on_a_reused_connection_is_resent_without_an_attempt_or_a_breaker_failure() {
        // Every re-send comes later on the virtual clock; none counts.
        let ledger = Ledger::new(Some(retry(3)), Some(&breaker(1)));
        let mut record = Record::default();
        ledger.admit(&mut record, 0).expect("go");
        for now in 1..=u64::from(MAX_RESENDS) {
            assert!(ledger.may_resend(&mut record, true, Unread::Answered(408)));
            assert_eq!(ledger.circuit(now), CircuitState::Closed, "at {now} ms");
        }
        assert_eq!(record.attempts(), 1, "no attempt counted");
        // Past its re-sends a 408 is the server's verdict: a failure of its
        // status, not retried, neutral for the breaker like any 4xx.
        assert!(!ledger.may_resend(&mut record, true, Unread::Answered(408)));
        let now = u64::from(MAX_RESENDS) + 1;
        let settled = ledger.settle(&mut record, status(408, None), now, &mut rng());
        assert_eq!(
            failed_kind(&settled),
            Some((FailureKind::Status, Some(408)))
        );
        assert!(!settled.opened_circuit);
        assert_eq!(ledger.circuit(now), CircuitState::Closed);
    }

    #[test]
    fn a_408_on_a_fresh_connection_and_other_statuses_are_answers() {
        let ledger = Ledger::new(Some(retry(3)), None);
        let mut record = Record::default();
        ledger.admit(&mut record, 0).expect("go");
        assert!(!ledger.may_resend(&mut record, false, Unread::Answered(408)));
        for code in [200, 204, 400, 404, 429, 500, 503] {
            assert!(
                !ledger.may_resend(&mut record, true, Unread::Answered(code)),
                "{code}"
            );
        }
        // None of those used up a re-send.
        for _ in 0..MAX_RESENDS {
            assert!(ledger.may_resend(&mut record, true, Unread::Answered(408)));
        }
    }

    #[test]
    fn an_attempt_that_never_left_tells_the_breaker_nothing() {
        // A Connect failure would open this breaker at once; one whose
        // deadline passed while no socket could be opened does not, and
        // the retry policy still retries it.
        let ledger = Ledger::new(Some(retry(2)), Some(&breaker(1)));
        let mut record = Record::default();
        ledger.admit(&mut record, 0).expect("go");
        let emfile = Failure::caused(
            FailureKind::Connect,
            Cause::Io(std::io::Error::other("too many open files")),
        );
        let settled = ledger.lapse(&mut record, emfile, 30, &mut rng());
        assert!(matches!(settled.fate, Fate::Retry(_)), "{settled:?}");
        assert!(!settled.opened_circuit);
        assert_eq!(ledger.circuit(30), CircuitState::Closed);
        // Its retry is an attempt like any other, and so is its end.
        assert_eq!(ledger.admit(&mut record, 40).expect("go"), Attempt::Retry);
        let last = Failure::of(FailureKind::Connect);
        let settled = ledger.lapse(&mut record, last, 70, &mut rng());
        assert_eq!(failed_kind(&settled), Some((FailureKind::Connect, None)));
        assert_eq!(ledger.circuit(70), CircuitState::Closed);
    }

    #[test]
    fn a_retry_after_date_raises_the_wait_to_that_date() {
        // Dates become waits against the wall clock when the head is read;
        // here the wall clock is fixed.
        let wall = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let asked = RetryAfter::Date(wall + Duration::from_secs(3)).delay(wall);
        let ledger = Ledger::new(Some(retry(3)), None);
        let mut record = Record::default();
        let settled = attempt(&ledger, &mut record, status(503, Some(asked)), 0);
        assert!(
            matches!(settled.fate, Fate::Retry(w) if w == Duration::from_secs(3)),
            "{settled:?}"
        );
    }

    #[test]
    fn a_failed_probe_keeps_refusing_for_another_reset_timeout() {
        let ledger = Ledger::new(None, Some(&breaker(3)));
        for now in 0..3 {
            attempt(&ledger, &mut Record::default(), io(), now);
        }
        // While the probe is in flight every other attempt is refused.
        let mut probe = Record::default();
        ledger.admit(&mut probe, RESET_MS + 2).expect("the probe");
        for now in RESET_MS + 2..RESET_MS + 12 {
            let refused = ledger
                .admit(&mut Record::default(), now)
                .expect_err("refused");
            assert_eq!(refused.kind, FailureKind::CircuitOpen);
        }
        let settled = ledger.settle(&mut probe, status(500, None), RESET_MS + 100, &mut rng());
        assert_eq!(
            failed_kind(&settled),
            Some((FailureKind::Status, Some(500)))
        );
        assert!(settled.opened_circuit, "the probe's failure re-opens it");
        // Open again, for another whole reset timeout.
        for now in [RESET_MS + 100, 2 * RESET_MS + 99] {
            assert!(ledger.admit(&mut Record::default(), now).is_err(), "{now}");
        }
        assert_eq!(ledger.circuit(2 * RESET_MS + 99), CircuitState::Open);
        assert_eq!(ledger.circuit(2 * RESET_MS + 100), CircuitState::HalfOpen);
    }

    #[test]
    fn a_late_success_does_not_close_an_open_circuit() {
        let ledger = Ledger::new(None, Some(&breaker(3)));
        // Admitted while closed; answered only after the circuit opened.
        let mut early = Record::default();
        ledger.admit(&mut early, 0).expect("closed");
        for now in 1..4 {
            attempt(&ledger, &mut Record::default(), status(500, None), now);
        }
        assert_eq!(ledger.circuit(4), CircuitState::Open);
        let settled = ledger.settle(&mut early, Ok(()), 5, &mut rng());
        assert!(matches!(settled.fate, Fate::Delivered), "still delivered");
        assert_eq!(
            ledger.circuit(5),
            CircuitState::Open,
            "a stale success closed it"
        );
        let refused = ledger
            .admit(&mut Record::default(), 6)
            .expect_err("still open");
        assert_eq!(refused.kind, FailureKind::CircuitOpen);
    }

    #[test]
    fn a_retry_during_half_open_is_refused_and_a_stale_failure_reopens_nothing() {
        let ledger = Ledger::new(Some(retry(3)), Some(&breaker(3)));
        // R is admitted while closed and answered late.
        let mut r = Record::default();
        ledger.admit(&mut r, 0).expect("closed");
        for now in 1..4 {
            attempt(&ledger, &mut Record::default(), status(500, None), now);
        }
        let mut probe = Record::default();
        ledger.admit(&mut probe, RESET_MS + 3).expect("the probe");
        // R's 503 arrives while the probe is in flight: its ticket is from
        // before the circuit opened, so it re-opens nothing.
        let late = ledger.settle(&mut r, status(503, None), RESET_MS + 4, &mut rng());
        assert!(!late.opened_circuit);
        assert!(matches!(late.fate, Fate::Retry(_)), "{late:?}");
        assert_eq!(ledger.circuit(RESET_MS + 4), CircuitState::HalfOpen);
        // Its retry asks the breaker and is refused beside the probe.
        let refused = ledger.admit(&mut r, RESET_MS + 5).expect_err("refused");
        assert_eq!(refused.kind, FailureKind::CircuitOpen);
        assert_eq!(r.attempts(), 2, "the 503, then the refused retry");
        // The probe's success closes the circuit.
        let settled = ledger.settle(&mut probe, Ok(()), RESET_MS + 6, &mut rng());
        assert!(matches!(settled.fate, Fate::Delivered));
        assert_eq!(ledger.circuit(RESET_MS + 6), CircuitState::Closed);
    }

    #[test]
    fn a_4xx_probe_releases_the_probe() {
        let ledger = Ledger::new(None, Some(&breaker(3)));
        for now in 0..3 {
            attempt(&ledger, &mut Record::default(), status(500, None), now);
        }
        let mut probe = Record::default();
        ledger.admit(&mut probe, RESET_MS + 2).expect("the probe");
        let settled = ledger.settle(&mut probe, status(400, None), RESET_MS + 3, &mut rng());
        assert_eq!(
            failed_kind(&settled),
            Some((FailureKind::Status, Some(400)))
        );
        assert!(!settled.opened_circuit, "a 400 counts neither way");
        // Neither closed nor open for another reset timeout: the next
        // attempt is a new probe, and its success closes the circuit.
        assert_eq!(ledger.circuit(RESET_MS + 3), CircuitState::HalfOpen);
        let mut next = Record::default();
        ledger
            .admit(&mut next, RESET_MS + 3)
            .expect("a new probe at once");
        ledger.settle(&mut next, Ok(()), RESET_MS + 4, &mut rng());
        assert_eq!(ledger.circuit(RESET_MS + 4), CircuitState::Closed);
    }

    #[test]
    fn same_seed_same_backoff() {
        let ledger = Ledger::new(Some(retry(5)), None);
        let wait = |seed| {
            let mut record = Record::default();
            ledger.admit(&mut record, 0).expect("go");
            match ledger
                .settle(&mut record, io(), 0, &mut fastrand::Rng::with_seed(seed))
                .fate
            {
                Fate::Retry(w) => w,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(wait(1), wait(1));
    }
}
