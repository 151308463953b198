//! What the harness reads off the process and the sink: CPU time, the end
//! of a phase, and the latency from `notify` to the sink's receipt.
//!
//! The client's CPU time is the process's (`getrusage(RUSAGE_SELF)`, user
//! plus system) less the sink's. The sink's is read from each of its
//! threads' own CPU clock (`pthread_getcpuclockid`): a live thread is read
//! through its clock, and a thread that ends adds its total to a retired
//! sum first, under the same lock, so no thread is missed or read after it
//! is gone.
//!
//! Every message body starts with the send time: [`STAMP_LEN`] decimal
//! digits of nanoseconds since [`epoch`], written by [`stamp`] just before
//! the message is handed to the client. The sink reads it back and records
//! the difference while latency recording is on. A client in a process of
//! its own stamps on the same scale, given [`epoch_monotonic_ns`].
//!
//! The sink counts messages, not requests: a probe is made for the framing
//! its client sends ([`Framing`]), and a batched client's NDJSON body is
//! split into its lines, each counted and, stamped on its own, timed on
//! its own. Requests are counted apart, for messages per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::alloc;
use crate::framing::Framing;
use crate::sink::Observer;

/// Digits of the send time at the start of each body.
pub(crate) const STAMP_LEN: usize = 20;

/// The highest latency histograms track (larger values are clamped).
pub(crate) const HISTOGRAM_MAX_NS: u64 = 60_000_000_000;

/// The clock every stamp counts from.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub(crate) fn now_ns() -> u64 {
    nanos(epoch().elapsed())
}

/// [`epoch`] as a reading of CLOCK_MONOTONIC, the clock `Instant` reads on
/// Linux, for a child process to stamp send times on the same scale: of
/// a few readings of [`now_ns`] between two of the clock, the closest
/// pair.
pub(crate) fn epoch_monotonic_ns() -> u64 {
    let monotonic = || nanos(read_clock(libc::CLOCK_MONOTONIC));
    (0..8)
        .map(|_| {
            let (before, since, after) = (monotonic(), now_ns(), monotonic());
            (
                after - before,
                (before + (after - before) / 2).saturating_sub(since),
            )
        })
        .min()
        .map_or(0, |(_, epoch)| epoch)
}

/// A duration in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A histogram of nanoseconds, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_NS, 3).expect("the histogram bounds are valid")
}

/// Writes `ns` as the body's first [`STAMP_LEN`] digits (zero-padded).
/// Bodies shorter than that are left alone.
pub(crate) fn stamp(body: &mut [u8], ns: u64) {
    if let Some(digits) = body.get_mut(..STAMP_LEN) {
        let mut n = ns;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
    }
}

/// The stamp at the start of `body`, if it has one.
fn read_stamp(body: &[u8]) -> Option<u64> {
    body.get(..STAMP_LEN)?.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit()
            .then(|| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')))
    })
}

/// User plus system CPU time of the whole process.
pub(crate) fn process_cpu() -> Duration {
    // SAFETY: `rusage` is plain old data, for which all zeroes is valid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    assert_eq!(rc, 0, "getrusage failed");
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
}

/// The time on `clock`: a thread's CPU clock, or a system clock.
fn read_clock(clock: libc::clockid_t) -> Duration {
    // SAFETY: `timespec` is plain old data, for which all zeroes is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is valid and writable; an invalid clock is reported by
    // the return value, not by undefined behaviour.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The CPU time of the calling thread.
pub(crate) fn thread_cpu() -> Duration {
    read_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// The CPU clock of the calling thread, readable from other threads while
/// this one lives.
fn this_thread_clock() -> libc::clockid_t {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `pthread_self` is always valid for the calling thread, and
    // `clock` is a valid, writable `clockid_t`.
    let rc = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock) };
    assert_eq!(rc, 0, "pthread_getcpuclockid failed");
    clock
}

/// The sink's CPU clocks: live threads, and the total of those that ended.
#[derive(Default)]
struct SinkThreads {
    live: Vec<libc::clockid_t>,
    retired: Duration,
}

/// The observer the harness gives each sink.
pub(crate) struct Probe {
    threads: Mutex<SinkThreads>,
    /// How the bodies it sees carry their messages.
    framing: Framing,
    /// Messages received.
    received: AtomicU64,
    /// Requests (bodies) received.
    requests: AtomicU64,
    /// When `received` reaches this, the time goes to `done_at_ns`.
    target: AtomicU64,
    done_at_ns: AtomicU64,
    record_latency: AtomicBool,
    latency: Mutex<Histogram<u64>>,
}

impl Probe {
    /// A probe for bodies framed as `framing`.
    pub(crate) fn new(framing: Framing) -> Probe {
        Probe {
            threads: Mutex::new(SinkThreads::default()),
            framing,
            received: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done_at_ns: AtomicU64::new(0),
            record_latency: AtomicBool::new(false),
            latency: Mutex::new(new_histogram()),
        }
    }

    /// The CPU time the threads it observes (the sink's, or the RTT
    /// proxy's) have used so far.
    pub(crate) fn threads_cpu(&self) -> Duration {
        let threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retired
            + threads
                .live
                .iter()
                .copied()
                .map(read_clock)
                .sum::<Duration>()
    }

    /// Messages received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Requests received so far: the messages' bodies.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Acquire)
    }

    /// Arms the end of a phase: the sink notes when it has received `total`
    /// messages in all, and records latencies if `latency` is set.
    pub(crate) fn arm(&self, total: u64, latency: bool) {
        self.done_at_ns.store(0, Ordering::SeqCst);
        self.target.store(total, Ordering::SeqCst);
        self.record_latency.store(latency, Ordering::SeqCst);
    }

    /// When the armed total was reached (ns since [`epoch`]), if it was.
    pub(crate) fn done_at_ns(&self) -> Option<u64> {
        match self.done_at_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(ns),
        }
    }

    /// The latencies recorded so far; the record starts over.
    pub(crate) fn take_latency(&self) -> Histogram<u64> {
        self.record_latency.store(false, Ordering::SeqCst);
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *latency, new_histogram())
    }
}

impl Observer for Probe {
    fn thread_started(&self) {
        alloc::exclude_this_thread();
        let clock = this_thread_clock();
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.live.push(clock);
    }

    fn thread_ending(&self) {
        let clock = this_thread_clock();
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads.retired += read_clock(clock);
        threads.live.retain(|&c| c != clock);
    }

    fn request(&self, body: &[u8]) {
        let now = now_ns();
        // One lock per body, however many messages it carries.
        let mut latency = self
            .record_latency
            .load(Ordering::Relaxed)
            .then(|| self.latency.lock().unwrap_or_else(|e| e.into_inner()));
        let n = self.framing.each(body, |message| {
            if let (Some(latency), Some(sent)) = (latency.as_mut(), read_stamp(message)) {
                latency.saturating_record(now.saturating_sub(sent).max(1));
            }
        });
        drop(latency);
        self.requests.fetch_add(1, Ordering::AcqRel);
        // A batch may carry the count past the target rather than onto it.
        let before = self.received.fetch_add(n, Ordering::AcqRel);
        let target = self.target.load(Ordering::Acquire);
        if before < target && before + n >= target {
            self.done_at_ns.store(now, Ordering::Release);
        }
    }
}
