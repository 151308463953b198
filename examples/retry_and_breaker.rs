//! Retry and a circuit breaker against a server that fails now and then,
//! goes down, and comes back: retries hide the odd 503, the breaker stops
//! sending while the server is down, and one probe closes it again.
//!
//! ```text
//! cargo run --example retry_and_breaker
//! ```

mod common;

use std::{error::Error, thread, time::Duration};

use notifier::{CircuitBreakerConfig, CircuitState, Client, RetryConfig, Stats};

fn main() -> Result<(), Box<dyn Error>> {
    // The server answers 503 to the first try of every third message, 204 to the rest.
    let server = common::Server::start(None, common::flaky(3, 503))?;
    let ms = Duration::from_millis;
    // Retryable failures (5xx, connection and I/O errors, timeouts) are tried
    // again: 4 attempts in all, after random waits below 10, 20 and 40 ms.
    let retry = RetryConfig::default()
        .max_attempts(4)
        .initial_backoff(ms(10));
    let client = Client::builder(&server.url("127.0.0.1"))
        .workers(2)
        .retry(retry)
        // 5 failures in a row (the default threshold) open the circuit: attempts
        // fail at once, with no request, until one sent after 300 ms succeeds.
        .circuit_breaker(CircuitBreakerConfig::default().reset_timeout(ms(300)))
        .error_handler(|e| println!("  handler: {:?}: {e}", String::from_utf8_lossy(e.message())))
        .build()?;
    client.start();

    send(&client, "flaky", 20)?;
    server.answer_all(503); // the server goes down
    let down = send(&client, "down", 10)?;
    // Back up. Once its 300 ms have passed the circuit reads HalfOpen: the next
    // attempt is the probe, and others fail at once until it succeeds; send it alone.
    server.answer_all(204);
    while client.stats().circuit != CircuitState::HalfOpen {
        thread::sleep(ms(10));
    }
    send(&client, "probe", 1)?;
    let up = send(&client, "up", 10)?;
    client.stop();

    if up.delivered != 31 || up.failed != 10 || down.circuit == CircuitState::Closed {
        return Err("retry and the breaker did not do what they should".into());
    }
    Ok(())
}

/// Sends `count` messages (the queue holds 1000), waits for them, prints the stats.
fn send(client: &Client, phase: &str, count: usize) -> Result<Stats, Box<dyn Error>> {
    (0..count).try_for_each(|n| client.notify(format!("{phase} {n}")))?;
    if !client.flush(Duration::from_secs(10)) {
        return Err(format!("{phase}: flush timed out").into());
    }
    let s = client.stats();
    let (delivered, failed, retried, circuit) = (s.delivered, s.failed, s.retried, s.circuit);
    println!("{phase}: delivered {delivered}, failed {failed}, retried {retried}, {circuit:?}");
    Ok(s)
}
