//! Batching: many messages in one request body, framed, in queue order;
//! the batch as the unit of attempt, retry, breaker accounting and
//! timeout; the client's bound with batches held outside the queue.
//!
//! Most tests make their batches deterministic with [`exactly`]: a linger
//! no test waits out and a `max_messages` of the batch's size, so a batch
//! goes when it is full (or when `flush` or `stop` cuts its linger short),
//! whatever the timing. Where a test needs batches to fill by themselves
//! under load, a [`Gated`] server holds the first request unanswered while
//! the rest queue up behind it.

use std::thread;
use std::time::Duration;

use notifier::{
    BatchConfig, Builder, CircuitBreakerConfig, CircuitState, Client, FailureKind, NotifyError,
};

use crate::support::tls::TlsServer;
use crate::support::{
    assert_balanced, assert_each_body_once, assert_each_ended, id_of, msg, notify_all, quick_retry,
    response, started, wait_until, Action, Failure, Gated, Request, Server,
};

const LONG: Duration = Duration::from_secs(60);

/// The bound of every wait for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// A linger no test waits out: only a full batch, `flush` or `stop` sends.
const FOREVER: Duration = Duration::from_secs(30);

/// The default content type, which framings without their own keep.
const DEFAULT_TYPE: &str = "text/plain; charset=utf-8";

/// `b` sending batches of exactly `n` messages: a batch goes when full,
/// or when `flush` or `stop` cuts its linger short.
fn exactly(b: BatchConfig, n: usize) -> BatchConfig {
    b.max_messages(n).linger(FOREVER)
}

/// The messages of an NDJSON body, in order.
fn lines(body: &[u8]) -> Vec<&[u8]> {
    assert_eq!(body.last(), Some(&b'\n'), "each line ends with a newline");
    body[..body.len() - 1].split(|&b| b == b'\n').collect()
}

/// The messages of a JSON-array body of messages without commas, in order.
fn items(body: &[u8]) -> Vec<&[u8]> {
    let inner = body
        .strip_prefix(b"[")
        .and_then(|b| b.strip_suffix(b"]"))
        .unwrap_or_else(|| panic!("not an array: {:?}", body.escape_ascii().to_string()));
    inner.split(|&b| b == b',').collect()
}

/// The ids of each request's NDJSON messages, request by request.
fn ndjson_ids(requests: &[Request]) -> Vec<Vec<usize>> {
    requests
        .iter()
        .map(|r| lines(&r.body).into_iter().map(id_of).collect())
        .collect()
}

/// A one-slot client of `server` batching as `b`.
fn one_slot(server: &Server, b: BatchConfig) -> Builder {
    Client::builder(&server.url()).workers(1).batch(b)
}

/// Checks that `failures` are one failed batch of `n` messages, ids `first`
/// on, each with its index in order, the batch's length, `kind`, `status`
/// and `attempts`.
fn assert_failed_batch(
    failures: &[Failure],
    first: usize,
    n: usize,
    kind: FailureKind,
    status: Option<u16>,
    attempts: u32,
) {
    assert_eq!(failures.len(), n, "{failures:?}");
    for (i, f) in failures.iter().enumerate() {
        let e = &f.error;
        assert_eq!(e.message(), msg(first + i).as_bytes(), "{e}");
        assert_eq!(e.batch_index(), Some(i), "{e}");
        assert_eq!(e.batch_len(), Some(n), "{e}");
        assert_eq!(e.kind(), kind, "{e}");
        assert_eq!(e.status_code(), status, "{e}");
        assert_eq!(e.attempts(), attempts, "{e}");
    }
}

// ------------------------------------------------------------ framing

/// A framing and what it makes of [`M3`].
struct Framed {
    name: &'static str,
    config: BatchConfig,
    /// The body of `M3`.
    three: &'static [u8],
    /// The body of `M3[0]` alone.
    one: &'static [u8],
    /// Its content type; `None`: the client's.
    content_type: Option<&'static str>,
}

/// Each framing, and what it makes of [`M3`].
fn framings() -> Vec<Framed> {
    vec![
        Framed {
            name: "ndjson",
            config: BatchConfig::ndjson(),
            three: b"{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n",
            one: b"{\"n\":1}\n",
            content_type: Some("application/x-ndjson"),
        },
        Framed {
            name: "json_array",
            config: BatchConfig::json_array(),
            three: b"[{\"n\":1},{\"n\":2},{\"n\":3}]",
            one: b"[{\"n\":1}]",
            content_type: Some("application/json"),
        },
        Framed {
            name: "concatenated",
            config: BatchConfig::concatenated(),
            three: b"{\"n\":1}{\"n\":2}{\"n\":3}",
            one: b"{\"n\":1}",
            content_type: None,
        },
        Framed {
            name: "custom",
            config: BatchConfig::custom(b"<<", b"||", b">>\r\n"),
            three: b"<<{\"n\":1}||{\"n\":2}||{\"n\":3}>>\r\n",
            one: b"<<{\"n\":1}>>\r\n",
            content_type: None,
        },
    ]
}

const M3: [&str; 3] = ["{\"n\":1}", "{\"n\":2}", "{\"n\":3}"];

#[test]
fn each_framing_sends_its_exact_body_and_content_type() {
    for Framed {
        name,
        config: framing,
        three,
        one,
        content_type,
    } in framings()
    {
        let want_type = content_type.unwrap_or(DEFAULT_TYPE);
        let server = Server::no_content();

        // A full batch of three, then a batch of one cut short by flush.
        let (client, failures) = started(one_slot(&server, exactly(framing.clone(), 3)));
        for m in M3 {
            client.notify(m).expect("notify");
        }
        assert!(server.wait_for_requests(1, SOON), "{name}: the full batch");
        client.notify(M3[0]).expect("notify");
        assert!(client.flush(SOON), "{name}: {:?}", client.stats());
        client.stop();
        failures.assert_none();
        assert_each_ended(&client.stats(), 4, 0);

        // A batch of one with linger zero, no flush.
        let (client, failures) = started(one_slot(&server, framing));
        client.notify(M3[0]).expect("notify");
        assert!(server.wait_for_requests(3, SOON), "{name}: linger zero");
        client.stop();
        failures.assert_none();

        let requests = server.requests();
        let bodies: Vec<&[u8]> = requests.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(
            bodies,
            [three, one, one],
            "{name}: {:?}",
            bodies
                .iter()
                .map(|b| b.escape_ascii().to_string())
                .collect::<Vec<_>>()
        );
        for r in &requests {
            assert_eq!(r.header("Content-Type"), Some(want_type), "{name}");
            assert_eq!(r.header_count("Content-Type"), 1, "{name}");
            let length = r.body.len().to_string();
            assert_eq!(r.header("Content-Length"), Some(length.as_str()), "{name}");
        }
    }
}

#[test]
fn a_content_type_set_on_the_builder_wins_over_the_framing() {
    const SET: &str = "application/vnd.example+json; v=2";
    for Framed {
        name,
        config: framing,
        three,
        ..
    } in framings()
    {
        let server = Server::no_content();
        let (client, failures) = started(one_slot(&server, exactly(framing, 3)).content_type(SET));
        for m in M3 {
            client.notify(m).expect("notify");
        }
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{name}");
        assert_eq!(requests[0].body, three, "{name}");
        assert_eq!(requests[0].header("Content-Type"), Some(SET), "{name}");
        assert_eq!(requests[0].header_count("Content-Type"), 1, "{name}");
    }
}

#[test]
fn messages_are_opaque_bytes() {
    // Nothing is validated as JSON, and a message holding the framing's
    // own bytes (a newline in an NDJSON line, a comma or a bracket in an
    // array's element) goes as it is.
    let binary: &[u8] = &[0, 0xff, 0xfe, b'\n', 0x80, 0];
    let ndjson: [&[u8]; 4] = [binary, b"not json {", b"a\nb", b""];
    let array: [&[u8]; 4] = [b"1,2", b"]", b"[\"\xc3\x28", binary];
    let ndjson_body = [binary, b"\nnot json {\na\nb\n\n"].concat();
    let array_body = [&b"[1,2,],[\"\xc3\x28,"[..], binary, b"]"].concat();
    for (framing, messages, want) in [
        (BatchConfig::ndjson(), ndjson, ndjson_body),
        (BatchConfig::json_array(), array, array_body),
    ] {
        let server = Server::no_content();
        let (client, failures) = started(one_slot(&server, exactly(framing, 4)));
        for m in messages {
            client.notify(m.to_vec()).expect("notify");
        }
        client.stop();
        failures.assert_none();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(
            requests[0].body.escape_ascii().to_string(),
            want.escape_ascii().to_string()
        );
        assert_eq!(client.stats().delivered, 4);
    }
}

/// 300 messages of 0 to 7,475 bytes, some empty, 942 KB in all (under the
/// default 1 MiB bound): a body of more slices than one vectored write
/// takes, and of many TLS records.
fn assorted() -> Vec<Vec<u8>> {
    (0..300)
        .map(|i| {
            if i % 7 == 0 {
                Vec::new()
            } else {
                format!("<{i}>").repeat(i * 5 % 1_500).into_bytes()
            }
        })
        .collect()
}

#[test]
fn a_large_batch_is_written_whole_over_plain_tcp_and_tls() {
    let messages = assorted();
    let array = [&b"["[..], &messages.join(&b","[..]), &b"]"[..]].concat();
    let back_to_back = messages.concat();
    let tls_server = TlsServer::no_content();
    let plain_server = Server::no_content();
    for (name, server, tls) in [
        ("http", &plain_server, false),
        ("https", &*tls_server, true),
    ] {
        for (framing, want) in [
            (BatchConfig::json_array(), &array),
            (BatchConfig::concatenated(), &back_to_back),
        ] {
            let before = server.request_count();
            let mut builder = one_slot(server, exactly(framing, messages.len()));
            if tls {
                builder = builder.tls_config(tls_server.client_config());
            }
            let (client, failures) = started(builder);
            for m in &messages {
                client.notify(m.clone()).expect("notify");
            }
            client.stop();
            failures.assert_none();
            let requests = server.requests();
            assert_eq!(requests.len(), before + 1, "{name}");
            assert!(
                requests[before].body == *want,
                "{name}: a body of {} bytes, not the {} expected",
                requests[before].body.len(),
                want.len()
            );
            assert_each_ended(&client.stats(), messages.len(), 0);
        }
    }
}

// ---------------------------------------------------------- gathering

#[test]
fn batches_keep_queue_order() {
    // One slot, so one request at a time: the bodies' messages, request
    // after request, are the queue's order.
    const N: usize = 3_000;
    let server = Server::no_content();
    let (client, failures) = started(one_slot(&server, BatchConfig::ndjson().max_messages(50)));
    notify_all(&client, 0..N);
    client.stop();
    failures.assert_none();
    let ids: Vec<usize> = ndjson_ids(&server.requests()).concat();
    assert_eq!(ids, (0..N).collect::<Vec<_>>());
    assert!(
        server.request_count() >= N / 50,
        "{}",
        server.request_count()
    );
    assert_each_ended(&client.stats(), N, 0);
}

#[test]
fn no_batch_holds_more_than_max_messages_and_queued_messages_fill_them() {
    // The first request is held at the server while the other messages
    // queue up behind it; once it is answered, every batch but the last
    // finds 7 or more queued and takes exactly 7.
    const N: usize = 100;
    const MAX: usize = 7;
    let gated = Gated::start();
    let (client, failures) = started(one_slot(
        &gated.server,
        BatchConfig::ndjson().max_messages(MAX),
    ));
    notify_all(&client, 0..N);
    assert!(gated.wait_arrived(1), "{:?}", client.stats());
    gated.open();
    client.stop();
    failures.assert_none();

    let batches = ndjson_ids(&gated.server.requests());
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert!(sizes.iter().all(|&n| (1..=MAX).contains(&n)), "{sizes:?}");
    let middle = &sizes[1..sizes.len() - 1];
    assert!(middle.iter().all(|&n| n == MAX), "{sizes:?}");
    assert_eq!(batches.concat(), (0..N).collect::<Vec<_>>());
    let stats = client.stats();
    assert_each_ended(&stats, N, 0);
    assert_eq!(stats.requests, batches.len() as u64, "{stats:?}");
}

/// `msg(i)` padded with zeros to 9 bytes: `id=000012`.
fn msg9(i: usize) -> String {
    format!("id={i:06}")
}

#[test]
fn no_body_is_larger_than_max_bytes_framing_included() {
    // JSON-array batches of 9-byte messages are 10 k + 1 bytes: 41 bytes,
    // the bound, hold 4; a fifth would make 51. The first request is held
    // while the rest queue up, so the batches after it are full.
    const N: usize = 60;
    const MAX_BYTES: usize = 41;
    let gated = Gated::start();
    let (client, failures) = started(one_slot(
        &gated.server,
        BatchConfig::json_array().max_bytes(MAX_BYTES),
    ));
    for i in 0..N {
        client.notify(msg9(i)).expect("notify");
    }
    assert!(gated.wait_arrived(1), "{:?}", client.stats());
    gated.open();
    client.stop();
    failures.assert_none();

    let requests = gated.server.requests();
    for r in &requests {
        assert!(
            r.body.len() <= MAX_BYTES,
            "a body of {} bytes: {:?}",
            r.body.len(),
            r.body.escape_ascii().to_string()
        );
    }
    let batches: Vec<Vec<usize>> = requests
        .iter()
        .map(|r| items(&r.body).into_iter().map(id_of).collect())
        .collect();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    assert!(
        sizes[1..sizes.len() - 1].iter().all(|&n| n == 4),
        "batches are not as full as the bound allows: {sizes:?}"
    );
    assert_eq!(batches.concat(), (0..N).collect::<Vec<_>>());
    assert_each_ended(&client.stats(), N, 0);
}

#[test]
fn a_message_larger_than_max_bytes_goes_alone_and_intact() {
    // Message 10 is 303 bytes against a 41-byte bound; the ones around it
    // are 9 bytes. The first request is held while the rest queue up, so
    // the big one meets a batch it does not fit and one it starts.
    const N: usize = 20;
    const BIG: usize = 10;
    const MAX_BYTES: usize = 41;
    let big = format!("id={BIG:0>300}");
    let gated = Gated::start();
    let (client, failures) = started(one_slot(
        &gated.server,
        BatchConfig::json_array().max_bytes(MAX_BYTES),
    ));
    for i in 0..N {
        let m = if i == BIG { big.clone() } else { msg9(i) };
        client.notify(m).expect("notify");
    }
    assert!(gated.wait_arrived(1), "{:?}", client.stats());
    gated.open();
    client.stop();
    failures.assert_none();

    let requests = gated.server.requests();
    let alone: Vec<&Request> = requests
        .iter()
        .filter(|r| r.body.len() > MAX_BYTES)
        .collect();
    assert_eq!(alone.len(), 1, "{requests:?}");
    assert_eq!(alone[0].body, format!("[{big}]").into_bytes());
    let batches: Vec<Vec<usize>> = requests
        .iter()
        .map(|r| items(&r.body).into_iter().map(id_of).collect())
        .collect();
    assert_eq!(batches.concat(), (0..N).collect::<Vec<_>>());
    assert_each_ended(&client.stats(), N, 0);

    // Alone from the start too: the first message of a batch always fits.
    let server = Server::no_content();
    let (client, failures) = started(one_slot(
        &server,
        BatchConfig::ndjson().max_bytes(MAX_BYTES),
    ));
    client.notify(big.clone()).expect("notify");
    client.stop();
    failures.assert_none();
    assert_eq!(server.requests()[0].body, format!("{big}\n").into_bytes());
}

// -------------------------------------------------------------- linger

#[test]
fn with_linger_zero_a_lone_message_goes_at_once() {
    // Room for 500 in the batch, but nothing else queued: it goes now, a
    // batch of one, without a flush.
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).batch(BatchConfig::ndjson()));
    client.notify(msg(0)).expect("notify");
    assert!(
        server.wait_for_requests(1, SOON),
        "the message waited for company: {:?}",
        client.stats()
    );
    assert_eq!(server.requests()[0].body, b"id=0\n");
    client.stop();
    failures.assert_none();
    assert_eq!(client.stats().requests, 1);
}

#[test]
fn flush_cuts_a_linger_short() {
    let server = Server::no_content();
    let (client, failures) = started(one_slot(&server, BatchConfig::ndjson().linger(FOREVER)));
    notify_all(&client, 0..3);
    assert_eq!(server.request_count(), 0, "the batch did not linger");
    assert!(
        client.flush(SOON),
        "flush waited for the linger: {:?}",
        client.stats()
    );
    assert_eq!(ndjson_ids(&server.requests()), [vec![0, 1, 2]]);
    // And the next batch lingers again until the next flush.
    notify_all(&client, 3..5);
    assert_eq!(server.request_count(), 1, "the next batch did not linger");
    assert!(client.flush(SOON), "{:?}", client.stats());
    client.stop();
    failures.assert_none();
    assert_eq!(ndjson_ids(&server.requests()), [vec![0, 1, 2], vec![3, 4]]);
    assert_each_ended(&client.stats(), 5, 0);
}

#[test]
fn stop_cuts_a_linger_short() {
    let server = Server::no_content();
    let (client, failures) = started(one_slot(&server, BatchConfig::ndjson().linger(FOREVER)));
    notify_all(&client, 0..3);
    assert_eq!(server.request_count(), 0, "the batch did not linger");
    thread::scope(|s| {
        s.spawn(|| client.stop());
        // Without the cut, the batch would wait out its 30 s linger.
        assert!(
            server.wait_for_requests(1, SOON),
            "stop waited for the linger: {:?}",
            client.stats()
        );
    });
    failures.assert_none();
    assert_eq!(ndjson_ids(&server.requests()), [vec![0, 1, 2]]);
    assert_each_ended(&client.stats(), 3, 0);
}

#[test]
fn messages_notified_back_to_back_within_a_linger_share_one_request() {
    // The batch waits up to 1 s from its first message for more; three
    // notifies take microseconds. Each event loop gathers one lingering
    // batch at a time, so with several loops a window's messages may be
    // split between them; with one they all share its batch.
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .threads(1)
            .batch(BatchConfig::ndjson().linger(Duration::from_secs(1))),
    );
    notify_all(&client, 0..3);
    assert!(server.wait_for_requests(1, SOON), "{:?}", client.stats());
    let first = ndjson_ids(&server.requests());
    client.stop();
    failures.assert_none();
    assert_eq!(first, [vec![0, 1, 2]], "the messages did not share a batch");
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_failed_batch_hands_every_message_to_the_handler_with_its_index() {
    let server = Server::always(Action::Reply(response(500, "Oops", &[], b"no")));
    let (client, failures) = started(one_slot(&server, exactly(BatchConfig::ndjson(), 4)));
    notify_all(&client, 0..4);
    assert!(failures.wait_for(4, SOON), "{:?}", client.stats());
    client.stop();

    assert_failed_batch(&failures.take(), 0, 4, FailureKind::Status, Some(500), 1);
    let stats = client.stats();
    assert_each_ended(&stats, 4, 4);
    assert_eq!(server.request_count(), 1);
    assert_eq!(stats.requests, 1, "{stats:?}");
}

#[test]
fn a_retried_batch_is_sent_again_whole_with_the_same_bytes() {
    let server = Server::always(Action::Reply(response(500, "Oops", &[], b"no")));
    let (client, failures) =
        started(one_slot(&server, exactly(BatchConfig::json_array(), 4)).retry(quick_retry(3)));
    notify_all(&client, 0..4);
    assert!(failures.wait_for(4, SOON), "{:?}", client.stats());
    client.stop();

    assert_failed_batch(&failures.take(), 0, 4, FailureKind::Status, Some(500), 3);
    let requests = server.requests();
    assert_eq!(requests.len(), 3, "one attempt per request");
    assert_eq!(requests[0].body, b"[id=0,id=1,id=2,id=3]");
    for r in &requests[1..] {
        assert_eq!(r.body, requests[0].body, "a retry changed the body");
        assert_eq!(r.header("Content-Length"), Some("21"));
    }
    let stats = client.stats();
    assert_each_ended(&stats, 4, 4);
    assert_eq!(stats.retried, 2 * 4, "a retried batch counts its messages");
    assert_eq!(stats.requests, requests.len() as u64, "{stats:?}");
}

#[test]
fn delivered_and_failed_count_messages_not_requests() {
    // The first batch is answered 500, the second 204.
    let server = Server::start(|_, info| {
        if info.total == 0 {
            Action::Reply(response(500, "Oops", &[], b""))
        } else {
            Action::no_content()
        }
    });
    let (client, failures) = started(one_slot(&server, exactly(BatchConfig::ndjson(), 4)));
    notify_all(&client, 0..4);
    assert!(failures.wait_for(4, SOON), "{:?}", client.stats());
    notify_all(&client, 4..8);
    assert!(client.flush(SOON), "{:?}", client.stats());
    client.stop();

    assert_failed_batch(&failures.take(), 0, 4, FailureKind::Status, Some(500), 1);
    let stats = client.stats();
    assert_each_ended(&stats, 8, 4);
    assert_eq!(stats.delivered, 4, "{stats:?}");
    assert_eq!(stats.requests, 2, "{stats:?}");
    assert_eq!(server.request_count(), 2);
    assert_eq!(
        ndjson_ids(&server.requests()),
        [vec![0, 1, 2, 3], vec![4, 5, 6, 7]]
    );
}

#[test]
fn batch_index_and_len_are_none_without_batching() {
    let server = Server::always(Action::Reply(response(500, "Oops", &[], b"")));
    let (client, failures) = started(Client::builder(&server.url()));
    client.notify(msg(0)).expect("notify");
    client.stop();
    let failed = failures.take();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].error.batch_index(), None, "{}", failed[0].error);
    assert_eq!(failed[0].error.batch_len(), None, "{}", failed[0].error);

    // With batching on, a batch of one says so.
    let (client, failures) = started(Client::builder(&server.url()).batch(BatchConfig::ndjson()));
    client.notify(msg(1)).expect("notify");
    client.stop();
    assert_failed_batch(&failures.take(), 1, 1, FailureKind::Status, Some(500), 1);
}

#[test]
fn the_timeout_is_per_batch() {
    let server = Server::stalled();
    let (client, failures) = started(
        one_slot(&server, exactly(BatchConfig::ndjson(), 4)).timeout(Duration::from_millis(300)),
    );
    notify_all(&client, 0..4);
    assert!(failures.wait_for(4, SOON), "{:?}", client.stats());
    client.stop();

    assert_failed_batch(&failures.take(), 0, 4, FailureKind::Timeout, None, 1);
    assert_eq!(ndjson_ids(&server.requests()), [vec![0, 1, 2, 3]]);
    let stats = client.stats();
    assert_each_ended(&stats, 4, 4);
    // Written, whatever came of it.
    assert_eq!(stats.requests, 1, "{stats:?}");
}

#[test]
fn the_breaker_counts_a_failed_batch_once() {
    // Threshold 2, batches of 5: the first failed batch leaves the
    // circuit closed (one failure, not five), the second opens it, and the
    // third is refused without reaching the server.
    let server = Server::always(Action::Reply(response(500, "Oops", &[], b"")));
    let breaker = CircuitBreakerConfig::default()
        .failure_threshold(2)
        .reset_timeout(LONG);
    let (client, failures) =
        started(one_slot(&server, exactly(BatchConfig::ndjson(), 5)).circuit_breaker(breaker));
    notify_all(&client, 0..5);
    assert!(failures.wait_for(5, SOON), "{:?}", client.stats());
    assert_eq!(
        client.stats().circuit,
        CircuitState::Closed,
        "one failed batch counted as several failures"
    );
    notify_all(&client, 5..10);
    assert!(failures.wait_for(10, SOON), "{:?}", client.stats());
    assert_eq!(client.stats().circuit, CircuitState::Open);
    notify_all(&client, 10..15);
    assert!(failures.wait_for(15, SOON), "{:?}", client.stats());
    client.stop();

    let got = failures.take();
    assert_failed_batch(&got[..5], 0, 5, FailureKind::Status, Some(500), 1);
    assert_failed_batch(&got[5..10], 5, 5, FailureKind::Status, Some(500), 1);
    assert_failed_batch(&got[10..], 10, 5, FailureKind::CircuitOpen, None, 1);
    assert_eq!(server.request_count(), 2);
    let stats = client.stats();
    assert_each_ended(&stats, 15, 15);
    assert_eq!(stats.requests, 2, "{stats:?}");
}

// -------------------------------------------------------------- bounds

#[test]
fn the_client_holds_queue_size_plus_workers_times_max_messages() {
    // A gated server holds every request. Each of the 3 slots takes a full
    // batch of 5 (the linger waits for it to fill), and 10 more wait in
    // the queue: 25 = 10 + 3 × 5 accepted, the 26th refused.
    const W: usize = 3;
    const Q: usize = 10;
    const M: usize = 5;
    let gated = Gated::start();
    let (client, failures) = started(
        Client::builder(&gated.server.url())
            .workers(W)
            .queue_size(Q)
            .timeout(LONG)
            .batch(exactly(BatchConfig::ndjson(), M)),
    );
    for i in 0..W * M {
        client.notify(msg(i)).expect("notify");
        // Taken into a batch before the next, so the queue's own ring
        // (queue_size + workers places) never limits this phase.
        assert!(
            wait_until(SOON, || client.stats().queued == 0),
            "message {i} stayed queued: {:?}",
            client.stats()
        );
    }
    assert!(gated.wait_arrived(W), "{:?}", client.stats());
    for i in W * M..W * M + Q {
        if let Err(e) = client.notify(msg(i)) {
            panic!(
                "message {i} refused ({e}) below the bound: {:?}",
                client.stats()
            );
        }
    }
    let past = client.notify(msg(W * M + Q));
    assert!(
        matches!(past, Err(NotifyError::QueueFull(_))),
        "past the bound: {past:?}, {:?}",
        client.stats()
    );
    let stats = client.stats();
    assert_eq!(stats.accepted, (Q + W * M) as u64, "{stats:?}");
    assert_eq!((stats.queued, stats.in_flight), (Q, W * M), "{stats:?}");
    assert_eq!(stats.rejected, 1, "{stats:?}");

    gated.open();
    client.stop();
    failures.assert_none();
    assert_each_ended(&client.stats(), Q + W * M, 0);
    let requests = gated.server.requests();
    assert_each_body_once(requests.iter().flat_map(|r| lines(&r.body)), Q + W * M);
}

#[test]
fn with_linger_zero_the_client_holds_no_more_than_the_bound() {
    // Linger zero: the slots take what is queued when they are free, one
    // message or a few, so the bound may not be reached; it is never
    // passed, `notify` refuses past what the client holds, and nothing
    // accepted is lost.
    const W: usize = 2;
    const Q: usize = 10;
    const M: usize = 5;
    let gated = Gated::start();
    let (client, failures) = started(
        Client::builder(&gated.server.url())
            .workers(W)
            .queue_size(Q)
            .timeout(LONG)
            .batch(BatchConfig::ndjson().max_messages(M)),
    );
    let mut sent = 0;
    // Until every slot holds a batch at the server.
    let busy = wait_until(SOON, || {
        if gated.arrived() >= W {
            return true;
        }
        match client.notify(msg(sent)) {
            Ok(()) => sent += 1,
            Err(NotifyError::QueueFull(_)) => {}
            Err(e) => panic!("{e}"),
        }
        false
    });
    assert!(busy, "{:?}", client.stats());
    // Nothing leaves the queue now: fill it.
    let mut refused = None;
    for _ in 0..=Q + W * M {
        match client.notify(msg(sent)) {
            Ok(()) => sent += 1,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        matches!(refused, Some(NotifyError::QueueFull(_))),
        "{refused:?} after {sent}: {:?}",
        client.stats()
    );
    let stats = client.stats();
    eprintln!(
        "linger zero, bound {}: held {sent} ({} in the slots, {} queued)",
        Q + W * M,
        stats.in_flight,
        stats.queued
    );
    assert!(sent <= Q + W * M, "{sent} held: {stats:?}");
    assert!(sent >= Q + W, "{sent} held: {stats:?}");
    assert_eq!(stats.accepted, sent as u64, "{stats:?}");
    assert_eq!(stats.queued + stats.in_flight, sent, "{stats:?}");

    gated.open();
    client.stop();
    failures.assert_none();
    assert_each_ended(&client.stats(), sent, 0);
    let requests = gated.server.requests();
    assert_each_body_once(requests.iter().flat_map(|r| lines(&r.body)), sent);
    assert!(requests.iter().all(|r| lines(&r.body).len() <= M));
}

// ---------------------------------------------------------------- load

#[test]
fn ten_thousand_messages_arrive_once_in_ndjson_batches() {
    const N: usize = 10_000;
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).batch(BatchConfig::ndjson()));
    notify_all(&client, 0..N);
    client.stop();
    failures.assert_none();
    let requests = server.requests();
    for r in &requests {
        assert_eq!(r.header("Content-Type"), Some("application/x-ndjson"));
    }
    let stats = client.stats();
    assert_eq!(stats.delivered, N as u64, "{stats:?}");
    assert_eq!(stats.requests, requests.len() as u64, "{stats:?}");
    assert!(
        stats.requests < N as u64,
        "no batch held two messages: {stats:?}"
    );
    assert_each_body_once(requests.iter().flat_map(|r| lines(&r.body)), N);
    assert_balanced(&stats);
}
