//! Heap allocations per delivered message, counted by a global allocator.
//!
//! The count covers the client's event loops and the notifying thread; the
//! test server's threads are left out. Messages are allocated before the
//! counted window, so what remains is what the client itself allocates:
//! over plain HTTP and HTTPS one message per request, and with batching
//! (NDJSON and JSON-array bodies written from the messages' own buffers;
//! over HTTPS too, where rustls allocates per record, not per message);
//! and with a message TTL and idempotency keys on, alone and batched (each
//! message's expiry kept beside it in its recycled job, each key written
//! from the stack).

// A global allocator is an `unsafe impl`; this test binary needs one.
#![allow(unsafe_code)]

mod support;

use std::time::Duration;

use notifier::{BatchConfig, Builder, Client, Message, Stats};
use support::tls::TlsServer;
use support::{notify_retrying, Server};

// The counting allocator `benches/compare` uses; this test needs neither
// its phases nor `uncounted`.
#[allow(dead_code)]
#[path = "../benches/common/alloc.rs"]
mod alloc;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const WARM_UP: usize = 5_000;
const MESSAGES: usize = 10_000;
/// For batches: enough of them (a few hundred) that a cost per batch would
/// show above the growth of their buffers.
const BATCHED_MESSAGES: usize = 100_000;
const LONG: Duration = Duration::from_secs(60);

/// Allocations the client made while delivering `n` 64-byte messages,
/// after a warm-up that opened its connections (and, with batching, grew
/// its batches' buffers); and its stats once stopped.
fn allocations_for(builder: Builder, n: usize) -> (u64, Stats) {
    let client: Client = builder.build().expect("build");
    client.start();
    for _ in 0..WARM_UP {
        notify_retrying(&client, vec![b'w'; 64]);
    }
    assert!(client.flush(LONG));
    let messages: Vec<Message> = (0..n).map(|_| Message::from(vec![b'm'; 64])).collect();

    let before = alloc::total();
    for m in messages {
        notify_retrying(&client, m);
    }
    assert!(client.flush(LONG));
    let allocations = alloc::total() - before;

    client.stop();
    let stats = client.stats();
    assert_eq!(stats.delivered, (WARM_UP + n) as u64, "{stats:?}");
    (allocations, stats)
}

/// One test, so the measurements never overlap in the shared counter.
#[test]
fn allocations_per_message_over_http_and_https_and_in_batches() {
    assert!(
        support::SERVER_THREAD_START
            .set(alloc::exclude_this_thread)
            .is_ok(),
        "hook already set"
    );
    alloc::enable();
    let per = |n: u64| n as f64 / MESSAGES as f64;

    let server = Server::no_content();
    let (http, _) = allocations_for(Client::builder(&server.url()), MESSAGES);

    // A TTL (never reached) and a key per request, one message a request.
    let server = Server::no_content();
    let builder = Client::builder(&server.url())
        .message_ttl(Duration::from_secs(3_600))
        .idempotency_key(true);
    let (ttl_and_keys, stats) = allocations_for(builder, MESSAGES);
    assert_eq!(stats.expired, 0, "{stats:?}");

    let tls_server = TlsServer::no_content();
    let (https, _) = allocations_for(
        Client::builder(&tls_server.url()).tls_config(tls_server.client_config()),
        MESSAGES,
    );

    eprintln!(
        "allocations for {MESSAGES} messages: http {http} ({:.3}/msg), https {https} ({:.3}/msg), \
         with a TTL and keys {ttl_and_keys} ({:.3}/msg)",
        per(http),
        per(https),
        per(ttl_and_keys)
    );
    // A handful at most (a flush waiter's registration), none per message.
    for (name, n) in [("plain HTTP", http), ("a TTL and keys", ttl_and_keys)] {
        assert!(
            n <= 16,
            "{name}: allocated {n} times for {MESSAGES} messages"
        );
    }
    // rustls 0.23 allocates once per record it seals (the ring encrypter's
    // output buffer, `PrefixedPayload::with_capacity` under
    // `RecordLayer::encrypt_outgoing`) and once per record it opens (the
    // plaintext's copy, `Payload::into_vec` in `take_received_plaintext`):
    // two per exchange, no more. Its unbuffered API, driven from buffers of
    // the caller's own, allocates in the same two places, as many times.
    assert!(
        https <= 2 * MESSAGES as u64 + 16,
        "HTTPS allocated {https} times for {MESSAGES} messages: more than two per message"
    );

    // Batches (the notifying thread outruns the loops, so they fill) are
    // formed in recycled jobs. A job's buffers (its messages, their
    // expiries, its compressed body) make room for a whole batch the first
    // time one outgrows them, so they grow a few times in the job's life,
    // never per batch; the jobs in rotation are a loop's slots, the batch
    // being formed and the next. Over a few hundred batches the count
    // stays below two growths per buffer per job, far below one per batch.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(notifier::DEFAULT_WORKERS);
    let jobs = (notifier::DEFAULT_WORKERS + 2 * threads) as u64;
    // Over TLS a batch also costs rustls's two allocations per record (see
    // above), per request rather than per message: a request of 500
    // 64-byte NDJSON messages (33 KB with its head) is sealed in at most 3
    // records of 16 KiB, and its response comes in one.
    let batched = |name: &str, batch: BatchConfig, tls: bool, more: fn(Builder) -> Builder| {
        let (server, tls_server);
        let builder = if tls {
            tls_server = TlsServer::no_content();
            Client::builder(&tls_server.url()).tls_config(tls_server.client_config())
        } else {
            server = Server::no_content();
            Client::builder(&server.url())
        };
        let (allocations, stats) = allocations_for(more(builder.batch(batch)), BATCHED_MESSAGES);
        let per_request = if tls { 3 + 1 } else { 0 };
        eprintln!(
            "{name}: {allocations} allocations for {BATCHED_MESSAGES} messages in {} requests \
             ({:.1} messages each)",
            stats.requests,
            stats.delivered as f64 / stats.requests as f64
        );
        assert!(
            stats.requests > 4 * jobs,
            "{name}: too few batches ({}) to tell growth from a cost per batch",
            stats.requests
        );
        assert!(
            allocations <= 16 + 3 * 2 * jobs + per_request * stats.requests,
            "{name}: allocated {allocations} times for {BATCHED_MESSAGES} messages in {} requests",
            stats.requests
        );
    };
    batched("NDJSON batches", BatchConfig::ndjson(), false, |b| b);
    batched(
        "NDJSON batches over TLS",
        BatchConfig::ndjson(),
        true,
        |b| b,
    );
    batched(
        "JSON-array batches",
        BatchConfig::json_array(),
        false,
        |b| b,
    );
    batched(
        "NDJSON batches with a TTL and keys",
        BatchConfig::ndjson(),
        false,
        |b| {
            b.message_ttl(Duration::from_secs(3_600))
                .idempotency_key(true)
        },
    );
    #[cfg(feature = "gzip")]
    batched("gzip NDJSON batches", BatchConfig::ndjson(), false, |b| {
        b.compression(notifier::Compression::Gzip)
    });
}
