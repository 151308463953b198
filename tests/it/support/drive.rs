//! Drivers: starting a client with a [`Failures`] handler, sending test
//! messages (`id=<i>` bodies) through it, and waiting for conditions.

use std::ops::Range;
use std::thread;
use std::time::{Duration, Instant};

use notifier::{Builder, Client, Message, NotifyError, RetryConfig};

use super::alone::share;
use super::failures::{assert_all_delivered, Failures};
use super::loops::build;
use super::server::Server;

/// Retry with up to `max_attempts` attempts and backoffs of a few
/// milliseconds.
pub(crate) fn quick_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(10))
}

/// Polls `done` every few milliseconds until it holds; false at `timeout`.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The body of test message `i`: `id=<i>`.
pub(crate) fn msg(i: usize) -> String {
    format!("id={i}")
}

/// The id in a body made by [`msg`].
pub(crate) fn id_of(body: &[u8]) -> usize {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.strip_prefix("id="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected body {:?}", body.escape_ascii().to_string()))
}

/// Notifies `msg`, retrying after a short pause while the queue is full.
/// Panics on any other refusal, or when the queue stays full for 30 s.
pub(crate) fn notify_retrying(client: &Client, msg: impl Into<Message>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut msg = msg.into();
    loop {
        match client.notify(msg) {
            Ok(()) => return,
            Err(NotifyError::QueueFull(back)) => {
                assert!(Instant::now() < deadline, "queue full for 30 s");
                msg = back;
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("notify refused: {e:?}"),
        }
    }
}

/// Notifies [`msg`]`(i)` for each `i` in `ids`, with [`notify_retrying`].
pub(crate) fn notify_all(client: &Client, ids: Range<usize>) {
    for i in ids {
        notify_retrying(client, msg(i));
    }
}

/// `builder` with a new [`Failures`] as its error handler. The client it
/// builds holds a [`share`] (in its handler) while it lives.
pub(crate) fn recording(builder: Builder) -> (Builder, Failures) {
    let failures = Failures::new();
    let record = failures.handler();
    let share = share();
    let builder = builder.error_handler(move |error| {
        let _held_while_the_client_lives = &share;
        record(error)
    });
    (builder, failures)
}

/// Builds (with [`build`]) `builder` with a new [`Failures`] as its error
/// handler; the client is not started.
fn built(builder: Builder) -> (Client, Failures) {
    let (builder, failures) = recording(builder);
    (build(builder).expect("build"), failures)
}

/// [`built`], and the client started.
pub(crate) fn started(builder: Builder) -> (Client, Failures) {
    let (client, failures) = built(builder);
    client.start();
    (client, failures)
}

/// Builds `builder` with a [`Failures`] handler, starts it, notifies
/// `msg(0)..msg(n)`, stops it, and checks with [`assert_all_delivered`] that
/// all reached `server` once each, without failure. Gives back the stopped
/// client.
pub(crate) fn send_all(server: &Server, builder: Builder, n: usize) -> Client {
    let (client, failures) = started(builder);
    notify_all(&client, 0..n);
    client.stop();
    assert_all_delivered(&client, &failures, server, n);
    client
}

/// Sends three rounds of five messages to `server`, which closes connections
/// idle for a while (see [`Server::start_with_idle_close`]), through a
/// client built from `builder`. After each round it waits for delivery, then
/// long enough for the server to close every connection and for the client
/// to notice, before it reuses one; then it sends one more message, stops,
/// and checks with [`assert_all_delivered`] that none was lost.
pub(crate) fn deliver_across_idle_closes(server: &Server, builder: Builder) {
    let idle = server
        .idle_close()
        .expect("a server that closes idle connections");
    let (client, failures) = started(builder);
    let mut sent = 0;
    for _round in 0..3 {
        for _ in 0..5 {
            client.notify(msg(sent)).expect("notify");
            sent += 1;
        }
        assert!(
            client.flush(Duration::from_secs(60)),
            "flush timed out: {:?}",
            client.stats()
        );
        thread::sleep(idle * 3);
        assert_eq!(server.open_connections(), 0, "the server did not close");
    }
    client.notify(msg(sent)).expect("notify");
    sent += 1;
    client.stop();
    assert_all_delivered(&client, &failures, server, sent);
}
