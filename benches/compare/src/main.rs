//! `compare`: this crate side by side with the usual ways of doing its job,
//! in one process, against one in-process sink.
//!
//! ```text
//! cargo run --release -p compare -- [--messages N] [--size B] [--workers W] [--runs R]
//! cargo run --release -p compare -- --mode paced --rates 1000,20000,100000 --idle-windows 2
//! cargo run --release -p compare -- --help
//! ```
//!
//! The clients (see `clients.rs`): this crate (and the same with
//! `Builder::adaptive_spin(false)`, its idle loops parked at once, with
//! `Builder::spin` on one event loop, with
//! `Builder::batch_scheduling(false)`: event loops under SCHED_OTHER, and
//! with `Builder::batch(BatchConfig::ndjson())`: many messages per request,
//! one per line), a `reqwest` + `tokio` pool, a `ureq` thread pool, the Go
//! seed's pattern on `net/http` (a child process, `go.rs`; skipped when
//! there is no Go toolchain), and raw blocking sockets writing a prebuilt
//! request (the floor). Each POSTs `--size`-byte messages over plain HTTP
//! to the sink of `benches/common/sink.rs` (also used by
//! `benches/e2e.rs`), which answers `204` from a thread per connection and
//! allocates nothing per request. Besides them, the two wake floors send
//! nothing: their `notify` is a bounded channel send and a wake of a
//! thread under SCHED_BATCH, an eventfd write (`mio::Waker`) to one
//! blocked in `mio::Poll::poll`, or `Thread::unpark` (a futex) of one in
//! `thread::park`; that thread takes the message as its receipt, so their
//! notify → receipt latency is the wake's; they run the paced phases only
//! (no warm-up, no free phase).
//!
//! For each run and each client: a fresh sink and client, a warm-up
//! (connections opened, `--warmup` messages), then the measured phases:
//!
//! - **free**: one producer thread (`--producers P`: P of them, each
//!   sending every P-th message) hands over `--messages` messages as fast
//!   as the client takes them, backing off on a full queue as
//!   `benches/loopback/` does (spin, yield, 50 µs naps); the raw client
//!   has no queue, its `W` threads send back to back.
//! - **paced**: a phase at each rate of `--rates` (by default 1 k, 20 k
//!   and 100 k msgs/s), in order, on the same client: `--paced-messages`
//!   messages (by default 3 s of the rate, at most 100,000) on a schedule
//!   kept by sleeping until each message is due (timer slack 1 ns) and
//!   sending at once when late, each body stamped with its send time so
//!   the sink measures `notify` → receipt. The Go peer keeps the same
//!   schedule in its own loop, with `time.Sleep`.
//! - **idle**, after each paced phase: `--idle-windows` windows of 1 s in
//!   which the client is given nothing, over each of which its CPU time
//!   (as below) is taken as a share of one core: what the client's
//!   threads cost once its load has stopped, and, in the second window,
//!   where that settles.
//!
//! The sink counts messages, not requests: the batching client's bodies
//! are split into their lines, each stamped with its own send time, so
//! its notify → receipt latency is per message too; requests are counted
//! apart, for the messages each carried.
//!
//! Measured per phase, from the producer's start to the sink's receipt of
//! the last message: messages per second; messages per request; the
//! client's CPU time per message (process CPU from `getrusage` less the
//! sink threads' own CPU clocks), and the producer threads' share of it
//! (their own CPU clocks: the caller's cost, back-off included), and, for
//! reference, the sink's CPU time per message; heap allocations per message
//! (a counting global allocator, on during the phase, off on the sink's
//! threads and for building the message itself; not the Go peer's, which
//! are Go's); `notify` latency (the call that accepted the message,
//! `hdrhistogram`; the Go peer measures its own calls); notify → receipt
//! latency (paced); how late the paced sends were against their schedule
//! (p50: with the rate the sink saw, how well the pacing held; a sleep
//! oversleeps, and the sends due meanwhile go in a burst; a client that
//! cannot keep up falls behind by the whole backlog). The Go peer's CPU time is its own process's,
//! added to the client's share of the harness's. The tables give the
//! median of `--runs` runs with the spread (min–max), then each median as
//! a ratio to this crate's; a paced run gives a table per rate.
//!
//! With `--rtt-us N`, every client that sends reaches the sink through the
//! TCP proxy of `benches/common/rtt.rs`, one per run and client, which
//! delays every chunk by N/2 µs each way; its threads are kept out of the
//! client's CPU time and allocations as the sink's are (the progress log
//! gives its CPU per message), and the counts default to what the floor
//! at that RTT, `workers` requests per round trip, gets through in a few
//! seconds (see `--help`). The batching client's free phase and warm-up
//! default to ten times the others' counts, and with an RTT shrink to its
//! own floor, `workers` requests of 500 messages per round trip, so that
//! its phase lasts long enough to measure.

#[path = "../../common/alloc.rs"]
mod alloc;
#[path = "../../common/args.rs"]
mod args;
#[path = "../../common/backoff.rs"]
mod backoff;
mod clients;
#[path = "../../common/framing.rs"]
mod framing;
mod go;
mod probe;
#[path = "../../common/rtt.rs"]
mod rtt;
// Shared with `benches/e2e.rs`, which uses parts this harness does not.
#[allow(dead_code)]
#[path = "../../common/sink.rs"]
mod sink;

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use args::{number, Arg, Args};
use backoff::back_off;
use clients::{
    raw_exchange, Notifier, NotifierOptions, Pipe, Raw, Reqwest, Settings, Ureq, Wake, WakeFutex,
};
use framing::Framing;
use go::{GoPeer, GoProgram};
use notifier::{Stats, DEFAULT_BATCH_MESSAGES};
use probe::{
    epoch, nanos, new_histogram, now_ns, process_cpu, stamp, thread_cpu, Probe, STAMP_LEN,
};
use rtt::{fine_timer_slack, Proxy};
use sink::Sink;

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

const USAGE: &str = "\
usage: compare [OPTIONS]

Runs this crate, reqwest+tokio, ureq, the Go seed's pattern and raw sockets
side by side against an in-process HTTP sink answering 204, and prints
medians over the runs. 'wake' and 'wake-futex' are the floors of a notify
that wakes a sleeping thread: a channel send and an eventfd or futex wake,
no HTTP, paced phases only.

options:
  --messages N        messages per free-running phase       (default 200000;
                      notifier-batch 2000000)
  --rates LIST        comma-separated rates, msgs/s: a paced phase at
                      each, in order, one table per rate
                                                  (default 1000,20000,100000)
  --rate R            one paced phase, at R msgs/s (--rates R)
  --paced-messages N  messages per paced phase, at every rate
                                                  (default 3 s of the rate,
                                                  at most 100000)
  --idle-windows N    after each paced phase, the client's CPU time over
                      N windows of 1 s with no message, in % of one core:
                      0, 1 (the 1 s after the phase) or 2 (and the
                      second after that)                    (default 1)
  --size B            bytes per message                     (default 64)
  --workers W         simultaneous requests per client      (default 10)
  --queue Q           queue in front of each client         (default 1000)
  --producers P       threads calling notify (or send) on a
                      queue-fed client, each every P-th
                      message                               (default 1)
  --runs R            runs; the tables show medians         (default 3)
  --warmup N          messages sent before measuring        (default 20000;
                      notifier-batch 200000)
  --spin-us U         Builder::spin of 'notifier spin'      (default 100)
                      (that client runs one event loop: a spinning loop
                      keeps a core busy)
  --clients LIST      comma-separated subset of: notifier, park,
                      notifier-batch, spin, normal, wake, wake-futex,
                      reqwest, ureq, go, raw                (default all)
                      (park: notifier with adaptive_spin(false), its
                      idle loops parked at once; notifier-batch: notifier with
                      batch(BatchConfig::ndjson()), linger zero, at most
                      500 messages a request, counted by the sink line by
                      line; normal: notifier with batch_scheduling(false),
                      its loops under SCHED_OTHER; wake: a channel send
                      and mio::Waker::wake to a thread in mio::Poll::poll
                      under SCHED_BATCH; wake-futex: the same channel
                      and Thread::unpark of a thread in thread::park
                      under SCHED_BATCH; go: the Go seed's pattern, a
                      buffered channel feeding W goroutines that POST
                      with one net/http Client, built from
                      benches/compare/go with the go on PATH and run as
                      a child process that paces itself with time.Sleep;
                      skipped, with a message, if there is no go)
  --mode MODE         free, paced or both                   (default both)
  --rtt-us N          every client reaches the sink through a TCP proxy
                      on 127.0.0.1 that adds N µs to each round trip
                      (N/2 each way; 0: the proxy's own hop only). The
                      wake floors send nothing and are not affected.
                      With N > 0, the defaults shrink to the floor of W
                      workers / N µs (C msgs/s): --messages 10 s of C,
                      --warmup 1 s of C, each default rate at most C/2,
                      --paced-messages 5 s of the rate (each at most its
                      default above; a flag given wins); at 10000 µs and
                      10 workers: 10000, 1000, one rate of 500/s and
                      2500. notifier-batch's --messages and --warmup
                      shrink from its own defaults to its own floor, 500
                      messages a request (at 10000 µs, not at all)
  -h, --help          print this help";

/// How long a phase may run past its expected end before it is abandoned.
const PHASE_GRACE: Duration = Duration::from_secs(60);

/// How long the harness sleeps between looks at the sink before a phase
/// can have ended; after that, 1 ms.
const POLL_BEFORE_END: Duration = Duration::from_millis(100);

/// The clients, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Notifier,
    NotifierPark,
    NotifierBatch,
    NotifierSpin,
    NotifierSchedOther,
    Wake,
    WakeFutex,
    Reqwest,
    Ureq,
    Go,
    Raw,
}

impl Contender {
    const ALL: [Contender; 11] = [
        Contender::Notifier,
        Contender::NotifierPark,
        Contender::NotifierBatch,
        Contender::NotifierSpin,
        Contender::NotifierSchedOther,
        Contender::Wake,
        Contender::WakeFutex,
        Contender::Reqwest,
        Contender::Ureq,
        Contender::Go,
        Contender::Raw,
    ];

    /// The name `--clients` takes.
    fn key(self) -> &'static str {
        match self {
            Contender::Notifier => "notifier",
            Contender::NotifierPark => "park",
            Contender::NotifierBatch => "notifier-batch",
            Contender::NotifierSpin => "spin",
            Contender::NotifierSchedOther => "normal",
            Contender::Wake => "wake",
            Contender::WakeFutex => "wake-futex",
            Contender::Reqwest => "reqwest",
            Contender::Ureq => "ureq",
            Contender::Go => "go",
            Contender::Raw => "raw",
        }
    }

    /// The name in the tables.
    fn label(self, config: &Config) -> String {
        match self {
            Contender::Notifier => "notifier".to_owned(),
            Contender::NotifierPark => "notifier, adaptive_spin(false)".to_owned(),
            Contender::NotifierBatch => "notifier, batch ndjson, linger 0".to_owned(),
            Contender::NotifierSpin => format!("notifier, spin {} µs, 1 thread", config.spin_us),
            Contender::NotifierSchedOther => "notifier, SCHED_OTHER loops".to_owned(),
            Contender::Wake => "wake floor (eventfd)".to_owned(),
            Contender::WakeFutex => "wake floor (futex)".to_owned(),
            Contender::Reqwest => "reqwest + tokio".to_owned(),
            Contender::Ureq => "ureq threads".to_owned(),
            Contender::Go => "Go seed pattern, net/http".to_owned(),
            Contender::Raw => "raw sockets (floor)".to_owned(),
        }
    }

    /// Whether it sends free-running (warm-up and free phase); the wake
    /// floors measure the wake of a sleeping thread, which only pacing
    /// gives.
    fn free_running(self) -> bool {
        !matches!(self, Contender::Wake | Contender::WakeFutex)
    }

    /// The most messages one request carries.
    fn per_request(self) -> u64 {
        match self {
            Contender::NotifierBatch => DEFAULT_BATCH_MESSAGES as u64,
            _ => 1,
        }
    }

    /// How the sink finds the messages in a body.
    fn framing(self) -> Framing {
        match self {
            Contender::NotifierBatch => Framing::Ndjson,
            _ => Framing::One,
        }
    }
}

/// The paced rates of a run without `--rate` or `--rates`, msgs/s.
const DEFAULT_RATES: [u64; 3] = [1000, 20_000, 100_000];

/// The most messages of a paced phase without `--paced-messages`.
const MAX_PACED_MESSAGES: u64 = 100_000;

/// The most idle windows after a paced phase (their columns' titles).
const MAX_IDLE_WINDOWS: usize = 2;

/// One paced phase: `messages` at `rate` per second.
#[derive(Debug, Clone, Copy)]
struct Pace {
    rate: u64,
    messages: u64,
}

/// The parsed command line.
#[derive(Debug)]
struct Config {
    messages: u64,
    /// The paced phases, one per rate, in order.
    paces: Vec<Pace>,
    /// After each paced phase: windows of 1 s with no message over which
    /// the client's CPU time is measured.
    idle_windows: usize,
    size: usize,
    workers: usize,
    queue: usize,
    producers: usize,
    runs: usize,
    warmup: u64,
    /// `messages` and `warmup` for the batching client: the same when
    /// given; else ten times as many by default, since it goes through
    /// them so much faster, and with an RTT shrunk to its own floor.
    batch_messages: u64,
    batch_warmup: u64,
    spin_us: u64,
    clients: Vec<Contender>,
    free: bool,
    paced: bool,
    /// `--rtt-us`: the round trip the proxy in front of the sink adds.
    rtt: Option<Duration>,
}

impl Config {
    /// Parses the arguments after the program name; `Ok(None)` for `--help`.
    fn from_args(args: impl IntoIterator<Item = String>) -> Result<Option<Config>, String> {
        let mut config = Config {
            messages: 200_000,
            paces: Vec::new(),
            idle_windows: 1,
            size: 64,
            workers: 10,
            queue: 1000,
            producers: 1,
            runs: 3,
            warmup: 20_000,
            batch_messages: 2_000_000,
            batch_warmup: 200_000,
            spin_us: 100,
            clients: Contender::ALL.to_vec(),
            free: true,
            paced: true,
            rtt: None,
        };
        // The counts given on the command line; the others have defaults
        // that depend on the RTT.
        let (mut messages, mut paced_messages, mut rates, mut warmup) = (None, None, None, None);
        let mut args = Args::new(args);
        while let Some(arg) = args.next_arg() {
            let Arg::Flag(flag, inline) = arg else {
                return Ok(None);
            };
            let mut value = || args.value(&flag, &inline);
            match flag.as_str() {
                "--messages" => messages = Some(number(&flag, &value()?, 1)?),
                "--paced-messages" => paced_messages = Some(number(&flag, &value()?, 1)?),
                "--rate" => rates = Some(vec![number(&flag, &value()?, 1)?]),
                "--rates" => {
                    rates = Some(
                        value()?
                            .split(',')
                            .map(|rate| number(&flag, rate.trim(), 1))
                            .collect::<Result<_, _>>()?,
                    );
                }
                "--idle-windows" => {
                    config.idle_windows = number(&flag, &value()?, 0)?;
                    if config.idle_windows > MAX_IDLE_WINDOWS {
                        return Err(format!("--idle-windows: at most {MAX_IDLE_WINDOWS}"));
                    }
                }
                "--size" => config.size = number(&flag, &value()?, 0)?,
                "--workers" => config.workers = number(&flag, &value()?, 1)?,
                "--queue" => config.queue = number(&flag, &value()?, 1)?,
                "--producers" => config.producers = number(&flag, &value()?, 1)?,
                "--runs" => config.runs = number(&flag, &value()?, 1)?,
                "--warmup" => warmup = Some(number(&flag, &value()?, 0)?),
                "--spin-us" => config.spin_us = number(&flag, &value()?, 0)?,
                "--clients" => {
                    config.clients = value()?
                        .split(',')
                        .map(|key| {
                            Contender::ALL
                                .into_iter()
                                .find(|c| c.key() == key.trim())
                                .ok_or_else(|| format!("--clients: unknown client {key:?}"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                "--mode" => {
                    (config.free, config.paced) = match value()?.as_str() {
                        "free" => (true, false),
                        "paced" => (false, true),
                        "both" => (true, true),
                        other => return Err(format!("--mode: unknown mode {other:?}")),
                    }
                }
                "--rtt-us" => {
                    config.rtt = Some(Duration::from_micros(number(&flag, &value()?, 0)?));
                }
                _ => return Err(format!("unknown argument {flag:?}")),
            }
        }
        // The floor at that RTT, in messages per second: `workers`
        // requests per round trip.
        let floor = config
            .rtt
            .filter(|rtt| !rtt.is_zero())
            .map(|rtt| config.workers as f64 / rtt.as_secs_f64());
        // `default`, or `seconds` of `per_second` if that is fewer.
        let at_most = |default: u64, seconds: f64, per_second: Option<f64>| {
            per_second.map_or(default, |r| default.min(((seconds * r) as u64).max(1)))
        };
        // The batching client's: `workers` requests of up to 500 messages
        // per round trip.
        let batch_floor = floor.map(|f| f * DEFAULT_BATCH_MESSAGES as f64);
        config.batch_messages =
            messages.unwrap_or_else(|| at_most(config.batch_messages, 10.0, batch_floor));
        config.batch_warmup =
            warmup.unwrap_or_else(|| at_most(config.batch_warmup, 1.0, batch_floor));
        config.messages = messages.unwrap_or_else(|| at_most(config.messages, 10.0, floor));
        config.warmup = warmup.unwrap_or_else(|| at_most(config.warmup, 1.0, floor));
        // Behind the proxy, each default rate at most half the floor.
        let rates = rates.unwrap_or_else(|| {
            let mut rates: Vec<u64> = DEFAULT_RATES
                .iter()
                .map(|&rate| at_most(rate, 0.5, floor))
                .collect();
            rates.dedup();
            rates
        });
        // A few seconds of each rate: 3, or behind the proxy 5.
        let seconds = if floor.is_some() { 5.0 } else { 3.0 };
        config.paces = rates
            .into_iter()
            .map(|rate| Pace {
                rate,
                messages: paced_messages
                    .unwrap_or_else(|| at_most(MAX_PACED_MESSAGES, seconds, Some(rate as f64))),
            })
            .collect();
        if config.paced && config.size < STAMP_LEN {
            return Err(format!(
                "--size: paced runs stamp the send time in the body and need at least {STAMP_LEN} bytes"
            ));
        }
        Ok(Some(config))
    }

    /// The RTT, for headers: empty without the proxy.
    fn rtt_note(&self) -> String {
        match self.rtt {
            None => String::new(),
            Some(rtt) if rtt.is_zero() => {
                ", through the RTT proxy at RTT 0 (its own hop only)".to_owned()
            }
            Some(rtt) => format!(
                ", through the RTT proxy at RTT {}",
                format_ns(nanos(rtt) as f64)
            ),
        }
    }

    /// The least a phase of `messages` can take: `workers` requests of
    /// `per_request` messages per round trip of the proxy.
    fn rtt_floor(&self, messages: u64, per_request: u64) -> Duration {
        let per_round_trip = self.workers as u64 * per_request;
        self.rtt.unwrap_or_default()
            * u32::try_from(messages.div_ceil(per_round_trip)).unwrap_or(u32::MAX)
    }

    /// The warm-up and free-phase message counts of `client`.
    fn free_counts(&self, client: Contender) -> (u64, u64) {
        match client {
            Contender::NotifierBatch => (self.batch_warmup, self.batch_messages),
            _ => (self.warmup, self.messages),
        }
    }
}

fn main() -> ExitCode {
    let mut config = match Config::from_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("compare: {problem}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    epoch();
    let go = if config.clients.contains(&Contender::Go) {
        match GoProgram::build() {
            Ok(go) => Some(go),
            Err(why) => {
                eprintln!("compare: the Go peer is unavailable and skipped: {why}");
                config.clients.retain(|&c| c != Contender::Go);
                None
            }
        }
    } else {
        None
    };
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    let batch_counts = if config.clients.contains(&Contender::NotifierBatch)
        && (config.batch_messages, config.batch_warmup) != (config.messages, config.warmup)
    {
        format!(
            " (notifier-batch: {} messages, warm-up {})",
            config.batch_messages, config.batch_warmup
        )
    } else {
        String::new()
    };
    let paces: Vec<String> = config
        .paces
        .iter()
        .map(|p| format!("{} messages at {}/s", p.messages, p.rate))
        .collect();
    let mut phases = Vec::new();
    if config.free {
        phases.push(format!("free: {} messages", config.messages));
    }
    if config.paced {
        let idle = match config.idle_windows {
            0 => String::new(),
            n => format!(", each followed by {n} s idle"),
        };
        phases.push(format!("paced: {}{idle}", paces.join(", ")));
    }
    let go_version = go
        .as_ref()
        .map_or(String::new(), |go| format!("; Go peer: {}", go.version));
    println!(
        "compare: {} B messages, {} workers, queue {}, {} producer(s), {} run(s); \
         {}; warm-up {}{batch_counts}; {cores} cores{}{go_version}",
        config.size,
        config.workers,
        config.queue,
        config.producers,
        config.runs,
        phases.join("; "),
        config.warmup,
        config.rtt_note(),
    );

    let mut samples: Vec<Samples> = config
        .clients
        .iter()
        .map(|_| Samples {
            free: Vec::new(),
            paced: config.paces.iter().map(|_| Vec::new()).collect(),
        })
        .collect();
    for run in 1..=config.runs {
        for (i, &client) in config.clients.iter().enumerate() {
            eprintln!("run {run}/{}: {}", config.runs, client.label(&config));
            match run_client(client, &config, go.as_ref()) {
                Ok((free, paced)) => {
                    if let Some(sample) = free {
                        eprintln!("  {}", sample.summary(None));
                        samples[i].free.push(sample);
                    }
                    for ((pace, sample), all) in
                        config.paces.iter().zip(paced).zip(&mut samples[i].paced)
                    {
                        eprintln!("  {}", sample.summary(Some(pace.rate)));
                        all.push(sample);
                    }
                }
                Err(problem) => {
                    eprintln!("compare: {}: {problem}", client.label(&config));
                    return ExitCode::FAILURE;
                }
            }
        }
    }

    let labels: Vec<String> = config.clients.iter().map(|c| c.label(&config)).collect();
    let ours = config
        .clients
        .iter()
        .position(|&c| c == Contender::Notifier);
    if config.free {
        let rows: Vec<_> = labels
            .iter()
            .zip(samples.iter().map(|s| &s.free[..]))
            .collect();
        let title = format!("free-running{}", config.rtt_note());
        print_tables(&title, &FREE_COLUMNS, &rows, ours);
    }
    if config.paced {
        let mut columns = PACED_COLUMNS.to_vec();
        columns.extend(IDLE_COLUMNS.into_iter().take(config.idle_windows));
        // Last, whether the pacing held: the rate the sink saw, and how
        // late the sends were.
        columns.extend([RATE, LATE_P50]);
        for (k, pace) in config.paces.iter().enumerate() {
            let rows: Vec<_> = labels
                .iter()
                .zip(samples.iter().map(|s| &s.paced[k][..]))
                .collect();
            let title = format!("paced at {} msgs/s{}", pace.rate, config.rtt_note());
            print_tables(&title, &columns, &rows, ours);
        }
    }
    ExitCode::SUCCESS
}

/// What the runs measured of one client.
struct Samples {
    free: Vec<Sample>,
    /// One list per paced rate, in the order of `Config::paces`.
    paced: Vec<Vec<Sample>>,
}

// ---------------------------------------------------------------------------
// Runs and phases
// ---------------------------------------------------------------------------

/// A client, started.
enum Running {
    Pipe(Box<dyn Pipe>),
    Raw(Raw),
    /// A child process that paces itself: the Go peer.
    Child(GoPeer),
}

impl Running {
    /// Threads that send: the producers, or the raw client's connections;
    /// the child's driver.
    fn senders(&self, producers: usize) -> usize {
        match self {
            Running::Pipe(_) => producers,
            Running::Raw(raw) => raw.conns.len(),
            Running::Child(_) => 1,
        }
    }

    fn shutdown(self, settings: &Settings) -> Result<(), String> {
        match self {
            Running::Pipe(pipe) => pipe.shutdown(),
            Running::Raw(raw) => drop(raw),
            Running::Child(child) => child.shutdown(settings)?,
        }
        Ok(())
    }

    /// The client's own counters, if it keeps any.
    fn stats(&self) -> Option<Stats> {
        match self {
            Running::Pipe(pipe) => pipe.stats(),
            Running::Raw(_) | Running::Child(_) => None,
        }
    }

    /// The CPU time of the client's own process so far, if it has one.
    fn child_cpu(&mut self) -> Result<Duration, String> {
        match self {
            Running::Child(child) => child.cpu(),
            Running::Pipe(_) | Running::Raw(_) => Ok(Duration::ZERO),
        }
    }

    /// Whether its allocations are this process's, which the counting
    /// allocator sees.
    fn allocates_here(&self) -> bool {
        !matches!(self, Running::Child(_))
    }
}

/// One phase's workload.
struct Plan {
    messages: u64,
    size: usize,
    /// Producer threads of a queue-fed client.
    producers: usize,
    /// Paced: nanoseconds between messages.
    interval_ns: Option<f64>,
    /// The least the phase can take: the RTT proxy's floor.
    floor: Duration,
}

impl Plan {
    /// When message `i` is due, `start` being the phase's start.
    fn due(&self, start: Instant, i: u64) -> Option<Instant> {
        self.interval_ns
            .map(|ns| start + Duration::from_nanos((i as f64 * ns) as u64))
    }
}

/// What one phase measured.
#[derive(Debug, Clone)]
struct Sample {
    rate: f64,
    /// Messages per request the sink received.
    per_request: f64,
    cpu_us: f64,
    /// The part of `cpu_us` spent by the producer threads: building and
    /// stamping messages, `notify`, backing off on a full queue.
    producer_us: Option<f64>,
    /// The sink's CPU time per message (not the client's; shows what the
    /// client's way of sending costs the server).
    sink_us: f64,
    /// The RTT proxy's CPU time per message, when there is one (not the
    /// client's either).
    proxy_us: Option<f64>,
    /// Heap allocations per message (not for a child process).
    allocs: Option<f64>,
    /// `notify` p50, p99, p99.9 in ns (not for the raw client).
    notify: Option<[f64; 3]>,
    /// notify → receipt p50, p99 in ns (paced phases).
    e2e: Option<[f64; 2]>,
    /// Paced: how late the sends were against their schedule, p50, ns.
    late: Option<f64>,
    /// Paced: the client's CPU time over each idle window after the phase,
    /// in % of one core.
    idle: [Option<f64>; MAX_IDLE_WINDOWS],
    /// What this crate's own `Stats` counted over the phase.
    counted: Option<Counted>,
}

/// What this crate's `Stats` counted over a phase, per message: requests
/// written (`Stats::requests`), and `notify` calls that woke a parked event
/// loop (`Stats::wakeups`).
#[derive(Debug, Clone, Copy)]
struct Counted {
    requests: f64,
    wakeups: f64,
}

impl Counted {
    /// Between two snapshots, over `n` messages.
    fn between(before: Option<Stats>, after: Option<Stats>, n: u64) -> Option<Counted> {
        let (b, a, n) = (before?, after?, n as f64);
        Some(Counted {
            requests: (a.requests - b.requests) as f64 / n,
            wakeups: (a.wakeups - b.wakeups) as f64 / n,
        })
    }
}

impl Sample {
    /// One line for the progress log: a free phase, or one paced at `rate`.
    fn summary(&self, rate: Option<u64>) -> String {
        let mut line = format!(
            "{}: {:.0} msgs/s, {:.1} msgs/request, {:.2} µs CPU/msg, sink {:.2} µs CPU/msg",
            rate.map_or("free".to_owned(), |r| format!("paced {r}/s")),
            self.rate,
            self.per_request,
            self.cpu_us,
            self.sink_us
        );
        if let Some(allocs) = self.allocs {
            line += &format!(", {allocs:.2} allocs/msg");
        }
        if let Some(producer) = self.producer_us {
            line += &format!(" (producer {producer:.2} µs/msg)");
        }
        if let Some(proxy) = self.proxy_us {
            line += &format!(", proxy {proxy:.2} µs CPU/msg");
        }
        if let Some([p50, p99, p999]) = self.notify {
            line += &format!(
                ", notify {}/{}/{}",
                format_ns(p50),
                format_ns(p99),
                format_ns(p999)
            );
        }
        if let Some([p50, p99]) = self.e2e {
            line += &format!(", to sink {}/{}", format_ns(p50), format_ns(p99));
        }
        if let Some(late) = self.late {
            line += &format!(", sent late p50 {}", format_ns(late));
        }
        let idle: Vec<String> = self.idle.iter().flatten().map(|&p| format_pct(p)).collect();
        if !idle.is_empty() {
            line += &format!(", idle CPU {}", idle.join(" then "));
        }
        if let Some(c) = self.counted {
            line += &format!(
                "; its Stats: {:.1} msgs/request, {:.3} wakeups/msg",
                1.0 / c.requests.max(f64::MIN_POSITIVE),
                c.wakeups
            );
        }
        line
    }
}

/// Starts a sink and `client`, warms up, and measures the phases asked
/// for: the free phase, and a paced phase per rate, each with its idle
/// windows. `go` is the Go peer's program, if it was built.
fn run_client(
    client: Contender,
    config: &Config,
    go: Option<&GoProgram>,
) -> Result<(Option<Sample>, Vec<Sample>), String> {
    let probe = Arc::new(Probe::new(client.framing()));
    let sink = Sink::start(None, Arc::clone(&probe) as Arc<dyn sink::Observer>)
        .map_err(|e| format!("cannot start the sink: {e}"))?;
    // The proxy's threads are accounted as the sink's are: apart.
    let proxy_probe = Arc::new(Probe::new(Framing::One));
    let proxy = config
        .rtt
        .map(|rtt| {
            Proxy::start(
                sink.addr(),
                rtt,
                Arc::clone(&proxy_probe) as Arc<dyn sink::Observer>,
            )
        })
        .transpose()
        .map_err(|e| format!("cannot start the RTT proxy: {e}"))?;
    let addr = proxy.as_ref().map_or(sink.addr(), Proxy::addr);
    let accounts = Accounts {
        sink: &probe,
        proxy: proxy.as_ref().map(|_| &*proxy_probe),
    };
    let settings = Settings {
        url: sink.url_at(addr),
        addr,
        workers: config.workers,
        queue: config.queue,
        size: config.size,
        failures: Arc::default(),
    };
    let mut running = match client {
        Contender::Notifier => Running::Pipe(Box::new(Notifier::start(
            &settings,
            NotifierOptions::default(),
        )?)),
        Contender::NotifierBatch => Running::Pipe(Box::new(Notifier::start(
            &settings,
            NotifierOptions {
                batch: true,
                ..NotifierOptions::default()
            },
        )?)),
        Contender::NotifierSpin => Running::Pipe(Box::new(Notifier::start(
            &settings,
            NotifierOptions {
                spin: Some(Duration::from_micros(config.spin_us)),
                ..NotifierOptions::default()
            },
        )?)),
        Contender::NotifierPark => Running::Pipe(Box::new(Notifier::start(
            &settings,
            NotifierOptions {
                park: true,
                ..NotifierOptions::default()
            },
        )?)),
        Contender::NotifierSchedOther => Running::Pipe(Box::new(Notifier::start(
            &settings,
            NotifierOptions {
                sched_other: true,
                ..NotifierOptions::default()
            },
        )?)),
        Contender::Wake => Running::Pipe(Box::new(Wake::start(
            &settings,
            Arc::clone(&probe) as Arc<dyn sink::Observer>,
        )?)),
        Contender::WakeFutex => Running::Pipe(Box::new(WakeFutex::start(
            &settings,
            Arc::clone(&probe) as Arc<dyn sink::Observer>,
        )?)),
        Contender::Reqwest => Running::Pipe(Box::new(Reqwest::start(&settings)?)),
        Contender::Ureq => Running::Pipe(Box::new(Ureq::start(&settings)?)),
        Contender::Go => Running::Child(GoPeer::start(
            go.ok_or("the Go peer was not built")?,
            &settings,
        )?),
        Contender::Raw => Running::Raw(Raw::start(&settings)?),
    };
    let plan = |messages, interval_ns| Plan {
        messages,
        size: config.size,
        producers: config.producers,
        interval_ns,
        floor: config.rtt_floor(messages, client.per_request()),
    };
    let (warmup, messages) = config.free_counts(client);
    if warmup > 0 && client.free_running() {
        phase(&mut running, &accounts, &plan(warmup, None))?;
    }
    let free = if config.free && client.free_running() {
        Some(phase(&mut running, &accounts, &plan(messages, None))?)
    } else {
        None
    };
    let mut paced = Vec::new();
    if config.paced {
        for pace in &config.paces {
            let interval_ns = Some(1e9 / pace.rate as f64);
            let mut sample = phase(&mut running, &accounts, &plan(pace.messages, interval_ns))?;
            sample.idle = idle(&mut running, &accounts, config.idle_windows)?;
            paced.push(sample);
        }
    }
    running.shutdown(&settings)?;
    drop(proxy);
    drop(sink);
    match settings.failures.load(Ordering::Relaxed) {
        0 => Ok((free, paced)),
        n => Err(format!("{n} notifications failed")),
    }
}

/// The probes whose threads are not the client's.
struct Accounts<'a> {
    /// The sink's, which also counts the requests.
    sink: &'a Probe,
    /// The RTT proxy's, if there is one.
    proxy: Option<&'a Probe>,
}

/// The CPU clocks the client's CPU time is reckoned from, at one moment.
#[derive(Debug, Clone, Copy)]
struct Clocks {
    /// This whole process.
    process: Duration,
    /// The sink's threads, and the RTT proxy's.
    sink: Duration,
    proxy: Duration,
    /// The client's own process, if it has one.
    child: Duration,
}

impl Clocks {
    /// The clocks of this process and of `accounts` now, with `child`, the
    /// client's own process's CPU time, read by the caller.
    fn read(accounts: &Accounts<'_>, child: Duration) -> Clocks {
        Clocks {
            process: process_cpu(),
            sink: accounts.sink.threads_cpu(),
            proxy: accounts.proxy.map_or(Duration::ZERO, Probe::threads_cpu),
            child,
        }
    }

    /// The client's CPU time since `earlier`: the process's less the
    /// sink's and the proxy's, plus its own process's.
    fn client_since(&self, earlier: &Clocks) -> Duration {
        let others = (self.sink - earlier.sink) + (self.proxy - earlier.proxy);
        (self.process - earlier.process).saturating_sub(others) + (self.child - earlier.child)
    }
}

/// The client's CPU time over `windows` windows of 1 s in which it is
/// given no message, each in % of one core.
fn idle(
    running: &mut Running,
    accounts: &Accounts<'_>,
    windows: usize,
) -> Result<[Option<f64>; MAX_IDLE_WINDOWS], String> {
    let mut idle = [None; MAX_IDLE_WINDOWS];
    let start = Instant::now();
    let mut before = (start, Clocks::read(accounts, running.child_cpu()?));
    for (k, share) in idle.iter_mut().take(windows).enumerate() {
        sleep_until(start + Duration::from_secs(k as u64 + 1));
        let after = (Instant::now(), Clocks::read(accounts, running.child_cpu()?));
        let cpu = after.1.client_since(&before.1);
        *share = Some(100.0 * cpu.as_secs_f64() / after.0.duration_since(before.0).as_secs_f64());
        before = after;
    }
    Ok(idle)
}

/// Runs one phase and measures it.
fn phase(running: &mut Running, accounts: &Accounts<'_>, plan: &Plan) -> Result<Sample, String> {
    let probe = accounts.sink;
    let target = probe.received() + plan.messages;
    let paced = plan.interval_ns.is_some();
    probe.arm(target, paced);
    let requests0 = probe.requests();
    let senders = running.senders(plan.producers);
    let (ready, go) = (Barrier::new(senders + 1), Barrier::new(senders + 1));
    let expected = plan.interval_ns.map_or(Duration::ZERO, |ns| {
        Duration::from_nanos((ns * plan.messages as f64) as u64)
    });
    let expected = expected.max(plan.floor);
    // Every request of the phases before was written before the sink
    // received it, so these count this phase's alone.
    let stats0 = running.stats();
    // A child's clock is read over its pipe, outside the phase: it sends
    // nothing before the phase and has nothing left to send after it.
    let child0 = running.child_cpu()?;
    let allocates_here = running.allocates_here();

    let (driven, clocks0, mut clocks1, allocs, start_ns, done_ns) = thread::scope(|s| {
        let driver = s.spawn(|| drive(running, plan, &ready, &go));
        ready.wait();
        let (clocks0, allocs0) = (Clocks::read(accounts, child0), alloc::total());
        alloc::enable();
        let start_ns = now_ns();
        go.wait();

        let end = Instant::now() + expected;
        let mut deadline = end + PHASE_GRACE;
        let done_ns = loop {
            if let Some(done) = probe.done_at_ns() {
                break Ok(done);
            }
            let now = Instant::now();
            if driver.is_finished() {
                // Whatever is still on its way gets a few seconds.
                deadline = deadline.min(now + Duration::from_secs(5));
            }
            if now >= deadline {
                break Err(format!(
                    "the sink received {} of {} messages",
                    probe.received() + plan.messages - target,
                    plan.messages
                ));
            }
            // Until the phase can have ended, few wake-ups: at 1 k msgs/s,
            // one every millisecond would be one per message, on the
            // client's account.
            let poll = Duration::from_millis(1);
            thread::sleep(
                end.saturating_duration_since(now)
                    .clamp(poll, POLL_BEFORE_END),
            );
        };
        alloc::disable();
        let (clocks1, allocs1) = (Clocks::read(accounts, child0), alloc::total());
        let driven = driver
            .join()
            .map_err(|_| "a sending thread panicked".to_owned())??;
        Ok::<_, String>((
            driven,
            clocks0,
            clocks1,
            allocs1 - allocs0,
            start_ns,
            done_ns?,
        ))
    })?;
    clocks1.child = running.child_cpu()?;

    let n = plan.messages as f64;
    let requests = probe.requests() - requests0;
    let latency = probe.take_latency();
    Ok(Sample {
        rate: n / (done_ns.saturating_sub(start_ns).max(1) as f64 / 1e9),
        per_request: n / requests.max(1) as f64,
        cpu_us: clocks1.client_since(&clocks0).as_secs_f64() * 1e6 / n,
        producer_us: driven.cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / n),
        sink_us: (clocks1.sink - clocks0.sink).as_secs_f64() * 1e6 / n,
        proxy_us: accounts
            .proxy
            .map(|_| (clocks1.proxy - clocks0.proxy).as_secs_f64() * 1e6 / n),
        allocs: allocates_here.then(|| allocs as f64 / n),
        notify: driven.notify,
        e2e: (paced && !latency.is_empty()).then(|| quantiles([0.5, 0.99], &latency)),
        late: driven.late,
        idle: [None; MAX_IDLE_WINDOWS],
        counted: Counted::between(stats0, running.stats(), plan.messages),
    })
}

fn quantiles<const N: usize>(qs: [f64; N], h: &Histogram<u64>) -> [f64; N] {
    qs.map(|q| h.value_at_quantile(q) as f64)
}

/// What the senders of a phase measured.
struct Driven {
    /// `notify` p50, p99, p99.9 in ns, of the calls that accepted a
    /// message (not for the raw client).
    notify: Option<[f64; 3]>,
    /// The harness's producer threads' CPU time (queue-fed clients).
    cpu: Option<Duration>,
    /// Paced: how late the sends were against their schedule, p50, ns.
    late: Option<f64>,
}

/// What the producers of a queue-fed client measured.
struct Produced {
    /// Latency of each `notify` that accepted a message.
    latency: Histogram<u64>,
    /// Paced: how late each send was against its schedule.
    late: Histogram<u64>,
    /// The producer threads' CPU time during the phase.
    cpu: Duration,
}

/// Sends a phase's messages through `running`; what its senders measured.
fn drive(
    running: &mut Running,
    plan: &Plan,
    ready: &Barrier,
    go: &Barrier,
) -> Result<Driven, String> {
    let median = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(0.5) as f64);
    match running {
        Running::Pipe(pipe) => {
            let produced = produce_all(&**pipe, plan, ready, go)?;
            Ok(Driven {
                notify: Some(quantiles([0.5, 0.99, 0.999], &produced.latency)),
                cpu: Some(produced.cpu),
                late: median(&produced.late),
            })
        }
        Running::Raw(raw) => {
            let late = drive_raw(raw, plan, ready, go)?;
            Ok(Driven {
                notify: None,
                cpu: None,
                late: median(&late),
            })
        }
        Running::Child(child) => {
            ready.wait();
            go.wait();
            let ran = child.run(plan.messages, plan.interval_ns)?;
            Ok(Driven {
                notify: Some(ran.notify),
                cpu: None,
                late: ran.late,
            })
        }
    }
}

/// The producers of a queue-fed client, on threads of their own; what
/// they measured, together.
fn produce_all(
    pipe: &dyn Pipe,
    plan: &Plan,
    ready: &Barrier,
    go: &Barrier,
) -> Result<Produced, String> {
    thread::scope(|s| {
        let threads: Vec<_> = (0..plan.producers)
            .map(|k| s.spawn(move || produce(pipe, plan, k, ready, go)))
            .collect();
        let mut all = Produced {
            latency: new_histogram(),
            late: new_histogram(),
            cpu: Duration::ZERO,
        };
        for t in threads {
            let one = t.join().map_err(|_| "a producer panicked".to_owned())?;
            merge(&mut all.latency, &one.latency)?;
            merge(&mut all.late, &one.late)?;
            all.cpu += one.cpu;
        }
        Ok(all)
    })
}

/// Adds the values of `from` to `into`.
fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), String> {
    into.add(from)
        .map_err(|e| format!("cannot merge the senders' histograms: {e}"))
}

/// Waits for message `i`'s turn, if the phase is paced, and records how
/// late it then is; `start` is the phase's start.
fn wait_turn(plan: &Plan, start: Instant, i: u64, late: &mut Histogram<u64>) {
    if let Some(due) = plan.due(start, i) {
        sleep_until(due);
        late.saturating_record(nanos(due.elapsed()).max(1));
    }
}

/// Producer `k` of a queue-fed client: sends messages `k`, `k + P`, … of
/// the phase's (so the paced schedule interleaves).
fn produce(pipe: &dyn Pipe, plan: &Plan, k: usize, ready: &Barrier, go: &Barrier) -> Produced {
    fine_timer_slack();
    let (mut latency, mut late) = (new_histogram(), new_histogram());
    let template = vec![b'.'; plan.size];
    ready.wait();
    go.wait();
    let cpu0 = thread_cpu();
    let start = Instant::now();
    for i in (k as u64..plan.messages).step_by(plan.producers) {
        wait_turn(plan, start, i, &mut late);
        // The message's own buffer is the caller's, not the client's.
        let mut body = alloc::uncounted(|| template.clone());
        let mut attempt = 0u32;
        loop {
            let before = Instant::now();
            stamp(&mut body, nanos(before.duration_since(epoch())));
            match pipe.send(body) {
                Ok(()) => {
                    latency.saturating_record(nanos(before.elapsed()).max(1));
                    break;
                }
                Err(back) => {
                    body = back;
                    back_off(attempt);
                    attempt = attempt.saturating_add(1);
                }
            }
        }
    }
    Produced {
        latency,
        late,
        cpu: thread_cpu() - cpu0,
    }
}

/// The raw client: each connection's thread sends its share (connection
/// `i` sends messages `i`, `i + W`, …, so the paced schedule interleaves);
/// how late the paced sends were.
fn drive_raw(
    raw: &mut Raw,
    plan: &Plan,
    ready: &Barrier,
    go: &Barrier,
) -> Result<Histogram<u64>, String> {
    let w = raw.conns.len() as u64;
    let (template, body_at) = (&raw.request, raw.body_at);
    thread::scope(|s| {
        let threads: Vec<_> = raw
            .conns
            .iter_mut()
            .enumerate()
            .map(|(i, conn)| {
                let mut request = template.clone();
                s.spawn(move || {
                    fine_timer_slack();
                    let mut buf = [0u8; 256];
                    let mut late = new_histogram();
                    ready.wait();
                    go.wait();
                    let start = Instant::now();
                    let mut seq = i as u64;
                    while seq < plan.messages {
                        wait_turn(plan, start, seq, &mut late);
                        stamp(&mut request[body_at..], now_ns());
                        raw_exchange(conn, &request, &mut buf)
                            .map_err(|e| format!("raw connection {i}: {e}"))?;
                        seq += w;
                    }
                    Ok::<_, String>(late)
                })
            })
            .collect();
        let mut all = new_histogram();
        for t in threads {
            let late = t.join().map_err(|_| "a raw sender panicked".to_owned())??;
            merge(&mut all, &late)?;
        }
        Ok(all)
    })
}

/// Sleeps until `due`, if it is ahead.
fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// A column of a table: its title, where its value comes from, and how it
/// is printed.
#[derive(Clone, Copy)]
struct Column {
    title: &'static str,
    value: fn(&Sample) -> Option<f64>,
    format: fn(f64) -> String,
}

const RATE: Column = Column {
    title: "msgs/s",
    value: |s| Some(s.rate),
    format: format_rate,
};
const PER_REQUEST: Column = Column {
    title: "msgs/request",
    value: |s| Some(s.per_request),
    format: format_per_request,
};
const CLIENT_CPU: Column = Column {
    title: "client CPU µs/msg",
    value: |s| Some(s.cpu_us),
    format: format_2,
};
const PRODUCER_CPU: Column = Column {
    title: "of which producer",
    value: |s| s.producer_us,
    format: format_2,
};
const SINK_CPU: Column = Column {
    title: "sink CPU µs/msg",
    value: |s| Some(s.sink_us),
    format: format_2,
};
const ALLOCS: Column = Column {
    title: "allocs/msg",
    value: |s| s.allocs,
    format: format_2,
};
const NOTIFY_P50: Column = Column {
    title: "notify p50",
    value: |s| s.notify.map(|n| n[0]),
    format: format_ns,
};
const NOTIFY_P99: Column = Column {
    title: "notify p99",
    value: |s| s.notify.map(|n| n[1]),
    format: format_ns,
};
const NOTIFY_P999: Column = Column {
    title: "notify p99.9",
    value: |s| s.notify.map(|n| n[2]),
    format: format_ns,
};
const SINK_P50: Column = Column {
    title: "→ sink p50",
    value: |s| s.e2e.map(|n| n[0]),
    format: format_ns,
};
const SINK_P99: Column = Column {
    title: "→ sink p99",
    value: |s| s.e2e.map(|n| n[1]),
    format: format_ns,
};

const LATE_P50: Column = Column {
    title: "sent late p50",
    value: |s| s.late,
    format: format_ns,
};
/// The idle windows', in order.
const IDLE_COLUMNS: [Column; MAX_IDLE_WINDOWS] = [
    Column {
        title: "idle CPU 1 s",
        value: |s| s.idle[0],
        format: format_pct,
    },
    Column {
        title: "idle CPU 1–2 s",
        value: |s| s.idle[1],
        format: format_pct,
    },
];

const FREE_COLUMNS: [Column; 9] = [
    RATE,
    PER_REQUEST,
    CLIENT_CPU,
    PRODUCER_CPU,
    SINK_CPU,
    ALLOCS,
    NOTIFY_P50,
    NOTIFY_P99,
    NOTIFY_P999,
];

const PACED_COLUMNS: [Column; 8] = [
    NOTIFY_P50,
    NOTIFY_P99,
    NOTIFY_P999,
    SINK_P50,
    SINK_P99,
    PER_REQUEST,
    CLIENT_CPU,
    ALLOCS,
];

/// Median, minimum and maximum of the values a column has in `samples`.
fn spread(samples: &[Sample], column: &Column) -> Option<(f64, f64, f64)> {
    let mut values: Vec<f64> = samples.iter().filter_map(column.value).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    };
    Some((median, values[0], values[values.len() - 1]))
}

/// Prints the medians with their spread, then the ratios of the medians to
/// row `ours`, as Markdown tables.
fn print_tables(
    title: &str,
    columns: &[Column],
    rows: &[(&String, &[Sample])],
    ours: Option<usize>,
) {
    let header = |what: &str| {
        println!("\n{title}: {what}\n");
        let titles: Vec<&str> = columns.iter().map(|c| c.title).collect();
        println!("| client | {} |", titles.join(" | "));
        println!("|---|{}", "---|".repeat(columns.len()));
    };

    header("median (min–max)");
    for (label, samples) in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match spread(samples, c) {
                Some((median, min, max)) => format!(
                    "{} ({}–{})",
                    (c.format)(median),
                    (c.format)(min),
                    (c.format)(max)
                ),
                None => "–".to_owned(),
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }

    let Some(ours) = ours else { return };
    header("ratio of the medians to notifier's");
    for (label, samples) in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                let mine = spread(samples, c).map(|s| s.0);
                let theirs = spread(rows[ours].1, c).map(|s| s.0);
                match (mine, theirs) {
                    (Some(mine), Some(theirs)) if theirs > 0.0 => format!("{:.2}×", mine / theirs),
                    _ => "–".to_owned(),
                }
            })
            .collect();
        println!("| {label} | {} |", cells.join(" | "));
    }
}

/// Thousands with one decimal; below 10 k (behind a long RTT) whole
/// messages, where the decimal of a thousand would hide the difference.
fn format_rate(rate: f64) -> String {
    if rate < 1e4 {
        format!("{rate:.0}")
    } else {
        format!("{:.1} k", rate / 1e3)
    }
}

/// One decimal up to 100, whole numbers above.
fn format_per_request(x: f64) -> String {
    if x < 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.0}")
    }
}

fn format_2(x: f64) -> String {
    format!("{x:.2}")
}

/// A share of one core, in %.
fn format_pct(pct: f64) -> String {
    format!("{pct:.2} %")
}

fn format_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e7 {
        // Half an RTT of a few ms, and how far past it.
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.1} ms", ns / 1e6)
    }
}
