//! A client's whole life: build it with an error handler, start it, notify
//! (taking a message back when the queue is full), flush, stop, read the
//! stats. It delivers to a server inside this process (`examples/common`).
//!
//! ```text
//! cargo run --example basic
//! ```

mod common;

use std::error::Error;
use std::thread;
use std::time::Duration;

use notifier::{Client, NotifyError};

const MESSAGES: u64 = 100;

fn main() -> Result<(), Box<dyn Error>> {
    let server = common::Server::start(None, |_body| 204)?;

    let client = Client::builder(&server.url("127.0.0.1"))
        .workers(2) // connections, each with one request in flight
        .queue_size(8) // the client holds at most queue_size + workers messages
        .timeout(Duration::from_secs(5)) // per attempt
        .content_type("application/json")
        // Runs on an event-loop thread for each message that was not delivered.
        .error_handler(|e| eprintln!("lost: {e}: {:?}", String::from_utf8_lossy(e.message())))
        .build()?;
    client.start(); // before it, notify returns NotStarted

    let mut waits = 0;
    for seq in 0..MESSAGES {
        let mut msg = format!(r#"{{"event":"tick","seq":{seq}}}"#).into();
        // notify never blocks: a full client hands the message back, and the
        // caller decides. Here it waits a little and tries again.
        while let Err(refused) = client.notify(msg) {
            let NotifyError::QueueFull(back) = refused else {
                return Err(refused.into()); // NotStarted or Stopped
            };
            msg = back;
            waits += 1;
            thread::sleep(Duration::from_millis(1));
        }
    }
    println!("sent {MESSAGES} messages, waited {waits} times on a full queue");

    // Wait for what was accepted so far; the client keeps running.
    if !client.flush(Duration::from_secs(10)) {
        return Err("flush timed out".into());
    }
    client.stop(); // delivers anything left, joins the event loops
    let stats = client.stats();
    println!("{stats:#?}");

    if stats.delivered != MESSAGES || server.answered_2xx() != MESSAGES {
        return Err(format!("{} of {MESSAGES} delivered", stats.delivered).into());
    }
    Ok(())
}
