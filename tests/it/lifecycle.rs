//! The client's life: refusals before start, after stop and when full (each
//! handing the message back), graceful `stop` and `Drop`, the shutdown
//! deadline, and a panicking error handler. After `stop`, every accepted
//! message has been delivered or handed to the handler exactly once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notifier::{Client, FailureKind, Message, NotifyError};

use crate::support::{
    assert_all_delivered, assert_each_id_once, build, id_of, msg, notify_all, notify_retrying,
    send_all, started, Action, Server,
};

const LONG: Duration = Duration::from_secs(60);

#[test]
fn client_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Client>();
}

#[test]
fn notify_before_start_hands_the_message_back() {
    let server = Server::no_content();
    let client = build(Client::builder(&server.url())).expect("build");
    let original = Message::from(vec![9u8, 8, 7]);
    match client.notify(original.clone()) {
        Err(e @ NotifyError::NotStarted(_)) => {
            assert_eq!(e.to_string(), "client not started");
            assert_eq!(e.into_message(), original);
        }
        other => panic!("expected NotStarted, got {other:?}"),
    }
    assert_eq!(client.stats().accepted, 0);
    client.stop();
    assert_eq!(server.request_count(), 0);
}

#[test]
fn notify_after_stop_hands_the_message_back() {
    let server = Server::no_content();
    let client = build(Client::builder(&server.url())).expect("build");
    client.start();
    client.notify("before").expect("notify");
    client.stop();
    client.start(); // no effect: a stopped client cannot be restarted
    match client.notify("after") {
        Err(NotifyError::Stopped(m)) => assert_eq!(m.as_bytes(), b"after"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(
        client
            .notify(Message::from_static(b"x"))
            .unwrap_err()
            .to_string(),
        "client stopped"
    );
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.delivered), (1, 1));
    assert_eq!(server.request_count(), 1);
}

#[test]
fn start_and_stop_are_idempotent() {
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()));
    client.start();
    notify_all(&client, 0..100);
    client.stop();
    client.stop();
    assert_all_delivered(&client, &failures, &server, 100);
}

#[test]
fn queue_full_hands_the_message_back() {
    let server = Server::stalled();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .queue_size(2)
            .shutdown_timeout(Duration::from_millis(300)),
    );
    client.notify(msg(0)).expect("notify");
    assert!(
        server.wait_for_requests(1, LONG),
        "first request never arrived"
    );

    // One message in flight; `queue_size` more fit, then the client is full.
    let mut accepted = 1;
    let refused = loop {
        assert!(accepted <= 10, "no QueueFull after {accepted} messages");
        let message = Message::from(msg(accepted));
        match client.notify(message.clone()) {
            Ok(()) => accepted += 1,
            Err(NotifyError::QueueFull(back)) => break (message, back),
            Err(e) => panic!("unexpected {e:?}"),
        }
    };
    assert_eq!(refused.1, refused.0, "QueueFull changed the message");
    assert_eq!(accepted, 3, "queue_size + workers messages should fit");
    assert_eq!(
        client.notify("again").unwrap_err().to_string(),
        "notification queue is full"
    );
    let stats = client.stats();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.rejected, 2);
    assert_eq!(stats.in_flight + stats.queued, 3);

    client.stop();
    let failures = failures.take();
    assert_eq!(failures.len(), 3, "{failures:?}");
    assert!(failures
        .iter()
        .all(|f| f.error.kind() == FailureKind::Shutdown));
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.delivered, stats.failed), (3, 0, 3));
}

#[test]
fn stop_delivers_everything_accepted() {
    const N: usize = 5_000;
    let server = Server::no_content();
    let client = send_all(&server, Client::builder(&server.url()), N);

    // `stop` has returned: nothing is left to wait for.
    assert_eq!(server.request_count(), N);
    let stats = client.stats();
    assert_eq!((stats.failed, stats.queued, stats.in_flight), (0, 0, 0));
}

#[test]
fn drop_delivers_everything_accepted() {
    const N: usize = 5_000;
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()));
    notify_all(&client, 0..N);
    drop(client);

    assert_eq!(server.request_count(), N);
    failures.assert_none();
    assert_each_id_once(&server.requests(), N);
}

#[test]
fn shutdown_timeout_hands_the_rest_to_the_handler() {
    let server = Server::stalled();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(2)
            .queue_size(10)
            .shutdown_timeout(Duration::from_millis(500)),
    );
    let mut sent = Vec::new();
    for i in 0..12 {
        match client.notify(msg(i)) {
            Ok(()) => sent.push(i),
            Err(NotifyError::QueueFull(_)) => break,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(
        server.wait_for_requests(2, LONG),
        "both slots should be busy"
    );

    let started = Instant::now();
    client.stop();
    assert!(started.elapsed() < Duration::from_secs(30), "stop hung");

    let stats = client.stats();
    assert_eq!(stats.accepted, sent.len() as u64);
    assert_eq!(stats.delivered, 0);
    assert_eq!(stats.accepted, stats.delivered + stats.failed);
    let mut failed: Vec<usize> = failures
        .take()
        .into_iter()
        .map(|f| {
            assert_eq!(f.error.kind(), FailureKind::Shutdown, "{}", f.error);
            assert!(!f.error.is_retryable());
            id_of(f.error.message())
        })
        .collect();
    failed.sort_unstable();
    assert_eq!(
        failed, sent,
        "each accepted message reaches the handler once"
    );
}

#[test]
fn panicking_handler_does_not_stop_delivery() {
    const N: usize = 10;
    let server = Server::start(|request, _| {
        if request.body.starts_with(b"fail") {
            Action::Reply(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".to_vec(),
            )
        } else {
            Action::no_content()
        }
    });
    let calls = Arc::new(AtomicUsize::new(0));
    let client = {
        let calls = Arc::clone(&calls);
        build(
            Client::builder(&server.url())
                .workers(1)
                .error_handler(move |e| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    panic!("handler panics on purpose: {e}");
                }),
        )
        .expect("build")
    };
    client.start();
    for i in 0..N {
        notify_retrying(&client, format!("fail-{i}"));
        notify_retrying(&client, msg(i));
    }
    client.stop();

    assert_eq!(calls.load(Ordering::SeqCst), N);
    let stats = client.stats();
    assert_eq!(stats.handler_panics, N as u64);
    assert_eq!(stats.accepted, 2 * N as u64);
    assert_eq!(stats.delivered, N as u64);
    assert_eq!(stats.failed, N as u64);
    assert_eq!(stats.accepted, stats.delivered + stats.failed);
    let delivered: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| !r.body.starts_with(b"fail"))
        .collect();
    assert_each_id_once(&delivered, N);
}

/// `Duration::MAX` settings and a `Retry-After` far beyond any clock must
/// not overflow a deadline: the message waits, and the shutdown timeout
/// hands it over.
#[test]
fn huge_durations_do_not_overflow_deadlines() {
    let server = Server::start(|_, _| {
        Action::Reply(
            b"HTTP/1.1 503 Busy\r\nRetry-After: 18446744073709551615\r\nContent-Length: 0\r\n\r\n"
                .to_vec(),
        )
    });
    let (client, failures) = started(
        Client::builder(&server.url())
            .timeout(Duration::MAX)
            .idle_timeout(Duration::MAX)
            .retry(
                notifier::RetryConfig::default()
                    .max_attempts(3)
                    .max_backoff(Duration::MAX),
            )
            .shutdown_timeout(Duration::from_millis(300)),
    );
    client.notify("later").expect("notify");
    assert!(server.wait_for_requests(1, LONG), "no request");
    client.stop();
    let failure = failures.take_single(FailureKind::Shutdown, b"later");
    assert_eq!(failure.error.attempts(), 1);
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.failed), (1, 1));
}
