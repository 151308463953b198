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

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::{error::Error, sync::Arc, time::Duration};

use notifier::{BatchConfig, Client};

const MESSAGES: u64 = 1000;

fn main() -> Result<(), Box<dyn Error>> {
    let is_bad = |bytes: &[u8]| bytes.windows(5).any(|w| w == br#""bad""#);
    let server = common::Server::start(None, move |body| if is_bad(body) { 422 } else { 200 })?;
    let bad_batch = Arc::new(AtomicU64::new(0)); // the length of the bad event's batch
    let record = Arc::clone(&bad_batch);
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
            let (index, len) = (e.batch_index().unwrap_or(0), e.batch_len().unwrap_or(1));
            if index == 0 {
                eprintln!("a batch of {len} failed: {e}");
            }
            if is_bad(e.message()) {
                eprintln!("  its bad event was line {index} of {len}");
                record.store(len as u64, SeqCst);
            }
        })
        .build()?;
    client.start();

    for seq in 0..MESSAGES {
        let event = if seq == 537 { "bad" } else { "tick" };
        client.notify(format!(r#"{{"seq":{seq},"event":"{event}"}}"#))?;
    }
    client.stop(); // sends what lingers at once, waits for every answer
    let s = client.stats();
    let (delivered, failed, requests) = (s.delivered, s.failed, s.requests);
    println!("{delivered} delivered and {failed} failed in {requests} requests");

    // All delivered but the batch that held the bad event.
    if failed == 0 || failed != bad_batch.load(SeqCst) || delivered + failed != MESSAGES {
        return Err(format!("the books do not balance: {s:?}").into());
    }
    Ok(())
}
