//! What `Builder::preconnect` buys: the time from `notify` to the sink's
//! reading the request, for the first message after the server closed
//! the idle connection, with and without preconnect, over plain HTTP and
//! over TLS; next to it the same for a message after the same quiet
//! period on a connection that stayed open, and for one sent back to back
//! after it.
//!
//! ```text
//! cargo bench --bench preconnect
//! cargo bench --bench preconnect -- --reps 40
//! ```
//!
//! The sink (`benches/common/sink.rs`, in this process) closes every
//! connection idle for [`IDLE`]. One client per combination, one worker.
//! A repetition waits for the sink to close the idle connection, then
//! [`QUIET`] more (with preconnect the slot opens a new connection
//! meanwhile; without, it has none), and notifies one message ("after
//! close"); [`QUIET`] after that, the connection it went on still open,
//! another ("kept open"), and, once the sink has that one, a third at
//! once ("back to back"). Each is timed from just before its `notify` to
//! the sink's observer seeing its body. After a quiet period the event
//! loop is parked, so the first two also pay for waking it; the third
//! finds it busy. Printed: the median, the fastest and the slowest of
//! each, over the repetitions (default [`REPS`]).

// Shared with the other benches, which use parts this one does not.
#[allow(dead_code)]
#[path = "common/sink.rs"]
mod sink;
#[path = "common/tls.rs"]
mod tls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notifier::{Client, Message, RetryConfig};

use sink::{Observer, Sink};
use tls::TlsConfigs;

/// How long the sink keeps a connection with nothing to read.
const IDLE: Duration = Duration::from_millis(500);
/// How long after the sink closed the connection the message goes (time
/// for a preconnecting slot to notice the close and open anew: at once,
/// or after 50–100 ms when the closed connection lived less than a
/// second, well before the sink would close the new one); and the pause
/// before the message on the connection kept open.
const QUIET: Duration = Duration::from_millis(250);
/// Repetitions per combination, unless `--reps N` says otherwise.
const REPS: usize = 20;
/// A step that takes longer than this means something broke.
const STUCK: Duration = Duration::from_secs(30);

/// What the sink saw: when the last request arrived (nanoseconds since
/// `epoch`, 0 for none since it was cleared) and how many idle
/// connections it closed.
struct Clock {
    epoch: Instant,
    arrived: AtomicU64,
    closed: AtomicU64,
}

impl Observer for Clock {
    fn request(&self, _body: &[u8]) {
        let nanos = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.arrived.store(nanos.max(1), Ordering::SeqCst);
    }

    fn idle_closed(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `done` until it holds; panics with `what` after [`STUCK`].
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + STUCK;
    while !done() {
        assert!(Instant::now() < deadline, "stuck waiting for {what}");
        std::thread::yield_now();
    }
}

/// Notifies one message and waits until the sink has it: the time from
/// just before `notify` to the sink's reading it.
fn deliver(client: &Client, clock: &Clock) -> Duration {
    clock.arrived.store(0, Ordering::SeqCst);
    let sent = clock.epoch.elapsed();
    client
        .notify(Message::from_static(b"tick"))
        .expect("notify");
    wait_for("the message at the sink", || {
        clock.arrived.load(Ordering::SeqCst) != 0
    });
    Duration::from_nanos(clock.arrived.load(Ordering::SeqCst)).saturating_sub(sent)
}

/// The times of `reps` repetitions: after close, kept open, back to back.
fn measure(tls: Option<&TlsConfigs>, preconnect: bool, reps: usize) -> [Vec<Duration>; 3] {
    let clock = Arc::new(Clock {
        epoch: Instant::now(),
        arrived: AtomicU64::new(0),
        closed: AtomicU64::new(0),
    });
    let observer: Arc<dyn Observer> = clock.clone();
    let sink = Sink::closing_idle(tls.map(|t| Arc::clone(&t.server)), observer, IDLE)
        .expect("cannot start the sink");
    // A message that meets the sink closing its connection (a machine
    // that stalls can make the two meet) is sent again: the sample is an
    // outlier, not a hole.
    let retry = RetryConfig::default()
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(1));
    let mut builder = Client::builder(&sink.url())
        .workers(1)
        .preconnect(preconnect)
        .retry(retry)
        .error_handler(|e| eprintln!("preconnect bench: a notification failed: {e}"));
    if let Some(tls) = tls {
        builder = builder.tls_config(Arc::clone(&tls.client));
    }
    let client = builder.build().expect("cannot build the client");
    client.start();
    deliver(&client, &clock);
    let mut times = [(); 3].map(|()| Vec::with_capacity(reps));
    for _ in 0..reps {
        let closed = clock.closed.load(Ordering::SeqCst);
        wait_for("the sink to close the idle connection", || {
            clock.closed.load(Ordering::SeqCst) > closed
        });
        std::thread::sleep(QUIET);
        times[0].push(deliver(&client, &clock));
        std::thread::sleep(QUIET);
        times[1].push(deliver(&client, &clock));
        times[2].push(deliver(&client, &clock));
    }
    client.stop();
    let stats = client.stats();
    assert_eq!(stats.failed, 0, "some notifications failed");
    if stats.retried > 0 {
        eprintln!("({} messages were sent again)", stats.retried);
    }
    times
}

/// Median, fastest and slowest, in microseconds.
fn summary(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    format!(
        "{:>9.1} µs ({:.1}–{:.1})",
        us(times[times.len() / 2]),
        us(times[0]),
        us(times[times.len() - 1])
    )
}

fn main() {
    let mut reps = REPS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--reps" {
            reps = args
                .next()
                .and_then(|n| n.parse().ok())
                .filter(|&n| n > 0)
                .expect("--reps needs a positive number");
        }
        // Anything else (cargo bench's own `--bench`) is not ours.
    }
    let tls = TlsConfigs::generate().expect("cannot make the test certificates");
    println!(
        "notify -> sink after {} ms of quiet: on a connection the sink closed meanwhile, \
         on one it kept open; then back to back. Median (fastest-slowest) of {reps}.",
        QUIET.as_millis()
    );
    println!(
        "{:<6} {:<11} {:>30} {:>30} {:>30}",
        "scheme", "preconnect", "after close", "kept open", "back to back"
    );
    for secure in [false, true] {
        for preconnect in [false, true] {
            let mut times = measure(secure.then_some(&tls), preconnect, reps);
            println!(
                "{:<6} {:<11} {:>30} {:>30} {:>30}",
                if secure { "https" } else { "http" },
                if preconnect { "on" } else { "off" },
                summary(&mut times[0]),
                summary(&mut times[1]),
                summary(&mut times[2])
            );
        }
    }
}
