//! Retry and a circuit breaker against a server that fails now and then,
//! goes down, and comes back: retries hide the odd 503, the breaker stops
//! sending while the server is down, and one probe closes it again.
//!
//! ```text
//! cargo run --example retry_and_breaker
//! ```

mod common;

use std::sync::atomic::{AtomicU16, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::{collections::HashSet, error::Error, io, thread, time::Duration};

use notifier::{CircuitBreakerConfig, CircuitState, Client, RetryConfig, Stats};

fn main() -> Result<(), Box<dyn Error>> {
    let answer = Arc::new(AtomicU16::new(FLAKY));
    let server = server(Arc::clone(&answer))?;
    let ms = Duration::from_millis;
    // Retryable failures (5xx, connection and I/O errors, timeouts) are tried
    // again: 4 attempts in all, after random waits below 10, 20 and 40 ms.
    let retry = RetryConfig::default()
        .max_attempts(4)
        .initial_backoff(ms(10));
    // 5 failures in a row open the circuit: attempts fail at once, with no
    // request, until one sent after 300 ms (the probe) succeeds.
    let breaker = CircuitBreakerConfig::default()
        .failure_threshold(5)
        .reset_timeout(ms(300));
    let client = Client::builder(&server.url("127.0.0.1"))
        .workers(2)
        .retry(retry)
        .circuit_breaker(breaker)
        .error_handler(|e| println!("  handler: {:?}: {e}", String::from_utf8_lossy(e.message())))
        .build()?;
    client.start();

    send(&client, "flaky", 20)?;
    answer.store(503, SeqCst); // the server goes down
    let down = send(&client, "down", 10)?;
    // It is back. The circuit reads HalfOpen once its 300 ms have passed: the
    // next attempt is the probe, and until it succeeds every other one fails
    // at once. So send one message alone first.
    answer.store(204, SeqCst);
    while client.stats().circuit != CircuitState::HalfOpen {
        thread::sleep(ms(10));
    }
    send(&client, "probe", 1)?;
    send(&client, "up", 10)?;
    client.stop();

    let end = client.stats();
    if end.delivered != 31 || end.failed != 10 || down.circuit == CircuitState::Closed {
        return Err("retry and the breaker did not do what they should".into());
    }
    Ok(())
}

/// Sends `count` messages, waits until each is delivered or failed, prints
/// the stats.
fn send(client: &Client, phase: &str, count: usize) -> Result<Stats, Box<dyn Error>> {
    for n in 0..count {
        client.notify(format!("{phase} {n}"))?; // the queue holds 1000: never full here
    }
    if !client.flush(Duration::from_secs(10)) {
        return Err(format!("{phase}: flush timed out").into());
    }
    let s = client.stats();
    let (delivered, failed, retried, circuit) = (s.delivered, s.failed, s.retried, s.circuit);
    println!("{phase}: delivered {delivered}, failed {failed}, retried {retried}, {circuit:?}");
    Ok(s)
}

/// `answer` holds the status for every request, or this: 503 to the first
/// try of every third message, 204 to the rest.
const FLAKY: u16 = 0;

/// The endpoint, answering as `answer` says.
fn server(answer: Arc<AtomicU16>) -> io::Result<common::Server> {
    let seen = Mutex::new(HashSet::new());
    common::Server::start(None, move |body| {
        let mut seen = seen.lock().expect("no server thread panics");
        let first_try_of_a_third = seen.insert(body.to_vec()) && seen.len() % 3 == 0;
        match answer.load(SeqCst) {
            FLAKY if first_try_of_a_third => 503,
            FLAKY => 204,
            status => status,
        }
    })
}
