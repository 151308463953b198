//! Message lifetime: a message's TTL ([`Builder::message_ttl`]), a full
//! queue dropping its oldest message ([`Overflow::DropOldest`]), and the
//! `Idempotency-Key` of each request ([`Builder::idempotency_key`]).
//!
//! No assertion here is on time. Each TTL is either far shorter than a
//! wait the test makes happen (a [`Gated`] server holding the only slot,
//! a `Retry-After` the retry must wait out, a linger), so that the message
//! must be past it, or far longer than what the message goes through, so
//! that it cannot be; where a message must *not* be expired, the margin is
//! at least a few hundred milliseconds of the loop's own lateness.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use notifier::{
    BatchConfig, BuildError, Builder, Client, FailureKind, NotifyError, Overflow, RetryConfig,
    DROP_HANDOFF, MAX_MESSAGE_TTL,
};

use crate::support::{
    assert_each_ended, build, id_of, msg, notify_all, quick_retry, response, started, wait_until,
    Action, Failure, Failures, Gated, Request, Server, Step, NO_CONTENT,
};

const LONG: Duration = Duration::from_secs(60);

/// The bound of every wait for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// A TTL far shorter than the waits the tests impose on queued messages.
const SHORT_TTL: Duration = Duration::from_millis(50);

/// How long queued messages are kept behind a gated slot: four times
/// [`SHORT_TTL`], so they are past it.
const PAST_SHORT_TTL: Duration = Duration::from_millis(200);

/// A linger no test waits out: only a full batch, `flush` or `stop` sends.
const FOREVER: Duration = Duration::from_secs(30);

/// `503` asking for a retry after one second.
fn unavailable_for_a_second() -> Vec<u8> {
    response(503, "Unavailable", &[("Retry-After", "1")], b"later")
}

/// Retry whose wait is exactly a 5xx's `Retry-After` of one second: the
/// jitter is at most 1 ms and the cap leaves the server's second whole.
fn retry_after_a_second(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_secs(2))
}

/// The two ways of forming requests: one message each, and NDJSON batches
/// (linger zero: a batch takes what is queued when its slot is free).
fn modes() -> [(&'static str, Option<BatchConfig>); 2] {
    [
        ("unbatched", None),
        ("batched", Some(BatchConfig::ndjson())),
    ]
}

/// A one-slot client of `server`, batching as `batch` says, with a
/// timeout no test reaches.
fn one_slot(server: &Server, batch: Option<BatchConfig>) -> Builder {
    let builder = Client::builder(&server.url()).workers(1).timeout(LONG);
    match batch {
        Some(b) => builder.batch(b),
        None => builder,
    }
}

/// The ids a request carries: its body's, one or an NDJSON batch.
fn ids(request: &Request) -> Vec<usize> {
    match request.body.strip_suffix(b"\n") {
        Some(lines) => lines.split(|&b| b == b'\n').map(id_of).collect(),
        None => vec![id_of(&request.body)],
    }
}

/// The ids of every request `server` received, in arrival order.
fn ids_received(server: &Server) -> Vec<usize> {
    server.requests().iter().flat_map(ids).collect()
}

/// The ids of `failures`, in the order the handler got them.
fn failed_ids(failures: &[Failure]) -> Vec<usize> {
    failures.iter().map(|f| id_of(f.error.message())).collect()
}

/// Checks that each of `failures` is a `kind` failure after `attempts`
/// attempts, outside any request (no batch index or length).
fn assert_outside_requests(failures: &[Failure], kind: FailureKind, attempts: u32) {
    for f in failures {
        let e = &f.error;
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(e.attempts(), attempts, "{e}");
        assert_eq!(e.status_code(), None, "{e}");
        assert!(!e.is_retryable(), "{e}");
        assert_eq!((e.batch_index(), e.batch_len()), (None, None), "{e}");
    }
}

/// The `Idempotency-Key` of `request`, checked to be there once, a quoted
/// string of 32 lowercase hex digits; given back without its quotes.
fn key_of(request: &Request) -> String {
    assert_eq!(
        request.header_count("Idempotency-Key"),
        1,
        "{:?}",
        request.headers
    );
    let value = request.header("Idempotency-Key").expect("counted");
    let digits = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or_else(|| panic!("not a quoted string: {value:?}"));
    assert!(
        digits.len() == 32
            && digits
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "not 32 lowercase hex digits: {value:?}"
    );
    digits.to_owned()
}

// ------------------------------------------------------------------ TTL

#[test]
fn queued_messages_past_their_ttl_expire_unsent() {
    // The gated server holds the first message's request, and with it the
    // only slot, while the next five wait in the queue past their TTL.
    // When the slot frees they are taken and expire there, never sent.
    // The first, written before its TTL passed, is delivered all the same.
    for (mode, batch) in modes() {
        let gated = Gated::start();
        let (client, failures) = started(one_slot(&gated.server, batch).message_ttl(SHORT_TTL));
        client.notify(msg(0)).expect("notify");
        assert!(gated.wait_arrived(1), "{mode}: {:?}", client.stats());
        notify_all(&client, 1..6);
        thread::sleep(PAST_SHORT_TTL);
        gated.open();
        assert!(failures.wait_for(5, SOON), "{mode}: {:?}", client.stats());
        client.stop();

        let got = failures.take();
        assert_eq!(failed_ids(&got), [1, 2, 3, 4, 5], "{mode}: {got:?}");
        assert_outside_requests(&got, FailureKind::Expired, 0);
        assert_eq!(ids_received(&gated.server), [0], "{mode}");
        let stats = client.stats();
        assert_each_ended(&stats, 6, 5);
        assert_eq!(
            (stats.delivered, stats.expired),
            (1, 5),
            "{mode}: {stats:?}"
        );
        assert_eq!((stats.dropped, stats.retried), (0, 0), "{mode}: {stats:?}");
    }
}

#[test]
fn a_lingering_batch_leaves_out_the_messages_that_expired_while_it_gathered() {
    // The batch gathers for 1.5 s from its first message. Messages 0 and 1
    // (TTL 1 s) are past their TTL when it goes; 2 and 3, notified 0.8 s
    // later, have 0.3 s left. The request carries only those two.
    const TTL: Duration = Duration::from_secs(1);
    const LINGER: Duration = Duration::from_millis(1_500);
    let server = Server::no_content();
    let (client, failures) =
        started(one_slot(&server, Some(BatchConfig::ndjson().linger(LINGER))).message_ttl(TTL));
    notify_all(&client, 0..2);
    thread::sleep(Duration::from_millis(800));
    notify_all(&client, 2..4);
    assert!(server.wait_for_requests(1, SOON), "{:?}", client.stats());
    client.stop();

    let got = failures.take();
    assert_eq!(failed_ids(&got), [0, 1], "{got:?}");
    // Expired while gathered: in no request yet.
    assert_outside_requests(&got, FailureKind::Expired, 0);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].body, b"id=2\nid=3\n");
    let stats = client.stats();
    assert_each_ended(&stats, 4, 2);
    assert_eq!((stats.delivered, stats.expired), (2, 2), "{stats:?}");
}

#[test]
fn a_lingering_batch_all_past_its_ttl_sends_nothing() {
    let server = Server::no_content();
    let (client, failures) = started(
        one_slot(
            &server,
            Some(BatchConfig::ndjson().linger(Duration::from_millis(500))),
        )
        .message_ttl(SHORT_TTL),
    );
    notify_all(&client, 0..3);
    assert!(failures.wait_for(3, SOON), "{:?}", client.stats());
    client.stop();

    let got = failures.take();
    assert_eq!(failed_ids(&got), [0, 1, 2], "{got:?}");
    assert_outside_requests(&got, FailureKind::Expired, 0);
    assert_eq!(server.request_count(), 0);
    let stats = client.stats();
    assert_each_ended(&stats, 3, 3);
    assert_eq!((stats.expired, stats.requests), (3, 0), "{stats:?}");
}

#[test]
fn a_retry_due_after_the_ttl_is_not_sent() {
    // Answered 503 with `Retry-After: 1`, the message waits a second for
    // its retry; its TTL of 200 ms has passed by then, so the retry is not
    // sent and the message expires, after its one attempt. Batched, it
    // keeps its place in the request that failed.
    for (mode, batch) in modes() {
        let batched = batch.is_some();
        let server = Server::always(Action::Reply(unavailable_for_a_second()));
        let (client, failures) = started(
            one_slot(&server, batch)
                .message_ttl(Duration::from_millis(200))
                .retry(retry_after_a_second(3)),
        );
        client.notify(msg(0)).expect("notify");
        assert!(failures.wait_for(1, SOON), "{mode}: {:?}", client.stats());
        client.stop();

        let got = failures.take();
        assert_eq!(got.len(), 1, "{mode}: {got:?}");
        let e = &got[0].error;
        assert_eq!(e.message(), msg(0).as_bytes(), "{mode}");
        assert_eq!(e.kind(), FailureKind::Expired, "{mode}: {e}");
        assert_eq!(e.attempts(), 1, "{mode}: {e}");
        assert!(!e.is_retryable(), "{mode}: {e}");
        let place = if batched {
            (Some(0), Some(1))
        } else {
            (None, None)
        };
        assert_eq!((e.batch_index(), e.batch_len()), place, "{mode}: {e}");
        assert_eq!(server.request_count(), 1, "{mode}: sent again");
        let stats = client.stats();
        assert_each_ended(&stats, 1, 1);
        assert_eq!(
            (stats.expired, stats.retried, stats.requests),
            (1, 0, 1),
            "{mode}: {stats:?}"
        );
    }
}

#[test]
fn a_request_after_a_retry_that_expired_whole_starts_with_no_attempts() {
    // Message 0's retry expires whole (as in the test above); message 1 is
    // then answered 400, not retryable: it failed after its one attempt,
    // and was never a retry. The job message 0's retry leaves behind is
    // recycled for message 1's request, and must not bring its books.
    // Both modes run before any verdict on the books.
    let mut wrong = Vec::new();
    for (mode, batch) in modes() {
        let server = Server::start(|_, info| {
            if info.total == 0 {
                Action::Reply(unavailable_for_a_second())
            } else {
                Action::Reply(response(400, "Bad Request", &[], b"no"))
            }
        });
        let (client, failures) = started(
            one_slot(&server, batch)
                .message_ttl(Duration::from_millis(200))
                .retry(retry_after_a_second(3)),
        );
        client.notify(msg(0)).expect("notify");
        assert!(failures.wait_for(1, SOON), "{mode}: {:?}", client.stats());
        client.notify(msg(1)).expect("notify");
        assert!(failures.wait_for(2, SOON), "{mode}: {:?}", client.stats());
        client.stop();

        let got = failures.take();
        assert_eq!(failed_ids(&got), [0, 1], "{mode}: {got:?}");
        assert_eq!(got[0].error.kind(), FailureKind::Expired, "{mode}");
        let e = &got[1].error;
        assert_eq!(
            (e.kind(), e.status_code()),
            (FailureKind::Status, Some(400)),
            "{mode}: {e}"
        );
        let stats = client.stats();
        assert_each_ended(&stats, 2, 2);
        assert_eq!(ids_received(&server), [0, 1], "{mode}");
        if (e.attempts(), stats.retried) != (1, 0) {
            wrong.push(format!(
                "{mode}: message 1 failed after {} attempts (1 made), retried {}",
                e.attempts(),
                stats.retried
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the request after an expired retry began with that retry's attempts: {wrong:?}"
    );
}

#[test]
fn a_retried_batch_leaves_out_its_expired_messages_and_goes_with_a_new_key() {
    // TTL 2 s. Messages 0 and 1 wait 1.5 s in the lingering batch for 2
    // and 3, which fill it; the batch is answered 503 with `Retry-After:
    // 1`. At the retry, 2.5 s after they were notified, 0 and 1 are past
    // their TTL: they expire with their places in the failed batch, and 2
    // and 3 (1 s old) go on as a new request, with a new key.
    let server = Server::start(|_, info| {
        if info.total == 0 {
            Action::Reply(unavailable_for_a_second())
        } else {
            Action::no_content()
        }
    });
    let (client, failures) = started(
        one_slot(
            &server,
            Some(BatchConfig::ndjson().max_messages(4).linger(FOREVER)),
        )
        .message_ttl(Duration::from_secs(2))
        .retry(retry_after_a_second(3))
        .idempotency_key(true),
    );
    notify_all(&client, 0..2);
    thread::sleep(Duration::from_millis(1_500));
    notify_all(&client, 2..4);
    assert!(server.wait_for_requests(2, SOON), "{:?}", client.stats());
    assert!(client.flush(SOON), "{:?}", client.stats());
    client.stop();

    let got = failures.take();
    assert_eq!(failed_ids(&got), [0, 1], "{got:?}");
    for (i, f) in got.iter().enumerate() {
        let e = &f.error;
        assert_eq!(e.kind(), FailureKind::Expired, "{e}");
        assert_eq!(e.attempts(), 1, "{e}");
        assert_eq!((e.batch_index(), e.batch_len()), (Some(i), Some(4)), "{e}");
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].body, b"id=0\nid=1\nid=2\nid=3\n");
    assert_eq!(requests[1].body, b"id=2\nid=3\n", "the retry's body");
    assert_eq!(requests[1].header("Content-Length"), Some("10"));
    assert_ne!(
        key_of(&requests[0]),
        key_of(&requests[1]),
        "a re-formed batch is a new request"
    );
    let stats = client.stats();
    assert_each_ended(&stats, 4, 2);
    assert_eq!((stats.delivered, stats.expired), (2, 2), "{stats:?}");
    assert_eq!(
        stats.retried, 2,
        "the retry carried two messages: {stats:?}"
    );
}

#[test]
fn an_exchange_under_way_when_the_ttl_passes_is_not_cancelled() {
    // The server answers 204 half a second after the request; the TTL is
    // 100 ms. The request was written in time: its outcome stands.
    for (mode, batch) in modes() {
        let server = Server::always(Action::Steps(vec![
            Step::Pause(Duration::from_millis(500)),
            Step::Write(NO_CONTENT.to_vec()),
        ]));
        let (client, failures) =
            started(one_slot(&server, batch).message_ttl(Duration::from_millis(100)));
        client.notify(msg(0)).expect("notify");
        assert!(client.flush(SOON), "{mode}: {:?}", client.stats());
        client.stop();
        failures.assert_none();
        let stats = client.stats();
        assert_each_ended(&stats, 1, 0);
        assert_eq!(
            (stats.delivered, stats.expired),
            (1, 0),
            "{mode}: {stats:?}"
        );
        assert_eq!(ids_received(&server), [0], "{mode}");
    }
}

#[test]
fn a_ttl_past_the_bound_is_refused_and_zero_is_ignored() {
    let url = "http://127.0.0.1:9/";
    for past in [MAX_MESSAGE_TTL + Duration::from_nanos(1), Duration::MAX] {
        match Client::builder(url).message_ttl(past).build() {
            Err(BuildError::InvalidSetting(text)) => {
                assert!(text.contains("message_ttl"), "{text}");
            }
            other => panic!("{past:?}: {other:?}"),
        }
    }
    build(Client::builder(url).message_ttl(MAX_MESSAGE_TTL)).expect("at the bound");

    // Zero is no TTL: a message held in the queue behind a gated slot is
    // still sent. Zero after a TTL keeps that TTL.
    for (ttl, expires) in [
        (vec![Duration::ZERO], false),
        (vec![SHORT_TTL, Duration::ZERO], true),
    ] {
        let gated = Gated::start();
        let mut builder = one_slot(&gated.server, None);
        for &d in &ttl {
            builder = builder.message_ttl(d);
        }
        let (client, failures) = started(builder);
        client.notify(msg(0)).expect("notify");
        assert!(gated.wait_arrived(1), "{ttl:?}: {:?}", client.stats());
        client.notify(msg(1)).expect("notify");
        thread::sleep(PAST_SHORT_TTL);
        gated.open();
        client.stop();
        let stats = client.stats();
        assert_each_ended(&stats, 2, usize::from(expires));
        assert_eq!(stats.expired, u64::from(expires), "{ttl:?}: {stats:?}");
        if expires {
            assert_outside_requests(&failures.take(), FailureKind::Expired, 0);
            assert_eq!(ids_received(&gated.server), [0], "{ttl:?}");
        } else {
            failures.assert_none();
            assert_eq!(ids_received(&gated.server), [0, 1], "{ttl:?}");
        }
    }
}

// ---------------------------------------------------------- DropOldest

/// A client of one slot and a queue of 3 (4 places: `queue_size +
/// workers`) that drops its oldest queued message when full.
fn dropping(server: &Server, batch: Option<BatchConfig>) -> Builder {
    one_slot(server, batch)
        .queue_size(3)
        .overflow(Overflow::DropOldest)
}

#[test]
fn drop_oldest_hands_the_oldest_queued_messages_to_the_handler_on_a_loop_thread() {
    // Message 0 is held at the server, in the only slot. 1 to 4 fill the
    // queue's four places; each of 5 to 10 is accepted and drops the
    // oldest queued: 1 to 6 in turn, never 0, which is in flight.
    for (mode, batch) in modes() {
        let gated = Gated::start();
        let (client, failures) = started(dropping(&gated.server, batch));
        client.notify(msg(0)).expect("notify");
        assert!(gated.wait_arrived(1), "{mode}: {:?}", client.stats());
        for i in 1..=10 {
            if let Err(e) = client.notify(msg(i)) {
                panic!("{mode}: message {i} refused ({e}): {:?}", client.stats());
            }
        }
        gated.open();
        assert!(client.flush(SOON), "{mode}: {:?}", client.stats());
        client.stop();

        let got = failures.take();
        assert_eq!(failed_ids(&got), [1, 2, 3, 4, 5, 6], "{mode}: {got:?}");
        assert_outside_requests(&got, FailureKind::Dropped, 0);
        let me = thread::current().id();
        for f in &got {
            assert_ne!(f.thread, me, "{mode}: on the caller's thread");
            assert!(
                f.thread_name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("notifier-")),
                "{mode}: not on an event loop: {:?}",
                f.thread_name
            );
        }
        assert_eq!(ids_received(&gated.server), [0, 7, 8, 9, 10], "{mode}");
        let stats = client.stats();
        assert_each_ended(&stats, 11, 6);
        assert_eq!(
            (stats.delivered, stats.dropped),
            (5, 6),
            "{mode}: {stats:?}"
        );
        assert_eq!((stats.rejected, stats.expired), (0, 0), "{mode}: {stats:?}");
    }
}

#[test]
fn dropped_messages_reach_the_handler_while_every_slot_is_busy() {
    // The only slot is held at the server for as long as the test likes
    // (the client's timeout is a minute): a drop must still reach the
    // handler, not wait for the slot's own next event.
    let gated = Gated::start();
    let (client, failures) = started(dropping(&gated.server, None));
    client.notify(msg(0)).expect("notify");
    assert!(gated.wait_arrived(1), "{:?}", client.stats());
    notify_all(&client, 1..6);
    let handed = failures.wait_for(1, SOON);
    let stats = client.stats();
    gated.open();
    client.stop();
    assert!(
        handed,
        "message 1, dropped for message 5, did not reach the handler in {SOON:?} \
         while the slot was busy: {stats:?}"
    );
    let got = failures.take();
    assert_eq!(failed_ids(&got), [1], "{got:?}");
    assert_outside_requests(&got, FailureKind::Dropped, 0);
    assert_each_ended(&client.stats(), 6, 1);
}

#[test]
fn reject_stays_the_default_overflow() {
    assert_eq!(Overflow::default(), Overflow::Reject);
    // One slot held at the server and a queue of 3: the client holds 4
    // (`queue_size + workers`), and refuses the fifth, dropping nothing.
    let gated = Gated::start();
    let (client, failures) = started(one_slot(&gated.server, None).queue_size(3));
    client.notify(msg(0)).expect("notify");
    assert!(gated.wait_arrived(1), "{:?}", client.stats());
    notify_all(&client, 1..4);
    let past = client.notify(msg(4));
    assert!(
        matches!(&past, Err(NotifyError::QueueFull(m)) if m.as_bytes() == msg(4).as_bytes()),
        "{past:?}: {:?}",
        client.stats()
    );
    gated.open();
    client.stop();
    failures.assert_none();
    let stats = client.stats();
    assert_each_ended(&stats, 4, 0);
    assert_eq!((stats.rejected, stats.dropped), (1, 0), "{stats:?}");
    assert_eq!(ids_received(&gated.server), [0, 1, 2, 3]);
}

#[test]
fn a_full_drop_handoff_refuses_with_queue_full_and_loses_nothing() {
    // The only event loop is kept in the error handler (message 0 is
    // answered 500; the handler waits for the test), so nothing leaves
    // the queue or the hand-off. 1 to 4 fill the queue's four places;
    // each of the next DROP_HANDOFF messages drops the oldest queued into
    // the hand-off, which is then full: the next `notify` is refused.
    // Once the handler lets go, every dropped message reaches it, and the
    // four still queued are delivered.
    const QUEUED: usize = 4;
    let server = Server::start(|_, info| {
        if info.total == 0 {
            Action::Reply(response(500, "Oops", &[], b""))
        } else {
            Action::no_content()
        }
    });
    let failures = Failures::new();
    let record = failures.handler();
    let released = Arc::new(AtomicBool::new(false));
    let (entered_tx, entered) = mpsc::channel();
    let handler = {
        let released = Arc::clone(&released);
        move |e: notifier::NotificationError| {
            if e.kind() == FailureKind::Status {
                let _ = entered_tx.send(());
                // Bounded, so that a failing test does not hang its client.
                wait_until(LONG, || released.load(Ordering::SeqCst));
            }
            record(e);
        }
    };
    let client = build(dropping(&server, None).error_handler(handler)).expect("build");
    client.start();
    /// Lets the handler go when the test ends, whichever way.
    struct Release(Arc<AtomicBool>);
    impl Drop for Release {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let release = Release(Arc::clone(&released));

    client.notify(msg(0)).expect("notify");
    entered
        .recv_timeout(SOON)
        .expect("the handler got message 0");
    let last = QUEUED + DROP_HANDOFF;
    for i in 1..=last {
        if let Err(e) = client.notify(msg(i)) {
            panic!("message {i} refused ({e}): {:?}", client.stats());
        }
    }
    let past = client.notify(msg(last + 1));
    let stats = client.stats();
    assert!(
        matches!(&past, Err(NotifyError::QueueFull(_))),
        "{past:?} with the hand-off full: {stats:?}"
    );
    assert_eq!(
        (stats.accepted, stats.rejected),
        (last as u64 + 1, 1),
        "{stats:?}"
    );
    drop(release);
    assert!(client.flush(SOON), "{:?}", client.stats());
    client.stop();

    let got = failures.take();
    assert_eq!(got.len(), 1 + DROP_HANDOFF, "{:?}", client.stats());
    assert_eq!(got[0].error.status_code(), Some(500), "{}", got[0].error);
    assert_eq!(
        failed_ids(&got[1..]),
        (1..=DROP_HANDOFF).collect::<Vec<_>>()
    );
    assert_outside_requests(&got[1..], FailureKind::Dropped, 0);
    let delivered: Vec<usize> = (DROP_HANDOFF + 1..=last).collect();
    assert_eq!(ids_received(&server)[1..], delivered[..]);
    let stats = client.stats();
    assert_each_ended(&stats, last + 1, 1 + DROP_HANDOFF);
    assert_eq!(stats.dropped, DROP_HANDOFF as u64, "{stats:?}");
    assert_eq!(stats.delivered, QUEUED as u64, "{stats:?}");
}

// ------------------------------------------------------ Idempotency-Key

#[test]
fn every_request_carries_its_own_idempotency_key() {
    // Unbatched over four connections, and in batches of exactly 5: one
    // key per request, never two alike, within a client or across two.
    const N: usize = 50;
    let mut all = HashSet::new();
    let mut total = 0;
    for (mode, batch) in [
        ("unbatched", None),
        (
            "batched",
            Some(BatchConfig::ndjson().max_messages(5).linger(FOREVER)),
        ),
    ] {
        let server = Server::no_content();
        let mut builder = Client::builder(&server.url())
            .workers(4)
            .idempotency_key(true);
        if let Some(b) = batch {
            builder = builder.batch(b);
        }
        let (client, failures) = started(builder);
        notify_all(&client, 0..N);
        client.stop();
        failures.assert_none();
        assert_each_ended(&client.stats(), N, 0);
        let requests = server.requests();
        let want = if mode == "batched" { N / 5 } else { N };
        assert_eq!(requests.len(), want, "{mode}");
        let mut received = ids_received(&server);
        received.sort_unstable();
        assert_eq!(received, (0..N).collect::<Vec<_>>(), "{mode}");
        for r in &requests {
            all.insert(key_of(r));
        }
        total += requests.len();
        assert_eq!(all.len(), total, "{mode}: a key repeated");
    }
}

#[test]
fn a_retry_carries_the_same_idempotency_key() {
    // The first request is answered 503, its retry 204; the next
    // message's request has a key of its own.
    for (mode, batch) in modes() {
        let server = Server::start(|_, info| {
            if info.total == 0 {
                Action::Reply(response(503, "Unavailable", &[], b""))
            } else {
                Action::no_content()
            }
        });
        let (client, failures) = started(
            one_slot(&server, batch)
                .retry(quick_retry(3))
                .idempotency_key(true),
        );
        client.notify(msg(0)).expect("notify");
        assert!(client.flush(SOON), "{mode}: {:?}", client.stats());
        client.notify(msg(1)).expect("notify");
        client.stop();
        failures.assert_none();
        let stats = client.stats();
        assert_each_ended(&stats, 2, 0);
        assert_eq!(stats.retried, 1, "{mode}: {stats:?}");
        let requests = server.requests();
        assert_eq!(ids_received(&server), [0, 0, 1], "{mode}");
        let keys: Vec<String> = requests.iter().map(key_of).collect();
        assert_eq!(keys[0], keys[1], "{mode}: the retry's key changed");
        assert_ne!(keys[1], keys[2], "{mode}: two requests, one key");
    }
}

#[test]
fn an_automatic_resend_carries_the_same_idempotency_key() {
    // Every connection's second request is answered 408 and closed: the
    // server's goodbye to a connection it found idle, the request never
    // read. Each is sent again on a new connection, the same request.
    const GOODBYE_408: &[u8] =
        b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    for (mode, batch) in modes() {
        let server = Server::start(|_, info| {
            if info.nth == 0 {
                Action::no_content()
            } else {
                Action::ReplyAndClose(GOODBYE_408.to_vec())
            }
        });
        let (client, failures) = started(
            one_slot(&server, batch)
                .idle_timeout(LONG)
                .idempotency_key(true),
        );
        for i in 0..3 {
            client.notify(msg(i)).expect("notify");
            assert!(client.flush(SOON), "{mode}: {:?}", client.stats());
        }
        client.stop();
        failures.assert_none();
        let stats = client.stats();
        assert_each_ended(&stats, 3, 0);
        assert_eq!(stats.retried, 0, "{mode}: {stats:?}");
        let requests = server.requests();
        assert_eq!(ids_received(&server), [0, 1, 1, 2, 2], "{mode}");
        let conns: Vec<usize> = requests.iter().map(|r| r.conn).collect();
        assert_eq!(conns, [0, 0, 1, 1, 2], "{mode}");
        let keys: Vec<String> = requests.iter().map(key_of).collect();
        assert_eq!(keys[1], keys[2], "{mode}: the re-send's key changed");
        assert_eq!(keys[3], keys[4], "{mode}: the re-send's key changed");
        let distinct: HashSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), 3, "{mode}: {keys:?}");
    }
}

#[test]
fn no_idempotency_key_by_default() {
    for (mode, batch) in modes() {
        let server = Server::no_content();
        let (client, failures) = started(one_slot(&server, batch));
        notify_all(&client, 0..3);
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        assert!(!requests.is_empty(), "{mode}");
        for r in &requests {
            assert_eq!(r.header_count("Idempotency-Key"), 0, "{mode}: {r:?}");
        }
    }
    // And `false` after `true` turns them off again.
    let server = Server::no_content();
    let (client, failures) = started(
        one_slot(&server, None)
            .idempotency_key(true)
            .idempotency_key(false),
    );
    client.notify(msg(0)).expect("notify");
    client.stop();
    failures.assert_none();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header_count("Idempotency-Key"),
        0,
        "{requests:?}"
    );
}

#[test]
fn a_callers_idempotency_key_is_refused_when_keys_are_on_and_sent_when_off() {
    let server = Server::no_content();
    for name in ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY"] {
        for keys_first in [true, false] {
            let b = Client::builder(&server.url());
            let b = if keys_first {
                b.idempotency_key(true).header(name, "\"mine\"")
            } else {
                b.header(name, "\"mine\"").idempotency_key(true)
            };
            match b.build() {
                Err(BuildError::InvalidHeader(text)) => {
                    assert!(text.contains(name), "{name}: {text}");
                }
                other => panic!("{name}: {other:?}"),
            }
        }
    }
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(1)
            .header("Idempotency-Key", "\"mine\""),
    );
    client.notify(msg(0)).expect("notify");
    client.stop();
    failures.assert_none();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].header("Idempotency-Key"), Some("\"mine\""));
    assert_eq!(requests[0].header_count("Idempotency-Key"), 1);
}
