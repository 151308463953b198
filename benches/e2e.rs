//! Whole deliveries per second: `notify` to a `204` from a sink in this
//! process, over plain HTTP and over TLS, with 1 and 10 workers, for 64 B
//! and 1 KiB messages.
//!
//! ```text
//! cargo bench --bench e2e
//! cargo bench --bench e2e -- 'https w10'
//! ```
//!
//! The sink is `benches/common/sink.rs` (shared with the comparison harness
//! in `benches/compare`): a thread per connection, answering every request
//! with `204 No Content`, on the same cores as the client. One client per
//! combination (queue 1000, default threads) is started before its
//! measurement and kept across samples, so connections are reused as in
//! steady state. An iteration is one message: a sample of `n` iterations
//! notifies `n` messages (a producer that meets a full queue backs off as
//! `benches/loopback.rs` does) and ends when the client has delivered all
//! of them (`flush`). Messages are `Message::from_static`, so the producer
//! allocates nothing and the number is the client's.
//!
//! The throughput is in messages per second (`elem/s`). For the comparison
//! with reqwest, ureq and raw sockets, with CPU time and allocations per
//! message, run `cargo run --release -p compare`.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

#[path = "common/backoff.rs"]
mod backoff;
// Shared with `benches/compare`, which uses parts this bench does not.
#[allow(dead_code)]
#[path = "common/sink.rs"]
mod sink;
#[path = "common/tls.rs"]
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use notifier::{Client, Message, NotifyError};

use backoff::back_off;
use sink::{Quiet, Sink};
use tls::TlsConfigs;

static BODY_64: [u8; 64] = [b'x'; 64];
static BODY_1K: [u8; 1024] = [b'x'; 1024];

/// How long a sample may take to deliver before the bench gives up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);

fn e2e(c: &mut Criterion) {
    let tls = TlsConfigs::generate().expect("cannot make the test certificates");
    let mut group = c.benchmark_group("e2e");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(2));
    group.measurement_time(Duration::from_secs(5));

    for secure in [false, true] {
        let sink = Sink::start(secure.then(|| Arc::clone(&tls.server)), Arc::new(Quiet))
            .expect("cannot start the sink");
        let scheme = if secure { "https" } else { "http" };
        for workers in [1, 10] {
            for body in [&BODY_64[..], &BODY_1K[..]] {
                let mut builder = Client::builder(&sink.url())
                    .workers(workers)
                    .queue_size(1000)
                    .error_handler(|e| eprintln!("e2e: notification failed: {e}"));
                if secure {
                    builder = builder.tls_config(Arc::clone(&tls.client));
                }
                let client = builder.build().expect("cannot build the client");
                client.start();
                let size = if body.len() >= 1024 {
                    format!("{} KiB", body.len() / 1024)
                } else {
                    format!("{} B", body.len())
                };
                group.bench_function(
                    BenchmarkId::new(format!("{scheme} w{workers}"), size),
                    |b| b.iter_custom(|iters| deliver(&client, body, iters)),
                );
                client.stop();
                let stats = client.stats();
                assert_eq!(
                    stats.failed, 0,
                    "{scheme} w{workers}: some deliveries failed"
                );
            }
        }
    }
    group.finish();
}

/// Notifies `count` messages of `body` and waits until all are delivered;
/// returns the time it took.
fn deliver(client: &Client, body: &'static [u8], count: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        let mut msg = Message::from_static(body);
        let mut attempt = 0u32;
        loop {
            match client.notify(msg) {
                Ok(()) => break,
                Err(NotifyError::QueueFull(back)) => {
                    msg = back;
                    back_off(attempt);
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => panic!("notify failed: {e}"),
            }
        }
    }
    assert!(
        client.flush(FLUSH_TIMEOUT),
        "the client did not deliver in time"
    );
    start.elapsed()
}

criterion_group!(benches, e2e);
criterion_main!(benches);
