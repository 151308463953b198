//! Heap allocations per delivered message, counted by a global allocator.
//!
//! The count covers the client's event loops and the notifying thread; the
//! test server's threads are left out. Messages are allocated before the
//! counted window, so what remains is what the client itself allocates:
//! over plain HTTP and HTTPS one message per request, and with batching
//! (NDJSON and JSON-array bodies written from the messages' own buffers);
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
/// More for the compressed batches: enough of them that a cost per batch
/// would show above the growth of their buffers.
#[cfg(feature = "gzip")]
const GZIP_MESSAGES: usize = 100_000;
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

    // A TTL (never reached) and a key per request.
    let lifetimes = |batch: Option<BatchConfig>| {
        let server = Server::no_content();
        let batched = batch.is_some();
        let mut builder = Client::builder(&server.url())
            .message_ttl(Duration::from_secs(3_600))
            .idempotency_key(true);
        if let Some(batch) = batch {
            builder = builder.batch(batch);
        }
        let (allocations, stats) = allocations_for(builder, MESSAGES);
        assert_eq!(stats.expired, 0, "{stats:?}");
        assert!(
            !batched || stats.requests < stats.delivered,
            "TTL and keys: no batch held two messages: {stats:?}"
        );
        (allocations, stats.delivered as f64 / stats.requests as f64)
    };
    let (ttl_and_keys, _) = lifetimes(None);
    let (ttl_and_keys_batched, per_request) = lifetimes(Some(BatchConfig::ndjson()));
    eprintln!(
        "with a TTL and idempotency keys: {ttl_and_keys} allocations for {MESSAGES} messages \
         ({:.3}/msg); in NDJSON batches {ttl_and_keys_batched} ({:.3}/msg), \
         {per_request:.1} messages per request",
        per(ttl_and_keys),
        per(ttl_and_keys_batched)
    );

    let tls_server = TlsServer::no_content();
    let (https, _) = allocations_for(
        Client::builder(&tls_server.url()).tls_config(tls_server.client_config()),
        MESSAGES,
    );

    // Batches: the notifying thread outruns the loops, so batches fill.
    let batched = |name: &str, batch: BatchConfig| {
        let server = Server::no_content();
        let (allocations, stats) =
            allocations_for(Client::builder(&server.url()).batch(batch), MESSAGES);
        eprintln!(
            "{name} batches: {allocations} allocations for {MESSAGES} messages \
             ({:.3}/msg), {:.1} messages per request",
            per(allocations),
            stats.delivered as f64 / stats.requests as f64
        );
        assert!(
            stats.requests < stats.delivered,
            "{name}: no batch held two messages: {stats:?}"
        );
        allocations
    };
    let ndjson = batched("NDJSON", BatchConfig::ndjson());
    let array = batched("JSON-array", BatchConfig::json_array());
    // Each batch compressed once into its job's recycled buffer, by the
    // loop's one compressor. A job's buffer is reserved for the worst case
    // of the largest body its loop has compressed, so it grows again only
    // when a larger batch than any before comes its way: a few times in
    // its life, never per batch. Over many batches, the count stays below
    // two per job in rotation (a loop's slots, the batch being formed and
    // the next).
    #[cfg(feature = "gzip")]
    let (gzip, gzip_batches) = {
        let server = Server::no_content();
        let builder = Client::builder(&server.url())
            .batch(BatchConfig::ndjson())
            .compression(notifier::Compression::Gzip);
        let (allocations, stats) = allocations_for(builder, GZIP_MESSAGES);
        eprintln!(
            "gzip NDJSON batches: {allocations} allocations for {GZIP_MESSAGES} messages \
             in {} requests",
            stats.requests
        );
        (allocations, stats.requests)
    };

    eprintln!(
        "allocations for {MESSAGES} messages: http {http} ({:.3}/msg), https {https} ({:.3}/msg)",
        per(http),
        per(https)
    );
    // A handful at most (a flush waiter's registration), none per message.
    assert!(
        http <= 16,
        "plain HTTP allocated {http} times for {MESSAGES} messages"
    );
    // rustls 0.23 allocates one buffer per record it encrypts and one per
    // record it decrypts: two per exchange, no more. Its unbuffered API
    // does the same (`encrypt_outgoing` and `received_plaintext` serve
    // both), so it would not lower this.
    assert!(
        https <= 2 * MESSAGES as u64 + 16,
        "HTTPS allocated {https} times for {MESSAGES} messages: more than two per message"
    );
    // Batches are formed in recycled jobs: no allocation per message, nor
    // per batch, once the warm-up has grown their buffers.
    #[cfg(feature = "gzip")]
    {
        // One event loop per core, at most one per worker.
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(notifier::DEFAULT_WORKERS);
        let jobs = (notifier::DEFAULT_WORKERS + 2 * threads) as u64;
        assert!(
            gzip_batches > 4 * jobs,
            "too few batches ({gzip_batches}) to tell growth from a cost per batch"
        );
        assert!(
            gzip <= 16 + 2 * jobs,
            "gzip batches allocated {gzip} times for {GZIP_MESSAGES} messages \
             in {gzip_batches} requests"
        );
    }
    for (name, n) in [
        ("NDJSON", ndjson),
        ("JSON-array", array),
        ("TTL and keys", ttl_and_keys),
        ("TTL and keys, NDJSON", ttl_and_keys_batched),
    ] {
        assert!(
            n <= 16,
            "{name}: allocated {n} times for {MESSAGES} messages"
        );
    }
}
