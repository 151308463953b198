//! Memory stays bounded whatever the server sends: against a server that
//! streams headers forever (never the blank line that ends a head) and one
//! that streams a chunked body forever after a `200`, the process's
//! resident set grows by less than 64 MiB, and each attempt ends as the
//! client's limits say: endless headers are a retryable `Protocol` failure
//! once the head passes 64 KiB; an endless body on a 2xx is delivered (the
//! status decides) and its connection closed once the body passes 1 MiB.
//!
//! The resident set is sampled every few milliseconds from
//! `/proc/self/status` (Linux) while the messages go out. It is the whole
//! process's, so each test here runs alone (`support::alone`): no other
//! test of the binary allocates meanwhile, nor does another of these.

use std::error::Error as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notifier::{Client, FailureKind, ProtocolError};

use crate::support::{
    alone, assert_balanced, assert_each_id_once, id_of, msg, notify_all, started, wait_until,
    RawConn, Server,
};

/// How much the resident set may grow.
const BOUND: u64 = 64 << 20;

/// A timeout that only a client that does not enforce its limits reaches.
const TIMEOUT: Duration = Duration::from_secs(20);

/// The process's resident set size in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|n| n.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// Samples the resident set every 2 ms on its own thread and keeps the
/// largest value.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss()));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    thread::sleep(Duration::from_millis(2));
                }
            })
        };
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// Stops sampling; the largest resident set seen.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("the sampler");
        }
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

/// A raw server that answers each request with `head`, then writes
/// `block` over and over until the client goes away (or the server
/// stops). `written` counts the bytes the kernel took, over all
/// connections.
fn endless(head: &'static [u8], block: Vec<u8>, written: Arc<AtomicU64>) -> Server {
    Server::start_raw(move |mut conn: RawConn<'_>| {
        while let Some((request, _)) = conn.next_request() {
            conn.record(request);
            if !conn.write(head) {
                return;
            }
            written.fetch_add(head.len() as u64, Ordering::Relaxed);
            while !conn.stopping() {
                if !conn.write(&block) {
                    return;
                }
                written.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
        }
    })
}

/// Header lines without end: 64-byte lines, 16 KiB at a time.
fn endless_headers(written: Arc<AtomicU64>) -> Server {
    let line = format!(
        "X-Endless: {}\r\n",
        "h".repeat(64 - "X-Endless: \r\n".len())
    );
    assert_eq!(line.len(), 64);
    endless(
        b"HTTP/1.1 200 OK\r\n",
        line.repeat(256).into_bytes(),
        written,
    )
}

/// One 16 KiB chunk of a chunked body.
fn chunk() -> Vec<u8> {
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend_from_slice(&[b'c'; 0x4000]);
    chunk.extend_from_slice(b"\r\n");
    chunk
}

/// A chunked body without end: 16 KiB chunks.
fn endless_chunked_body(written: Arc<AtomicU64>) -> Server {
    endless(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        chunk(),
        written,
    )
}

/// Runs alone: starts the server `serve` makes, sends it `n` messages
/// through `workers` slots and stops. Checks that the resident set grew by
/// less than [`BOUND`], that every message ended once, that those in
/// `expect_failed` failed as `check` says and the others were delivered,
/// that each request had its own connection (none could be reused), and
/// that it all took less than the timeout (so the limits, not the timeout,
/// ended the responses). Gives back how many bytes the server wrote.
fn run(
    label: &str,
    serve: fn(Arc<AtomicU64>) -> Server,
    workers: usize,
    n: usize,
    check: impl Fn(&notifier::NotificationError),
    expect_failed: bool,
) -> u64 {
    let _alone = alone();
    let written = Arc::new(AtomicU64::new(0));
    let server = serve(Arc::clone(&written));
    let before = rss();
    let peak = PeakRss::start();
    let begun = Instant::now();
    let (client, failures) = started(
        Client::builder(&server.url())
            .workers(workers)
            .timeout(TIMEOUT)
            .shutdown_timeout(Duration::from_secs(5)),
    );
    notify_all(&client, 0..n);
    let flushed = client.flush(TIMEOUT);
    // A 2xx is delivered by its status, so the last bodies may still be on
    // their way: let the client read each to its limit and close it, as it
    // did the others, rather than `stop` cut it short.
    wait_until(TIMEOUT, || server.open_connections() == 0);
    client.stop();
    let elapsed = begun.elapsed();
    let peak = peak.finish();

    let grown = peak.saturating_sub(before);
    eprintln!(
        "{label}, {workers} slot(s), {n} messages: {elapsed:?}, resident set {} MiB -> peak {} MiB \
         (+{} KiB), server wrote {} MiB",
        before >> 20,
        peak >> 20,
        grown >> 10,
        written.load(Ordering::Relaxed) >> 20
    );
    assert!(flushed, "not done within {TIMEOUT:?}: {:?}", client.stats());
    assert!(
        elapsed < TIMEOUT,
        "took {elapsed:?}: a response was ended by the timeout"
    );
    assert!(grown < BOUND, "resident set grew by {} MiB", grown >> 20);

    let stats = client.stats();
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_balanced(&stats);
    let failed = failures.take();
    if expect_failed {
        assert_eq!(stats.failed, n as u64, "{stats:?}");
        let mut ids: Vec<usize> = failed.iter().map(|f| id_of(f.error.message())).collect();
        ids.sort_unstable();
        assert_eq!(ids, (0..n).collect::<Vec<_>>());
        for failure in &failed {
            check(&failure.error);
        }
    } else {
        assert!(
            failed.is_empty(),
            "{} failed, first: {}",
            failed.len(),
            failed[0].error
        );
        assert_eq!(stats.delivered, n as u64, "{stats:?}");
    }

    // Every id reached the server once, each on a connection of its own.
    let requests = server.requests();
    let mut ids: Vec<usize> = requests.iter().map(|r| id_of(&r.body)).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
    let mut conns: Vec<usize> = requests.iter().map(|r| r.conn).collect();
    conns.sort_unstable();
    conns.dedup();
    assert_eq!(conns.len(), n, "a connection was reused");
    written.load(Ordering::Relaxed)
}

/// Checks that `error` is a retryable `Protocol` failure, after one
/// attempt, because the head passed 64 KiB.
fn head_too_large(error: &notifier::NotificationError) {
    assert_eq!(error.kind(), FailureKind::Protocol, "{error}");
    assert_eq!(error.attempts(), 1, "{error}");
    assert!(error.is_retryable(), "{error}");
    let cause = error
        .source()
        .and_then(|e| e.downcast_ref::<ProtocolError>());
    assert_eq!(cause, Some(&ProtocolError::HeadTooLarge), "{error}");
}

#[test]
fn endless_headers_one_after_another() {
    run(
        "endless headers",
        endless_headers,
        1,
        8,
        head_too_large,
        true,
    );
}

#[test]
fn endless_headers_on_four_connections_at_once() {
    run(
        "endless headers",
        endless_headers,
        4,
        16,
        head_too_large,
        true,
    );
}

#[test]
fn endless_chunked_body_on_a_200_one_after_another() {
    let written = run("endless body", endless_chunked_body, 1, 8, |_| {}, false);
    // Each connection carried at least the 1 MiB the client reads.
    assert!(written >= 8 << 20);
}

#[test]
fn endless_chunked_body_on_a_200_on_four_connections_at_once() {
    let written = run("endless body", endless_chunked_body, 4, 16, |_| {}, false);
    assert!(written >= 16 << 20);
}

#[test]
fn messages_after_endless_responses_are_delivered() {
    // The same server alternates: odd requests get a normal 204, even ones
    // an endless chunked body; all are delivered.
    let _alone = alone();
    let chunk = chunk();
    let server = Server::start_raw(move |mut conn: RawConn<'_>| {
        while let Some((request, _)) = conn.next_request() {
            let id = id_of(&request.body);
            conn.record(request);
            if id % 2 == 1 {
                if !conn.write(b"HTTP/1.1 204 No Content\r\n\r\n") {
                    return;
                }
                continue;
            }
            if !conn.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") {
                return;
            }
            while !conn.stopping() && conn.write(&chunk) {}
            return;
        }
    });
    let (client, failures) = started(Client::builder(&server.url()).workers(2).timeout(TIMEOUT));
    let begun = Instant::now();
    for i in 0..20 {
        client.notify(msg(i)).expect("notify");
    }
    assert!(client.flush(TIMEOUT), "{:?}", client.stats());
    client.stop();
    assert!(begun.elapsed() < TIMEOUT, "took {:?}", begun.elapsed());
    failures.assert_none();
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.delivered), (20, 20), "{stats:?}");
    assert_each_id_once(&server.requests(), 20);
}
