//! Load test against an HTTP sink embedded in this process.
//!
//! ```text
//! cargo run --release -p loopback
//! cargo run --release -p loopback -- --batch
//! cargo run --release -p loopback -- --messages 200000 --producers 4 --size 1024
//! cargo run --release -p loopback -- --tls
//! ```
//!
//! A workspace member of its own (`benches/loopback/`), built like
//! `compare`: `cargo run --release -p loopback` runs it with the flags
//! after `--`. It is a program, not a criterion benchmark: one run, its own
//! report.
//!
//! The load test starts a small HTTP/1.1 server on `127.0.0.1:<ephemeral>`
//! that answers every POST with `204 No Content`, points a [`Client`] at it,
//! and has `--producers` threads push `--messages` notifications of `--size`
//! bytes through [`Client::notify`] as fast as the client accepts them. When
//! the queue is full a producer takes its message back and tries again.
//!
//! With `--batch` the client carries many messages per request:
//! [`BatchConfig::ndjson`] with its defaults (linger zero: a free
//! connection takes what is queued at that moment, up to 500 messages, and
//! never waits for more), and the sink counts each line of a body as a
//! message. The summary then shows the messages each request carried, from
//! [`Stats::requests`](notifier::Stats::requests).
//!
//! With `--tls` the sink serves HTTPS instead, with a certificate made at
//! start: a throwaway CA signs a leaf for `localhost` and `127.0.0.1`, and
//! the client is given a [`rustls::ClientConfig`] that trusts that CA only.
//! The sink offers TLS 1.2 and 1.3, ALPN `http/1.1`, session tickets and a
//! session cache, so reconnections can resume.
//!
//! While it runs it prints a progress line on stderr every second. At the end
//! it prints a summary on stdout (throughput, messages per request,
//! `notify()` latency percentiles, `QueueFull` retries) and checks that
//! every message reached the sink exactly once; it exits with status 1
//! when one did not, and with status 2 on a bad command line.
//!
//! The sink shares the machine's cores with the client, so it is kept cheap:
//! a thread per connection, blocking reads into one reusable buffer,
//! `httparse` for the request head, responses written from a reusable buffer,
//! no allocation per request. Over TLS the same loop reads and writes
//! through a `rustls::StreamOwned`.

// The command-line flags, parsed as `benches/compare` parses its own.
#[path = "../../common/args.rs"]
mod args;
// The producers' back-off on a full queue, shared with the benchmarks so
// every measurement waits the same way.
#[path = "../../common/backoff.rs"]
mod backoff;
// The sink's throwaway CA and leaf, shared with the HTTPS benchmarks.
#[path = "../../common/tls.rs"]
mod tls;
// How the sink finds the messages in a body: one, or one per NDJSON line.
// A bench target is compiled with `cfg(test)` but without the test harness:
// the helper of the file's unit tests is built, the tests that use it are not.
#[allow(dead_code)]
#[path = "../../common/framing.rs"]
mod framing;
// The embedded HTTP sink, shared with the other benchmarks (which use the
// parts this one does not: the quiet observer, the bare address).
#[allow(dead_code)]
#[path = "../../common/sink.rs"]
mod sink;

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use args::{number, Arg, Args};
use backoff::back_off;
use framing::Framing;
use hdrhistogram::Histogram;
use notifier::{BatchConfig, Client, Message, NotificationError, NotifyError};
use rustls::ServerConfig;
use tls::TlsConfigs;

const USAGE: &str = "\
usage: cargo run --release -p loopback -- [OPTIONS]

Sends notifications to an HTTP sink embedded in this process and reports
throughput and notify() latency.

options:
  --messages N    number of notifications to send      (default 1000000)
  --size B        bytes per notification                (default 64)
  --producers P   threads calling notify()              (default 1)
  --workers W     client connection slots               (default 10)
  --queue Q       client queue size                     (default 1000)
  --threads T     client event-loop threads             (default: the library's)
  --batch         many messages per request: BatchConfig::ndjson(), linger
                  zero, at most 500 a request
  --tls           serve and send HTTPS, with a certificate made at start
  -h, --help      print this help";

/// How often the progress line is printed.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// The highest latency the histograms track (larger values are clamped).
const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;

/// How many failed notifications are printed in full; the rest are counted.
const PRINTED_FAILURES: u64 = 10;

fn main() -> ExitCode {
    let config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("loopback: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&config) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(problem) => {
            eprintln!("loopback: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the test; `Ok(false)` when a check failed, `Err` when it could not run.
fn run(config: &Config) -> Result<bool, String> {
    let tls = config
        .tls
        .then(TlsConfigs::generate)
        .transpose()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let framing = if config.batch {
        Framing::Ndjson
    } else {
        Framing::One
    };
    let sink = Sink::start(
        config.messages,
        framing,
        tls.as_ref().map(|t| Arc::clone(&t.server)),
    )
    .map_err(|e| format!("cannot start the sink: {e}"))?;
    let url = sink.server.url();

    // Count failed notifications; print the first few in full.
    let handler_failures = Arc::new(AtomicU64::new(0));
    let failures = Arc::clone(&handler_failures);
    let mut builder = Client::builder(&url)
        .workers(config.workers)
        .queue_size(config.queue)
        .error_handler(move |err: NotificationError| {
            let seen = failures.fetch_add(1, Ordering::Relaxed);
            if seen < PRINTED_FAILURES {
                eprintln!(
                    "notification failed ({:?}, {} attempt(s)): {err}",
                    err.kind(),
                    err.attempts()
                );
            } else if seen == PRINTED_FAILURES {
                eprintln!("(further failures are only counted)");
            }
        });
    if let Some(threads) = config.threads {
        builder = builder.threads(threads);
    }
    if config.batch {
        // Linger zero and at most 500 messages a request: the defaults.
        builder = builder.batch(BatchConfig::ndjson());
    }
    if let Some(tls) = &tls {
        builder = builder.tls_config(Arc::clone(&tls.client));
    }
    let client = Arc::new(
        builder
            .build()
            .map_err(|e| format!("cannot build the client for {url}: {e}"))?,
    );
    client.start();

    println!(
        "loopback: {} messages x {} B, {} producer(s), {} workers, queue {}, threads {}, {}, sink {url}",
        config.messages,
        config.size,
        config.producers,
        config.workers,
        config.queue,
        config
            .threads
            .map_or_else(|| "default".to_owned(), |t| t.to_string()),
        if config.batch {
            "batches: ndjson, linger 0, at most 500"
        } else {
            "one message per request"
        },
    );

    // The producers and this thread meet at the barrier, so the clock starts
    // when the first notify() is about to be made, not while threads spawn.
    let start_line = Arc::new(Barrier::new(config.producers + 1));
    let producers: Vec<_> = config
        .shares()
        .enumerate()
        .map(|(index, (first_seq, count))| {
            let client = Arc::clone(&client);
            let start_line = Arc::clone(&start_line);
            let size = config.size;
            thread::Builder::new()
                .name(format!("producer-{index}"))
                .spawn(move || produce(&client, first_seq, count, size, &start_line))
                .map_err(|e| format!("cannot spawn a producer thread: {e}"))
        })
        .collect::<Result<_, _>>()?;

    start_line.wait();
    let started = Instant::now();

    let progress_done = Arc::new(AtomicBool::new(false));
    let progress = {
        let client = Arc::clone(&client);
        let done = Arc::clone(&progress_done);
        thread::Builder::new()
            .name("progress".to_owned())
            .spawn(move || report_progress(&client, &done, started))
            .map_err(|e| format!("cannot spawn the progress thread: {e}"))?
    };

    // Merge what the producers measured.
    let mut latency = new_histogram();
    let mut queue_full_retries = 0u64;
    let mut producer_errors = Vec::new();
    for producer in producers {
        match producer.join() {
            Ok(Ok(report)) => {
                latency
                    .add(&report.latency)
                    .expect("histograms share their bounds");
                queue_full_retries += report.queue_full_retries;
            }
            Ok(Err(problem)) => producer_errors.push(problem),
            Err(_) => producer_errors.push("a producer thread panicked".to_owned()),
        }
    }
    let enqueued = started.elapsed();

    // Graceful stop: blocks until every accepted message is delivered or failed.
    client.stop();
    let elapsed = started.elapsed();

    progress_done.store(true, Ordering::Release);
    progress.thread().unpark();
    if progress.join().is_err() {
        eprintln!("loopback: the progress thread panicked");
    }

    let stats = client.stats();
    let sink_report = sink.report();
    let n = config.messages;

    // Summary.
    let secs = elapsed.as_secs_f64();
    println!("delivered        {:>12}", stats.delivered);
    println!("failed           {:>12}", stats.failed);
    println!(
        "elapsed          {:>12.3} s   (notify phase {:.3} s, drain after it {:.3} s)",
        secs,
        enqueued.as_secs_f64(),
        (elapsed - enqueued).as_secs_f64()
    );
    println!("throughput       {:>12.0} msgs/s", n as f64 / secs);
    println!(
        "requests         {:>12}   ({:.1} messages per request)",
        stats.requests,
        stats.delivered as f64 / stats.requests.max(1) as f64
    );
    println!(
        "QueueFull        {:>12} retries   (client counted {} rejected)",
        queue_full_retries, stats.rejected
    );
    println!(
        "notify() latency   p50 {}   p99 {}   p99.9 {}   max {}   ({} calls)",
        format_ns(latency.value_at_quantile(0.50)),
        format_ns(latency.value_at_quantile(0.99)),
        format_ns(latency.value_at_quantile(0.999)),
        format_ns(latency.max()),
        latency.len(),
    );
    println!(
        "sink             {:>12} messages in {} requests on {} connection(s), {} message bytes, {} distinct, {} duplicate(s), {} unidentified",
        sink_report.messages,
        sink_report.requests,
        sink_report.connections,
        sink_report.message_bytes,
        sink_report.distinct,
        sink_report.duplicates,
        sink_report.unidentified,
    );

    // Checks: every message delivered, and received by the sink exactly once.
    let mut problems = producer_errors;
    if stats.accepted != n {
        problems.push(format!(
            "client accepted {} messages, expected {n}",
            stats.accepted
        ));
    }
    if stats.delivered != n {
        problems.push(format!(
            "client delivered {} messages, expected {n}",
            stats.delivered
        ));
    }
    if stats.failed != 0 || handler_failures.load(Ordering::Relaxed) != 0 {
        problems.push(format!(
            "{} messages failed ({} reached the error handler)",
            stats.failed,
            handler_failures.load(Ordering::Relaxed)
        ));
    }
    if stats.accepted != stats.delivered + stats.failed {
        problems.push(format!(
            "after stop, accepted ({}) != delivered ({}) + failed ({})",
            stats.accepted, stats.delivered, stats.failed
        ));
    }
    if stats.queued != 0 || stats.in_flight != 0 {
        problems.push(format!(
            "after stop, {} messages still queued and {} in flight",
            stats.queued, stats.in_flight
        ));
    }
    if stats.rejected != queue_full_retries {
        problems.push(format!(
            "client counted {} rejections, producers saw {queue_full_retries} QueueFull",
            stats.rejected
        ));
    }
    if sink_report.messages != n {
        problems.push(format!(
            "sink received {} messages, expected {n}",
            sink_report.messages
        ));
    }
    if sink_report.requests != stats.requests {
        problems.push(format!(
            "sink received {} requests, the client wrote {}",
            sink_report.requests, stats.requests
        ));
    }
    let expected_bytes = n * config.size as u64;
    if sink_report.message_bytes != expected_bytes {
        problems.push(format!(
            "sink received {} message bytes, expected {expected_bytes}",
            sink_report.message_bytes
        ));
    }
    // Sequence numbers fit in the body only when it is long enough.
    if sink_report.unidentified == 0 && (sink_report.distinct != n || sink_report.duplicates != 0) {
        problems.push(format!(
            "sink saw {} of {n} sequence numbers ({} missing), {} duplicate(s)",
            sink_report.distinct,
            n - sink_report.distinct,
            sink_report.duplicates
        ));
    }

    if problems.is_empty() {
        println!(
            "OK: all {n} messages delivered over {}, each received once by the sink",
            if config.tls { "https" } else { "http" }
        );
        Ok(true)
    } else {
        for problem in &problems {
            println!("FAILED: {problem}");
        }
        Ok(false)
    }
}

// ---------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------

/// The parsed command line.
#[derive(Debug)]
struct Config {
    messages: u64,
    size: usize,
    producers: usize,
    workers: usize,
    queue: usize,
    threads: Option<usize>,
    tls: bool,
    batch: bool,
}

impl Config {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    ///
    /// Accepts `--flag VALUE` and `--flag=VALUE`; numbers may contain `_`.
    fn from_args(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
        let mut config = Config {
            messages: 1_000_000,
            size: 64,
            producers: 1,
            workers: 10,
            queue: 1000,
            threads: None,
            tls: false,
            batch: false,
        };
        let mut args = Args::new(args);
        while let Some(arg) = args.next_arg() {
            let Arg::Flag(flag, inline_value) = arg else {
                return Ok(None);
            };
            let mut value = || args.value(&flag, &inline_value);
            match flag.as_str() {
                "--messages" => config.messages = number(&flag, &value()?, 1)?,
                "--size" => config.size = number(&flag, &value()?, 0)?,
                "--producers" => config.producers = number(&flag, &value()?, 1)?,
                "--workers" => config.workers = number(&flag, &value()?, 1)?,
                "--queue" => config.queue = number(&flag, &value()?, 1)?,
                "--threads" => config.threads = Some(number(&flag, &value()?, 1)?),
                "--tls" if inline_value.is_none() => config.tls = true,
                "--batch" if inline_value.is_none() => config.batch = true,
                "--tls" | "--batch" => return Err(format!("{flag} takes no value")),
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        if config.producers as u64 > config.messages {
            return Err(format!(
                "--producers ({}) is larger than --messages ({})",
                config.producers, config.messages
            ));
        }
        Ok(Some(config))
    }

    /// Each producer's first sequence number and message count; the
    /// remainder of the division goes to the first producers.
    fn shares(&self) -> impl Iterator<Item = (u64, u64)> {
        let producers = self.producers as u64;
        let (base, extra) = (self.messages / producers, self.messages % producers);
        (0..producers).scan(0u64, move |next, i| {
            let count = base + u64::from(i < extra);
            let first = *next;
            *next += count;
            Some((first, count))
        })
    }
}

// ---------------------------------------------------------------------------
// Producers and progress
// ---------------------------------------------------------------------------

/// What one producer thread measured.
struct ProducerReport {
    /// Latency of each successful `notify()` call, in nanoseconds.
    latency: Histogram<u64>,
    /// How many times `notify()` answered `QueueFull`.
    queue_full_retries: u64,
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("the histogram bounds are valid")
}

/// Sends messages `first_seq .. first_seq + count`, each `size` bytes long.
fn produce(
    client: &Client,
    first_seq: u64,
    count: u64,
    size: usize,
    start_line: &Barrier,
) -> Result<ProducerReport, String> {
    let mut latency = new_histogram();
    let mut queue_full_retries = 0u64;
    start_line.wait();

    for seq in first_seq..first_seq + count {
        // A fresh buffer per message, like a real caller; built before the
        // clock starts so that only notify() itself is measured.
        let mut message: Message = new_message(seq, size).into();
        let mut attempt = 0u32;
        loop {
            let before = Instant::now();
            match client.notify(message) {
                Ok(()) => {
                    latency.saturating_record(nanos(before.elapsed()));
                    break;
                }
                Err(NotifyError::QueueFull(returned)) => {
                    queue_full_retries += 1;
                    message = returned;
                    back_off(attempt);
                    attempt = attempt.saturating_add(1);
                }
                Err(other) => return Err(format!("notify() of message {seq} failed: {other}")),
            }
        }
    }
    Ok(ProducerReport {
        latency,
        queue_full_retries,
    })
}

/// A `size`-byte body that starts with the decimal sequence number and a
/// space, padded with `.`; the sink reads the number back. Bodies too short
/// for the number are sent truncated and the sink counts them unidentified.
fn new_message(seq: u64, size: usize) -> Vec<u8> {
    let mut body = vec![b'.'; size];
    let mut cursor = &mut body[..];
    // Fails only when the body is too short for the number, which is fine.
    let _ = write!(cursor, "{seq} ");
    body
}

/// Prints delivered / rate / messages per request / queued on stderr every
/// second until `done`.
fn report_progress(client: &Client, done: &AtomicBool, started: Instant) {
    let mut last_time = started;
    let (mut last_delivered, mut last_requests) = (0u64, 0u64);
    loop {
        // Sleep until the next tick; `run` unparks this thread when finished.
        let deadline = last_time + PROGRESS_INTERVAL;
        loop {
            if done.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            thread::park_timeout(deadline - now);
        }
        let now = Instant::now();
        let stats = client.stats();
        let delivered = stats.delivered - last_delivered;
        let rate = delivered as f64 / (now - last_time).as_secs_f64();
        let per_request = delivered as f64 / (stats.requests - last_requests).max(1) as f64;
        eprintln!(
            "[{:>6.1} s] delivered {:>10}  {:>8.0} msgs/s  {:>5.1} msgs/request  queued {:>6}  in flight {:>4}  failed {}",
            (now - started).as_secs_f64(),
            stats.delivered,
            rate,
            per_request,
            stats.queued,
            stats.in_flight,
            stats.failed,
        );
        last_time = now;
        last_delivered = stats.delivered;
        last_requests = stats.requests;
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn format_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.1} ms", ns as f64 / 1e6),
    }
}

// ---------------------------------------------------------------------------
// The embedded HTTP sink
// ---------------------------------------------------------------------------

/// What the sink has seen, shared by its connection threads.
struct SinkCounters {
    /// How a body carries its messages.
    framing: Framing,
    requests: AtomicU64,
    messages: AtomicU64,
    /// Sink threads started: the acceptor and one per connection.
    threads: AtomicU64,
    /// The messages' bytes, framing left out.
    message_bytes: AtomicU64,
    /// One bit per expected sequence number.
    seen: Vec<AtomicU64>,
    distinct: AtomicU64,
    duplicates: AtomicU64,
    /// Messages that did not carry a sequence number in range.
    unidentified: AtomicU64,
}

impl SinkCounters {
    fn new(expected: u64, framing: Framing) -> SinkCounters {
        let words = usize::try_from(expected.div_ceil(64)).expect("message count fits in memory");
        SinkCounters {
            framing,
            requests: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            threads: AtomicU64::new(0),
            message_bytes: AtomicU64::new(0),
            seen: (0..words).map(|_| AtomicU64::new(0)).collect(),
            distinct: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unidentified: AtomicU64::new(0),
        }
    }

    /// Marks the sequence number at the start of `message` as received.
    fn record_message(&self, message: &[u8]) {
        let seen = parse_seq(message)
            .and_then(|seq| Some((seq, self.seen.get(usize::try_from(seq / 64).ok()?)?)));
        match seen {
            Some((seq, word)) => {
                let bit = 1u64 << (seq % 64);
                if word.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
                    self.distinct.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.unidentified.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The decimal number before the first space of `message`, if there is one.
fn parse_seq(message: &[u8]) -> Option<u64> {
    let end = message.iter().position(|&b| b == b' ')?;
    let digits = &message[..end];
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// A snapshot of [`SinkCounters`].
struct SinkReport {
    messages: u64,
    requests: u64,
    connections: u64,
    message_bytes: u64,
    distinct: u64,
    duplicates: u64,
    unidentified: u64,
}

impl sink::Observer for SinkCounters {
    fn thread_started(&self) {
        self.threads.fetch_add(1, Ordering::Relaxed);
    }

    fn request(&self, body: &[u8]) {
        let mut bytes = 0;
        let messages = self.framing.each(body, |message| {
            bytes += message.len() as u64;
            self.record_message(message);
        });
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages, Ordering::Relaxed);
        self.message_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// The embedded HTTP/1.1 server (`benches/common/sink.rs`, shared with the
/// benchmarks) and what it counted.
struct Sink {
    server: sink::Sink,
    counters: Arc<SinkCounters>,
}

impl Sink {
    /// Listens on an ephemeral loopback port and accepts in the background,
    /// serving TLS with `tls` when given; `expected` sizes the table of
    /// sequence numbers, `framing` says how to find the messages in a body.
    fn start(expected: u64, framing: Framing, tls: Option<Arc<ServerConfig>>) -> io::Result<Sink> {
        let counters = Arc::new(SinkCounters::new(expected, framing));
        let server = sink::Sink::start(tls, Arc::clone(&counters) as Arc<dyn sink::Observer>)?;
        Ok(Sink { server, counters })
    }

    fn report(&self) -> SinkReport {
        let c = &self.counters;
        SinkReport {
            messages: c.messages.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            // Every thread but the acceptor served one connection.
            connections: c.threads.load(Ordering::Relaxed).saturating_sub(1),
            message_bytes: c.message_bytes.load(Ordering::Relaxed),
            distinct: c.distinct.load(Ordering::Relaxed),
            duplicates: c.duplicates.load(Ordering::Relaxed),
            unidentified: c.unidentified.load(Ordering::Relaxed),
        }
    }
}
