//! Retry and the circuit breaker against the scripted loopback server:
//! which failures are retried and how often, `Retry-After`, backoff that
//! never stalls other messages, the breaker opening, failing fast, letting
//! exactly one probe through after its reset timeout and closing or
//! re-opening on the probe's answer, retries cut short by an open circuit,
//! and TLS failures that are never retried.
//!
//! The tests synchronise on events (requests arriving, handler calls,
//! `flush`), not on sleeps. The only timed assertions are the lower bounds
//! on the spacing a `Retry-After` asks for: a 5xx's `Retry-After` raises
//! the backoff before its retry to at least that (up to `max_backoff`). Two
//! tests rely on the client acting well within a window that is long on
//! loopback: an open circuit's 1 s reset timeout
//! (`failed_probe_reopens_the_circuit`) and a 1 s `flush` against retry
//! backoffs drawn up to 5 s (`open_circuit_cuts_retry_backoff_short`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use notifier::{CircuitBreakerConfig, CircuitState, Client, FailureKind, RetryConfig, Stats};

use crate::support;
use crate::support::tls::{TestCa, TlsServer};
use crate::support::{
    id_of, msg, notify_all, quick_retry, response, started, wait_until, Action, Failure, Failures,
    Server,
};

const LONG: Duration = Duration::from_secs(60);

/// `503 Service Unavailable` with the given extra headers, keep-alive.
fn unavailable(headers: &[(&str, &str)]) -> Action {
    Action::Reply(response(503, "Service Unavailable", headers, b"busy"))
}

/// `500 Internal Server Error`, keep-alive.
fn server_error() -> Action {
    Action::Reply(response(500, "Internal Server Error", &[], b"oops"))
}

/// A breaker that opens after `threshold` failures, for `reset`.
fn breaker(threshold: u32, reset: Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig::default()
        .failure_threshold(threshold)
        .reset_timeout(reset)
}

/// Checks, once the client has stopped, that every accepted message ended
/// exactly once, and gives back the stats.
fn assert_balanced(client: &Client) -> Stats {
    let stats = client.stats();
    support::assert_balanced(&stats);
    stats
}

/// Checks that `failure` is an open circuit's refusal of a first attempt:
/// one attempt (the refused one), not retryable, no status.
fn assert_circuit_open(failure: &Failure) {
    let error = &failure.error;
    assert_eq!(error.kind(), FailureKind::CircuitOpen, "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(error.status_code(), None, "{error}");
}

/// Checks that `failure` is a single-attempt `Status` failure with `status`.
fn assert_status(failure: &Failure, status: u16) {
    let error = &failure.error;
    assert_eq!(error.kind(), FailureKind::Status, "{error}");
    assert_eq!(error.status_code(), Some(status), "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
}

/// The ids of the bodies of `server`'s requests, in arrival order.
fn ids(server: &Server) -> Vec<usize> {
    server.requests().iter().map(|r| id_of(&r.body)).collect()
}

/// Sends `n` messages through `client` one after the other, each once the
/// previous one ended, and waits for the circuit to open. Used to trip the
/// breaker with exactly `n` requests whatever the number of slots.
fn trip(client: &Client, failures: &Failures, n: usize) {
    for i in 0..n {
        client.notify(msg(i)).expect("notify");
        assert!(failures.wait_for(i + 1, LONG), "{:?}", client.stats());
    }
    assert_ne!(client.stats().circuit, CircuitState::Closed);
}

// ---------------------------------------------------------------- retry

#[test]
fn retries_5xx_until_delivered() {
    let server = Server::start(|_, info| {
        if info.total < 2 {
            unavailable(&[])
        } else {
            Action::no_content()
        }
    });
    // Three attempts: the first try and two retries, the last of which
    // succeeds.
    let (client, failures) = started(Client::builder(&server.url()).retry(quick_retry(3)));
    client.notify(msg(0)).expect("notify");
    client.stop();

    failures.assert_none();
    let stats = assert_balanced(&client);
    assert_eq!((stats.accepted, stats.delivered), (1, 1), "{stats:?}");
    assert_eq!(stats.retried, 2, "{stats:?}");
    assert_eq!(ids(&server), [0, 0, 0]);
}

#[test]
fn a_4xx_is_not_retried() {
    let server = Server::always(Action::Reply(response(400, "Bad Request", &[], b"no")));
    let (client, failures) = started(Client::builder(&server.url()).retry(quick_retry(5)));
    client.notify(msg(0)).expect("notify");
    client.stop();

    let failure = failures.take_single(FailureKind::Status, msg(0).as_bytes());
    assert_eq!(failure.error.status_code(), Some(400));
    assert!(!failure.error.is_retryable());
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.failed), (0, 1), "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_eq!(server.request_count(), 1);
}

#[test]
fn gives_up_after_max_attempts() {
    let server = Server::always(unavailable(&[]));
    let (client, failures) = started(Client::builder(&server.url()).retry(quick_retry(3)));
    client.notify(msg(0)).expect("notify");
    client.stop();

    let got = failures.take();
    assert_eq!(got.len(), 1, "{got:?}");
    let error = &got[0].error;
    assert_eq!(error.kind(), FailureKind::Status, "{error}");
    assert_eq!(error.status_code(), Some(503));
    assert_eq!(error.attempts(), 3, "{error}");
    assert!(error.is_retryable());
    assert_eq!(error.message(), msg(0).as_bytes());
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.failed), (0, 1), "{stats:?}");
    assert_eq!(stats.retried, 2, "{stats:?}");
    assert_eq!(ids(&server), [0, 0, 0]);
}

/// Delivers one message to a server that answers the first request with a
/// 503 carrying `Retry-After: retry_after`, then 204, with a retry policy
/// whose own backoff is 10 ms; gives back the time between the two
/// requests' arrivals.
fn spacing_asked_by_retry_after(retry_after: String, max_backoff: Duration) -> Duration {
    let server = Server::start(move |_, info| {
        if info.total == 0 {
            unavailable(&[("Retry-After", retry_after.as_str())])
        } else {
            Action::no_content()
        }
    });
    let retry = RetryConfig::default()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(max_backoff);
    let (client, failures) = started(Client::builder(&server.url()).retry(retry));
    client.notify(msg(0)).expect("notify");
    client.stop();

    failures.assert_none();
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.retried), (1, 1), "{stats:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    requests[1].received - requests[0].received
}

#[test]
fn retry_after_seconds_raises_the_backoff() {
    let gap = spacing_asked_by_retry_after("1".into(), Duration::from_secs(5));
    assert!(
        gap >= Duration::from_millis(900),
        "second attempt {gap:?} after the first"
    );
}

#[test]
fn backoff_does_not_stall_other_messages() {
    // One slot. Message 0 is answered 503 with `Retry-After: 1` the first
    // time; the 100 messages sent right after it go out through the same
    // slot while it waits on the loop's timer.
    let refused = Arc::new(AtomicBool::new(false));
    let server = {
        let refused = Arc::clone(&refused);
        Server::start(move |request, _| {
            if id_of(&request.body) == 0 && !refused.swap(true, Ordering::SeqCst) {
                unavailable(&[("Retry-After", "1")])
            } else {
                Action::no_content()
            }
        })
    };
    let retry = RetryConfig::default()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_secs(5));
    let (client, failures) = started(Client::builder(&server.url()).workers(1).retry(retry));
    notify_all(&client, 0..101);
    client.stop();

    failures.assert_none();
    let stats = assert_balanced(&client);
    assert_eq!(
        (stats.accepted, stats.delivered, stats.retried),
        (101, 101, 1),
        "{stats:?}"
    );
    let order = ids(&server);
    assert_eq!(order.len(), 102, "{order:?}");
    assert_eq!(order[0], 0, "{order:?}");
    assert_eq!(
        order[101], 0,
        "message 0's retry came before the others were delivered: {order:?}"
    );
    let mut others = order[1..101].to_vec();
    others.sort_unstable();
    assert_eq!(others, (1..101).collect::<Vec<_>>());
}

#[test]
fn tls_failures_are_never_retried() {
    let server = TlsServer::no_content();
    let other = TestCa::new("another test CA");
    let url = server.url_for("localhost", "/");
    let (client, failures) = started(
        Client::builder(&url)
            .workers(1)
            .tls_config(other.client_config())
            .retry(quick_retry(4)),
    );
    client.notify("secret").expect("notify");
    client.stop();

    let failure = failures.take_single(FailureKind::Tls, b"secret");
    assert!(!failure.error.is_retryable(), "{}", failure.error);
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.failed), (0, 1), "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_eq!(server.request_count(), 0, "a request went out");
    assert_eq!(server.connections(), 1, "the client connected again");
}

// ------------------------------------------------------- circuit breaker

/// Checks, once `client` has stopped, that messages 0 to 2 reached
/// `server` and failed with its 500, which opened the circuit, and that
/// the other 100 were refused without reaching it. Gives back the
/// failures.
fn assert_three_500s_then_refusals(
    client: &Client,
    failures: &Failures,
    server: &Server,
) -> Vec<Failure> {
    assert_eq!(ids(server), [0, 1, 2]);
    let got = failures.take();
    assert_eq!(got.len(), 103);
    for failure in &got[..3] {
        assert_status(failure, 500);
    }
    for failure in &got[3..] {
        assert_circuit_open(failure);
    }
    let stats = assert_balanced(client);
    assert_eq!((stats.delivered, stats.failed), (0, 103), "{stats:?}");
    assert_eq!(stats.circuit, CircuitState::Open);
    got
}

#[test]
fn open_circuit_fails_fast() {
    // One slot, so the messages go one at a time: the first three fail with
    // 500 and open the circuit, the other 100 never reach the server.
    let server = Server::always(server_error());
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .circuit_breaker(breaker(3, LONG)),
    );
    notify_all(&client, 0..103);
    client.stop();

    let got = assert_three_500s_then_refusals(&client, &failures, &server);
    let mut failed: Vec<usize> = got.iter().map(|f| id_of(f.error.message())).collect();
    failed.sort_unstable();
    assert_eq!(failed, (0..103).collect::<Vec<_>>());
}

#[test]
fn open_circuit_fails_fast_on_every_loop() {
    // The breaker is shared: once three failures opened it, no loop lets
    // an attempt through.
    let server = Server::always(server_error());
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(8)
            .threads(4)
            .circuit_breaker(breaker(3, LONG)),
    );
    trip(&client, &failures, 3);
    assert_eq!(client.stats().circuit, CircuitState::Open);
    notify_all(&client, 3..103);
    client.stop();

    assert_three_500s_then_refusals(&client, &failures, &server);
}

#[test]
fn success_resets_the_count_and_4xx_counts_neither_way() {
    // Threshold 2, one slot: 500, 204, 500 leaves it closed (the 2xx reset
    // the count); then 400, 500 opens it (the 400 did not reset it, and
    // the 500 before it counted).
    let statuses = [500u16, 204, 500, 400, 500, 204];
    let server = Server::start(move |_, info| match statuses.get(info.total) {
        Some(&204) => Action::no_content(),
        Some(&status) => Action::Reply(response(status, "Status", &[], b"")),
        None => Action::no_content(),
    });
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .circuit_breaker(breaker(2, LONG)),
    );
    notify_all(&client, 0..3);
    assert!(client.flush(LONG), "{:?}", client.stats());
    assert_eq!(client.stats().circuit, CircuitState::Closed);
    notify_all(&client, 3..6);
    client.stop();

    assert_eq!(ids(&server), [0, 1, 2, 3, 4]);
    let got = failures.take();
    assert_eq!(got.len(), 5, "{got:?}");
    for (failure, status) in got.iter().zip([500, 500, 400, 500]) {
        assert_status(failure, status);
    }
    assert_circuit_open(&got[4]);
    assert_eq!(id_of(got[4].error.message()), 5);
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.failed), (1, 5), "{stats:?}");
    assert_eq!(stats.circuit, CircuitState::Open);
}

/// A server for the half-open tests: the first three requests fail with
/// 500; the fourth, the probe, is answered `probe` after `probe_delay`;
/// later requests get `rest`. It counts the requests that arrive while the
/// probe waits for its answer.
struct ProbeServer {
    server: Server,
    during_probe: Arc<AtomicUsize>,
}

impl ProbeServer {
    fn start(probe: Action, probe_delay: Duration, rest: Action) -> ProbeServer {
        let probing = Arc::new(AtomicBool::new(false));
        let during_probe = Arc::new(AtomicUsize::new(0));
        let server = {
            let during_probe = Arc::clone(&during_probe);
            Server::start(move |_, info| {
                if probing.load(Ordering::SeqCst) {
                    during_probe.fetch_add(1, Ordering::SeqCst);
                }
                match info.total {
                    0..=2 => server_error(),
                    3 => {
                        probing.store(true, Ordering::SeqCst);
                        thread::sleep(probe_delay);
                        probing.store(false, Ordering::SeqCst);
                        probe.clone()
                    }
                    _ => rest.clone(),
                }
            })
        };
        ProbeServer {
            server,
            during_probe,
        }
    }

    /// How many requests arrived while the probe waited for its answer.
    fn during_probe(&self) -> usize {
        self.during_probe.load(Ordering::SeqCst)
    }
}

/// Trips the breaker of a client for `server` with three 500s, waits out
/// the reset timeout, then notifies `msg(3)..msg(3 + n)` at once. Waits
/// until they all ended and checks that exactly one request (the probe)
/// reached the server meanwhile, and that every other message failed fast
/// with `CircuitOpen` or was delivered after the probe. Gives back the
/// failures among the `n`.
fn probe_with(
    client: &Client,
    failures: &Failures,
    server: &ProbeServer,
    n: usize,
) -> Vec<Failure> {
    trip(client, failures, 3);
    for failure in failures.take() {
        assert_status(&failure, 500);
    }
    assert!(
        wait_until(LONG, || client.stats().circuit == CircuitState::HalfOpen),
        "{:?}",
        client.stats()
    );
    let before = server.server.request_count();
    assert_eq!(before, 3);
    notify_all(client, 3..3 + n);
    assert!(client.flush(LONG), "{:?}", client.stats());

    assert_eq!(
        server.during_probe(),
        0,
        "requests reached the server while the probe was in flight"
    );
    let got = failures.take();
    for failure in &got {
        if failure.error.kind() != FailureKind::CircuitOpen {
            // Only the probe may have reached the server and failed.
            assert_status(failure, 500);
        } else {
            assert_circuit_open(failure);
        }
    }
    let stats = client.stats();
    let reached = server.server.request_count() - before;
    assert!(reached >= 1, "no probe reached the server");
    let refused = got
        .iter()
        .filter(|f| f.error.kind() == FailureKind::CircuitOpen)
        .count();
    assert_eq!(reached + refused, n, "{stats:?} {got:?}");
    got
}

/// A client with `workers` slots and a breaker (3 failures, 300 ms)
/// before a [`ProbeServer`] whose probe is answered `204` after
/// `probe_delay`; runs [`probe_with`] for `n` messages and checks that
/// every failure on the way was a refusal. Gives back the server, the
/// client, its failures, and those refusals.
fn successful_probe(
    workers: usize,
    probe_delay: Duration,
    n: usize,
) -> (ProbeServer, Client, Failures, Vec<Failure>) {
    let server = ProbeServer::start(Action::no_content(), probe_delay, Action::no_content());
    let (client, failures) = started(
        Client::builder(&server.server.url())
            .workers(workers)
            .circuit_breaker(breaker(3, Duration::from_millis(300))),
    );
    let got = probe_with(&client, &failures, &server, n);
    assert!(
        got.iter()
            .all(|f| f.error.kind() == FailureKind::CircuitOpen),
        "{got:?}"
    );
    (server, client, failures, got)
}

#[test]
fn successful_probe_closes_the_circuit() {
    let (server, client, failures, got) = successful_probe(4, Duration::from_millis(100), 20);
    assert_eq!(client.stats().circuit, CircuitState::Closed);
    let delivered_so_far = client.stats().delivered;
    assert_eq!(delivered_so_far, 20 - got.len() as u64);

    // Closed again: everything goes through.
    notify_all(&client, 23..43);
    client.stop();
    failures.assert_none();
    let stats = assert_balanced(&client);
    assert_eq!(stats.delivered, delivered_so_far + 20, "{stats:?}");
    assert_eq!(stats.circuit, CircuitState::Closed);
    assert_eq!(
        server.server.request_count() as u64,
        3 + stats.delivered,
        "{stats:?}"
    );
}

#[test]
fn half_open_lets_one_request_through_across_all_slots() {
    // Ten slots over several loops and a queue of 50 messages when the
    // reset timeout has passed: while the slow probe is in flight, no other
    // request reaches the server; the others fail with `CircuitOpen` or are
    // delivered once the probe closed the circuit.
    let (server, client, _failures, got) = successful_probe(10, Duration::from_millis(200), 50);
    client.stop();
    let stats = assert_balanced(&client);
    assert_eq!(stats.delivered, 50 - got.len() as u64, "{stats:?}");
    assert_eq!(stats.circuit, CircuitState::Closed);
    // The probe came alone; the delivered ones each reached the server once.
    let requests = ids(&server.server);
    assert_eq!(requests.len() as u64, 3 + stats.delivered);
    let mut delivered = requests[3..].to_vec();
    delivered.sort_unstable();
    delivered.dedup();
    assert_eq!(delivered.len() as u64, stats.delivered);
}

#[test]
fn open_circuit_cuts_retry_backoff_short() {
    // Every answer is a retryable 503 and retries wait up to 5 s (drawn at
    // random, up to 10 s later on). Two failures open the circuit; the
    // messages waiting for their retry then fail with `CircuitOpen` at
    // once instead of sleeping out their backoff. With ten messages the
    // chance that all their waits would have ended within the second
    // anyway is below 1e-5.
    let server = Server::always(unavailable(&[]));
    let retry = RetryConfig::default()
        .max_attempts(5)
        .initial_backoff(Duration::from_secs(5))
        .max_backoff(Duration::from_secs(10));
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(10)
            .retry(retry)
            .circuit_breaker(breaker(2, LONG)),
    );
    let started_at = Instant::now();
    notify_all(&client, 0..10);
    assert!(
        client.flush(Duration::from_secs(1)),
        "retries were not cut short after {:?}: {:?}",
        started_at.elapsed(),
        client.stats()
    );
    let got = failures.take();
    assert_eq!(got.len(), 10, "{got:?}");
    for failure in &got {
        let error = &failure.error;
        assert_eq!(error.kind(), FailureKind::CircuitOpen, "{error}");
        assert!(!error.is_retryable(), "{error}");
        // At least the first try and the retry the circuit refused.
        assert!(error.attempts() >= 2, "{error}");
    }
    let mut failed: Vec<usize> = got.iter().map(|f| id_of(f.error.message())).collect();
    failed.sort_unstable();
    assert_eq!(failed, (0..10).collect::<Vec<_>>());
    assert_eq!(client.stats().circuit, CircuitState::Open);
    client.stop();
    let stats = assert_balanced(&client);
    assert_eq!((stats.delivered, stats.failed), (0, 10), "{stats:?}");
    assert!(server.request_count() >= 2, "{stats:?}");
}
