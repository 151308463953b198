//! The clients under test, each set up as its users would, for the same
//! job: POST each message to the sink, `workers` requests at a time, with a
//! bounded queue of `queue` messages in front.
//!
//! - **notifier**: this crate, defaults but `workers` and `queue_size`.
//!   The spinning variant adds `spin` and runs one event loop
//!   (`threads(1)`), as `Builder::spin` advises: a spinning loop keeps a
//!   core busy, and the machine has to keep one for the sink. The
//!   SCHED_OTHER variant adds `batch_scheduling(false)`: its event loops
//!   run under the default policy, so a woken loop may preempt the thread
//!   that called `notify`. The batching variant adds
//!   `batch(BatchConfig::ndjson())` with its defaults (linger zero, at most
//!   500 messages a request): each request carries what is queued when a
//!   connection is free, one message per line, so the sink splits its
//!   bodies into lines.
//! - **reqwest + tokio**: a bounded `tokio::sync::mpsc` fed by `try_send`,
//!   `workers` tasks sharing its receiver, one shared `reqwest::Client`;
//!   the multi-thread runtime with its default thread count (the cores).
//! - **ureq**: `workers` threads on a bounded `std::sync::mpsc::sync_channel`,
//!   one `ureq::Agent` each.
//! - **raw sockets**: no queue, no client library: `workers` threads, each
//!   with its own blocking keep-alive connection, write a prebuilt request
//!   (only the send time in the body changes) and read the `204`. The
//!   syscall floor.
//! - **wake floors**: no HTTP, no sink: each message goes over a bounded
//!   channel to one thread under SCHED_BATCH, as the library's loops are,
//!   which takes it as its receipt. The eventfd floor's thread blocks in
//!   `mio::Poll::poll` and every message is followed by a
//!   `mio::Waker::wake` (an eventfd write); the futex floor's thread
//!   `thread::park`s and every message is followed by `Thread::unpark`
//!   (a `FUTEX_WAKE` when the thread is parked, an atomic swap when it
//!   runs). The floors of a `notify` that has to wake a sleeping thread;
//!   the thread's receipt of the message gives the wake's latency.
//! - **the Go seed's pattern** (`go.rs`): a buffered channel of `queue`
//!   messages feeding `workers` goroutines that POST with one shared
//!   `net/http` Client; a child process that paces itself, not a [`Pipe`].
//!
//! The queue-fed clients and the wake floors are [`Pipe`]s: the harness's
//! producer hands them messages and backs off when they are full. Parsing
//! the URL is done once up front for every client, as a careful user would.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Events, Poll, Token};
use notifier::{BatchConfig, Client, NotifyError, Stats, DEFAULT_CONTENT_TYPE};

use crate::sink::Observer;

/// What every client is given.
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) queue: usize,
    /// Body size, for the raw client's prebuilt request.
    pub(crate) size: usize,
    /// Notifications that failed, for every client (none are expected).
    pub(crate) failures: Arc<AtomicU64>,
}

impl Settings {
    fn failed(&self) -> impl Fn(&dyn std::fmt::Display) + Send + Sync + Clone + 'static {
        let failures = Arc::clone(&self.failures);
        move |why| {
            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("compare: a notification failed: {why}");
            }
        }
    }
}

/// A client with a bounded queue in front of it.
pub(crate) trait Pipe: Send + Sync {
    /// Hands a message over, or gives it back when the queue is full.
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>>;

    /// Delivers what it holds and ends its threads.
    fn shutdown(self: Box<Self>);

    /// The client's own counters, when it keeps any: this crate's
    /// `Client::stats`.
    fn stats(&self) -> Option<Stats> {
        None
    }
}

// ---------------------------------------------------------------------------
// notifier
// ---------------------------------------------------------------------------

/// How a [`Notifier`] differs from the defaults, beyond [`Settings`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NotifierOptions {
    /// `Builder::spin`, on one event loop (`threads(1)`).
    pub(crate) spin: Option<Duration>,
    /// `Builder::adaptive_spin(false)`: an idle loop parks at once, and
    /// the `notify` that finds every loop parked wakes one.
    pub(crate) park: bool,
    /// `Builder::batch_scheduling(false)`: the event loops run under
    /// SCHED_OTHER instead of SCHED_BATCH.
    pub(crate) sched_other: bool,
    /// `Builder::batch(BatchConfig::ndjson())`: many messages per request,
    /// one per line.
    pub(crate) batch: bool,
}

/// This crate.
pub(crate) struct Notifier(Client);

impl Notifier {
    pub(crate) fn start(s: &Settings, options: NotifierOptions) -> Result<Notifier, String> {
        let failed = s.failed();
        let mut builder = Client::builder(&s.url)
            .workers(s.workers)
            .queue_size(s.queue)
            .error_handler(move |e| failed(&e));
        if let Some(spin) = options.spin {
            builder = builder.spin(spin).threads(1);
        }
        if options.park {
            builder = builder.adaptive_spin(false);
        }
        if options.sched_other {
            builder = builder.batch_scheduling(false);
        }
        if options.batch {
            // The defaults: linger zero (a free connection takes what is
            // queued now, never waits) and at most 500 messages a request.
            builder = builder.batch(BatchConfig::ndjson());
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        client.start();
        Ok(Notifier(client))
    }
}

impl Pipe for Notifier {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.0.notify(body) {
            Ok(()) => Ok(()),
            Err(NotifyError::QueueFull(msg)) => Err(msg.into_vec()),
            Err(e) => panic!("notifier refused a message: {e}"),
        }
    }

    fn shutdown(self: Box<Self>) {
        self.0.stop();
    }

    fn stats(&self) -> Option<Stats> {
        Some(self.0.stats())
    }
}

// ---------------------------------------------------------------------------
// wake floor
// ---------------------------------------------------------------------------

/// The cost floor of a `notify` that must wake a sleeping thread: `send`
/// hands the message over a bounded `std::sync::mpsc::sync_channel`
/// (`try_send`, no allocation) and writes the eventfd of a `mio::Waker`.
/// One thread, under SCHED_BATCH as the library's event loops are, waits
/// in `mio::Poll::poll`, and on each wake takes every message waiting and
/// reports it to the harness's probe as a receipt: the body's send stamp
/// gives notify → woken thread running, the latency of the wake alone.
pub(crate) struct Wake {
    waker: mio::Waker,
    /// `None` once dropped: the waiting thread then ends.
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Wake {
    /// Starts the waiting thread, which reports receipts to `probe`; at
    /// most `s.queue` messages wait for it.
    pub(crate) fn start(s: &Settings, probe: Arc<dyn Observer>) -> Result<Wake, String> {
        let mut poll = Poll::new().map_err(|e| format!("cannot create a poll: {e}"))?;
        let waker = mio::Waker::new(poll.registry(), Token(0))
            .map_err(|e| format!("cannot create a waker: {e}"))?;
        let (tx, rx) = std_mpsc::sync_channel::<Vec<u8>>(s.queue);
        let thread = spawn_waiter("wake", move || {
            let mut events = Events::with_capacity(8);
            loop {
                match poll.poll(&mut events, None) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => panic!("the wake thread cannot poll: {e}"),
                }
                if !take_waiting(&rx, &*probe) {
                    return;
                }
            }
        })?;
        Ok(Wake {
            waker,
            tx: Some(tx),
            thread: Some(thread),
        })
    }
}

/// The floor of the same `notify` with a futex for the wake: `send` hands
/// the message over the same bounded channel and calls `Thread::unpark`
/// on the waiting thread, which on Linux swaps an atomic and makes a
/// `FUTEX_WAKE` only when that thread is parked (or about to be); the
/// thread, under SCHED_BATCH, takes every message waiting, reports each
/// to the probe as [`Wake`]'s does, and `thread::park`s (`FUTEX_WAIT`).
pub(crate) struct WakeFutex {
    /// `None` once dropped: the waiting thread then ends.
    tx: Option<SyncSender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl WakeFutex {
    /// Starts the waiting thread, which reports receipts to `probe`; at
    /// most `s.queue` messages wait for it.
    pub(crate) fn start(s: &Settings, probe: Arc<dyn Observer>) -> Result<WakeFutex, String> {
        let (tx, rx) = std_mpsc::sync_channel::<Vec<u8>>(s.queue);
        let thread = spawn_waiter("wake-futex", move || {
            // An `unpark` between the last look and `park` makes `park`
            // return at once: no wake is lost.
            while take_waiting(&rx, &*probe) {
                thread::park();
            }
        })?;
        Ok(WakeFutex {
            tx: Some(tx),
            thread: Some(thread),
        })
    }
}

/// Spawns a wake floor's waiting thread, which runs `wait` under
/// SCHED_BATCH, as the library's event loops do; an error if the kernel
/// refuses that policy.
fn spawn_waiter(
    name: &str,
    wait: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, String> {
    let (ready_tx, ready) = std_mpsc::sync_channel(1);
    let thread = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let batch = notifier::__bench::batch_current_thread();
            let _ = ready_tx.send(batch);
            if batch {
                wait();
            }
        })
        .map_err(|e| e.to_string())?;
    let batch = ready
        .recv()
        .map_err(|_| format!("the {name} thread died"))?;
    if !batch {
        let _ = thread.join();
        return Err("the kernel refused SCHED_BATCH".to_owned());
    }
    Ok(thread)
}

/// Reports to `probe` every message waiting in `rx`; false once the
/// sender is gone.
fn take_waiting(rx: &Receiver<Vec<u8>>, probe: &dyn Observer) -> bool {
    loop {
        match rx.try_recv() {
            Ok(body) => probe.request(&body),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

/// A wake floor's hand-over: the message onto the channel, or back when
/// it is full.
fn hand_over(tx: &Option<SyncSender<Vec<u8>>>, body: Vec<u8>) -> Result<(), Vec<u8>> {
    let tx = tx.as_ref().expect("sender kept until drop");
    match tx.try_send(body) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(body)) => Err(body),
        Err(TrySendError::Disconnected(_)) => panic!("the wake thread is gone"),
    }
}

impl Pipe for Wake {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        hand_over(&self.tx, body)?;
        if let Err(e) = self.waker.wake() {
            panic!("the wake floor cannot wake: {e}");
        }
        Ok(())
    }

    fn shutdown(self: Box<Self>) {
        drop(self);
    }
}

impl Pipe for WakeFutex {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        hand_over(&self.tx, body)?;
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
        Ok(())
    }

    fn shutdown(self: Box<Self>) {
        drop(self);
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        self.tx = None;
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WakeFutex {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// reqwest + tokio
// ---------------------------------------------------------------------------

/// `workers` tokio tasks on a bounded mpsc, one shared `reqwest::Client`.
pub(crate) struct Reqwest {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Reqwest {
    pub(crate) fn start(s: &Settings) -> Result<Reqwest, String> {
        use reqwest::header::{HeaderValue, CONTENT_TYPE};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(s.queue);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let tasks = (0..s.workers)
            .map(|_| {
                let (client, url, rx, failed) =
                    (client.clone(), url.clone(), Arc::clone(&rx), s.failed());
                runtime.spawn(async move {
                    loop {
                        let Some(body) = rx.lock().await.recv().await else {
                            return;
                        };
                        let sent = client
                            .post(url.clone())
                            .header(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_CONTENT_TYPE))
                            .body(body)
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status().is_success() => {
                                // Read the (empty) body so the connection is reused.
                                if let Err(e) = response.bytes().await {
                                    failed(&e);
                                }
                            }
                            Ok(response) => failed(&response.status()),
                            Err(e) => failed(&e),
                        }
                    }
                })
            })
            .collect();
        Ok(Reqwest { tx, tasks, runtime })
    }
}

impl Pipe for Reqwest {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(body) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(body)) => Err(body),
            Err(TrySendError::Closed(_)) => panic!("the reqwest tasks are gone"),
        }
    }

    fn shutdown(self: Box<Self>) {
        let Reqwest { tx, tasks, runtime } = *self;
        drop(tx);
        runtime.block_on(async {
            for task in tasks {
                let _ = task.await;
            }
        });
    }
}

// ---------------------------------------------------------------------------
// ureq
// ---------------------------------------------------------------------------

/// `workers` threads on a bounded `sync_channel`, one `ureq::Agent` each.
pub(crate) struct Ureq {
    tx: SyncSender<Vec<u8>>,
    threads: Vec<JoinHandle<()>>,
}

impl Ureq {
    pub(crate) fn start(s: &Settings) -> Result<Ureq, String> {
        let uri: ureq::http::Uri = s.url.parse().map_err(|e| format!("{e}"))?;
        let (tx, rx) = std_mpsc::sync_channel::<Vec<u8>>(s.queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..s.workers)
            .map(|i| {
                let (uri, rx, failed) = (uri.clone(), Arc::clone(&rx), s.failed());
                thread::Builder::new()
                    .name(format!("ureq-{i}"))
                    .spawn(move || {
                        let agent = ureq::Agent::new_with_defaults();
                        loop {
                            let received = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(body) = received else {
                                return; // The sender is gone: shut down.
                            };
                            let sent = agent
                                .post(uri.clone())
                                .header("Content-Type", DEFAULT_CONTENT_TYPE)
                                .send(&body[..]);
                            match sent {
                                Ok(mut response) => {
                                    // Read the (empty) body so the connection is reused.
                                    let mut reader = response.body_mut().as_reader();
                                    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
                                        failed(&e);
                                    }
                                }
                                Err(e) => failed(&e),
                            }
                        }
                    })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Ureq { tx, threads })
    }
}

impl Pipe for Ureq {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.tx.try_send(body) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(body)) => Err(body),
            Err(TrySendError::Disconnected(_)) => panic!("the ureq threads are gone"),
        }
    }

    fn shutdown(self: Box<Self>) {
        let Ureq { tx, threads } = *self;
        drop(tx);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// raw sockets
// ---------------------------------------------------------------------------

/// `workers` blocking keep-alive connections and one prebuilt request.
pub(crate) struct Raw {
    pub(crate) conns: Vec<TcpStream>,
    /// Head and body; only the send time at the start of the body changes.
    pub(crate) request: Vec<u8>,
    /// Where the body starts in `request`.
    pub(crate) body_at: usize,
}

/// The sink's whole answer.
const RESPONSE_204: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

impl Raw {
    pub(crate) fn start(s: &Settings) -> Result<Raw, String> {
        let conns = (0..s.workers)
            .map(|_| {
                let conn = TcpStream::connect(s.addr)?;
                conn.set_nodelay(true)?;
                Ok(conn)
            })
            .collect::<io::Result<_>>()
            .map_err(|e: io::Error| e.to_string())?;
        let mut request = format!(
            "POST /notify HTTP/1.1\r\nHost: {}\r\nContent-Type: {DEFAULT_CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
            s.addr, s.size
        )
        .into_bytes();
        let body_at = request.len();
        request.resize(body_at + s.size, b'.');
        Ok(Raw {
            conns,
            request,
            body_at,
        })
    }
}

/// Sends one request on `conn` and reads its `204`.
pub(crate) fn raw_exchange(
    conn: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8; 256],
) -> io::Result<()> {
    conn.write_all(request)?;
    let mut have = 0;
    loop {
        let n = conn.read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if have >= RESPONSE_204.len() {
            return if &buf[..have] == RESPONSE_204 {
                Ok(())
            } else {
                Err(io::Error::other("unexpected response"))
            };
        }
    }
}
