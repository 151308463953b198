//! Batching to an NDJSON endpoint: a free connection takes up to
//! `max_messages` queued messages and POSTs them as one body, a line each,
//! waiting up to `linger` for the batch to fill. The batch is the unit of
//! attempt: a 2xx delivers all of it, a failure hands every message of it
//! to the error handler, which learns where in its batch each one was.
//! It delivers to a server inside this process (`examples/common`), which
//! refuses any body holding a "bad" event.
//!
//! ```text
//! cargo run --example batching
//! ```

mod common;

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notifier::{BatchConfig, Client};

const MESSAGES: u64 = 1000;

fn main() -> Result<(), Box<dyn Error>> {
    let lines = Arc::new(AtomicU64::new(0)); // events the endpoint took
    let took = Arc::clone(&lines);
    let server = common::Server::start(None, move |body| {
        if body.windows(5).any(|w| w == br#""bad""#) {
            return 422; // one bad line refuses the whole body
        }
        let n = body.iter().filter(|&&b| b == b'\n').count();
        took.fetch_add(n as u64, Ordering::SeqCst);
        200
    })?;

    let failed = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&failed);
    let client = Client::builder(&server.url("127.0.0.1"))
        .workers(2)
        .queue_size(MESSAGES as usize) // room for the whole burst below
        .batch(
            BatchConfig::ndjson() // Content-Type: application/x-ndjson
                .max_messages(100) // at most 100 lines per request
                .linger(Duration::from_millis(5)), // wait up to 5 ms to fill one
        )
        // Called once for each message of a failed batch.
        .error_handler(move |e| {
            counted.fetch_add(1, Ordering::SeqCst);
            let (index, len) = (e.batch_index().unwrap_or(0), e.batch_len().unwrap_or(1));
            if index == 0 {
                eprintln!("a batch of {len} failed: {e}");
            }
            if e.message().windows(5).any(|w| w == br#""bad""#) {
                eprintln!("  its bad event was line {index} of {len}");
            }
        })
        .build()?;
    client.start();

    for seq in 0..MESSAGES {
        let event = if seq == 537 { "bad" } else { "tick" };
        client.notify(format!(r#"{{"seq":{seq},"event":"{event}"}}"#))?;
    }
    client.stop(); // sends what lingers at once, waits for every answer
    let stats = client.stats();
    println!(
        "{} delivered and {} failed in {} requests ({:.1} messages per request)",
        stats.delivered,
        stats.failed,
        stats.requests,
        (stats.delivered + stats.failed) as f64 / stats.requests.max(1) as f64
    );

    let all_ended = stats.delivered + stats.failed == MESSAGES;
    let handled = stats.failed == failed.load(Ordering::SeqCst) && stats.failed > 0;
    if !all_ended || !handled || stats.delivered != lines.load(Ordering::SeqCst) {
        return Err(format!("the books do not balance: {stats:?}").into());
    }
    Ok(())
}
