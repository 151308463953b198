//! The `tracing` feature's events, caught by a subscriber of this test's
//! own: a client against a server that closes every connection without
//! answering opens connections, sees its attempts fail, schedules retries
//! and opens its circuit breaker, and says so; against a healthy server it
//! opens and closes connections. A test binary of its own, since the
//! subscriber must be the process's global one (the events come from the
//! event-loop threads).

#![cfg(feature = "tracing")]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notifier::{CircuitBreakerConfig, Client, RetryConfig};
use support::{notify_all, started, Action, Server};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every event's level and message, in order.
#[derive(Default, Clone)]
struct Caught(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

struct Message<'a>(&'a mut String);

impl Visit for Message<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        }
    }
}

impl Subscriber for Caught {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Id::from_u64(NEXT.fetch_add(1, Ordering::Relaxed))
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut message = String::new();
        event.record(&mut Message(&mut message));
        let meta = event.metadata();
        let mut caught = self.0.lock().unwrap_or_else(|e| e.into_inner());
        caught.push((*meta.level(), meta.target().to_owned(), message));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Caught {
    fn count(&self, level: tracing::Level, message: &str) -> usize {
        let caught = self.0.lock().unwrap_or_else(|e| e.into_inner());
        caught
            .iter()
            .filter(|(l, target, m)| *l == level && target == "notifier" && m == message)
            .count()
    }

    fn clear(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[test]
fn connections_failures_retries_and_the_breaker_are_traced() {
    use tracing::Level;
    let caught = Caught::default();
    tracing::subscriber::set_global_default(caught.clone()).expect("the only subscriber");

    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).workers(1));
    notify_all(&client, 0..3);
    client.stop();
    failures.assert_none();
    assert_eq!(caught.count(Level::DEBUG, "resolved"), 1);
    assert_eq!(caught.count(Level::DEBUG, "connection opened"), 1);
    assert_eq!(caught.count(Level::DEBUG, "connection closed"), 1);
    assert_eq!(caught.count(Level::WARN, "attempt failed"), 0);

    caught.clear();
    let closing = Server::always(Action::Close);
    let (client, failures) = started(
        Client::builder(&closing.url())
            .workers(1)
            .retry(
                RetryConfig::default()
                    .max_attempts(2)
                    .initial_backoff(Duration::from_millis(1))
                    .max_backoff(Duration::from_millis(2)),
            )
            .circuit_breaker(CircuitBreakerConfig::default().failure_threshold(2)),
    );
    client.notify("x").expect("notify");
    client.stop();
    assert_eq!(failures.len(), 1, "the message failed");
    assert_eq!(
        caught.count(Level::WARN, "attempt failed"),
        2,
        "two attempts"
    );
    assert_eq!(caught.count(Level::DEBUG, "retry scheduled"), 1);
    assert_eq!(caught.count(Level::WARN, "circuit breaker opened"), 1);
    assert_eq!(caught.count(Level::DEBUG, "connection opened"), 2);
}
