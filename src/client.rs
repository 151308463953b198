//! Client: start / notify / flush / stop / stats.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::builder::{Builder, Config};
use crate::error::{BuildError, NotifyError};
use crate::message::Message;
use crate::policy::CircuitState;
use crate::runtime::event_loop::{on_loop_thread, EventLoop, WAKER};
use crate::runtime::queue::{Padded, Queue, Refused, NEW};
use crate::runtime::{deadline_after, sched};
use crate::stats::{LoopStats, Stats};

/// State shared by the client handle and its event loops.
pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) config: Config,
    pub(crate) loops: Box<[Padded<LoopStats>]>,
    pub(crate) shutdown_deadline: OnceLock<Instant>,
    /// The breaker's clock counts milliseconds from here.
    pub(crate) epoch: Instant,
}

impl Shared {
    /// Milliseconds since the client was built, the circuit breaker's time.
    pub(crate) fn millis(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// Sends notifications to one HTTP endpoint from background event loops.
///
/// `Client` is `Send + Sync`: share it with an `Arc` and call
/// [`notify`](Client::notify) from any number of threads. `notify` puts the
/// message in a bounded lock-free queue and returns; it never waits for the
/// network and, while the event loops are busy, makes no syscall.
///
/// # Delivery
///
/// Every accepted message ends exactly once: delivered (the server answered
/// 2xx) or handed to the error handler. Without retry a message is sent at
/// most once: a request written to a connection that then fails before any
/// response byte is reported as [`FailureKind::Io`](crate::FailureKind::Io),
/// not sent again, since the server may have acted on it. Messages are
/// taken from the queue in order but delivered over several connections at
/// once, so they may arrive out of order; use `workers(1)` for order.
///
/// # Examples
///
/// ```no_run
/// use notifier::Client;
///
/// let client = Client::new("http://127.0.0.1:8080/hook")?;
/// client.start();
/// if let Err(e) = client.notify("price update") {
///     eprintln!("not sent: {e}");
/// }
/// client.stop(); // delivers what was accepted, then joins the loops
/// # Ok::<(), notifier::BuildError>(())
/// ```
pub struct Client {
    shared: Arc<Shared>,
    /// The loops' poll instances, made at build time, run at start.
    pending: Mutex<Vec<(Poll, usize)>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `url` with every default (10 workers, a queue of 1000,
    /// a 30 s timeout). Equivalent to `Client::builder(url).build()`.
    pub fn new(url: &str) -> Result<Client, BuildError> {
        Client::builder(url).build()
    }

    /// A builder for a client of `url`.
    pub fn builder(url: &str) -> Builder {
        Builder::new(url)
    }

    pub(crate) fn from_config(config: Config) -> Result<Client, BuildError> {
        let mut polls = Vec::with_capacity(config.threads);
        let mut wakers = Vec::with_capacity(config.threads);
        for i in 0..config.threads {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKER)?);
            let slots =
                config.workers / config.threads + usize::from(i < config.workers % config.threads);
            polls.push((poll, slots));
        }
        let queue = Queue::new(config.queue_size + config.workers, wakers);
        let loops = (0..config.threads).map(|_| Padded::default()).collect();
        Ok(Client {
            shared: Arc::new(Shared {
                queue,
                config,
                loops,
                shutdown_deadline: OnceLock::new(),
                epoch: Instant::now(),
            }),
            pending: Mutex::new(polls),
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Starts the event loops. Calling it again, or after
    /// [`stop`](Client::stop), has no effect.
    ///
    /// # Panics
    ///
    /// If the operating system cannot create a thread, like
    /// [`std::thread::spawn`].
    pub fn start(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !self.shared.queue.start() {
            return;
        }
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let batch = self.shared.config.batch_scheduling;
        let cores = if self.shared.config.pin_threads {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        for (id, (poll, slots)) in pending.drain(..).enumerate() {
            let event_loop = EventLoop::new(id, poll, Arc::clone(&self.shared), slots);
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let handle = std::thread::Builder::new()
                .name(format!("notifier-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Unpinned is the documented fallback when the
                        // platform refuses.
                        let _pinned: bool = core_affinity::set_for_current(core);
                    }
                    if batch {
                        // The documented fallback where refused: the
                        // default policy.
                        let _batch: bool = sched::batch_current_thread();
                    }
                    event_loop.run()
                })
                .expect("cannot spawn an event-loop thread");
            threads.push(handle);
        }
    }

    /// Hands `msg` to the client for delivery and returns at once.
    ///
    /// Fails, handing the message back, when the client is not started,
    /// is stopped, or already holds `queue_size + workers` messages
    /// (queued or in flight): that is backpressure, and the caller decides
    /// whether to drop, retry later or block.
    ///
    /// `notify` takes no lock and makes no syscall except to wake an event
    /// loop that had nothing to do (one `eventfd` write).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use notifier::{Client, NotifyError};
    ///
    /// let client = Client::new("http://127.0.0.1:8080/")?;
    /// client.start();
    /// match client.notify(b"tick".as_slice()) {
    ///     Ok(()) => {}
    ///     Err(NotifyError::QueueFull(msg)) => { /* keep `msg` for later */ }
    ///     Err(e) => eprintln!("{e}"),
    /// }
    /// # Ok::<(), notifier::BuildError>(())
    /// ```
    pub fn notify(&self, msg: impl Into<Message>) -> Result<(), NotifyError> {
        self.shared
            .queue
            .push(msg.into())
            .map_err(|(why, msg)| match why {
                Refused::NotStarted => NotifyError::NotStarted(msg),
                Refused::Full => NotifyError::QueueFull(msg),
                Refused::Stopped => NotifyError::Stopped(msg),
            })
    }

    /// Waits until every message accepted before the call is delivered or
    /// handed to the error handler, for at most `timeout`. Returns whether
    /// they all were. Messages accepted meanwhile are not waited for.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.shared.queue.accepted();
        let deadline = Instant::now().checked_add(timeout);
        let done = || {
            let s = self.stats();
            s.delivered + s.failed >= target
        };
        if done() {
            return true;
        }
        self.shared.queue.add_flush_waiter();
        let result = loop {
            if done() {
                break true;
            }
            let now = Instant::now();
            let left = match deadline {
                Some(d) if d <= now => break false,
                Some(d) => d - now,
                None => Duration::from_secs(1),
            };
            // Unparked by the loops as messages finish; the bound only
            // guards against a missed unpark.
            std::thread::park_timeout(left.min(Duration::from_millis(50)));
        };
        self.shared.queue.remove_flush_waiter();
        result
    }

    /// Stops accepting messages, delivers everything already accepted
    /// (bounded by the builder's `shutdown_timeout`, past which the rest
    /// goes to the error handler as `Shutdown`), then joins the event
    /// loops. Idempotent; a stopped client cannot be restarted.
    ///
    /// Called from the error handler (an event-loop thread) it starts the
    /// shutdown but does not wait for it.
    pub fn stop(&self) {
        if let Some(d) = self.shared.config.shutdown_timeout {
            // Set before the state changes, so the loops see it with it.
            let _ = self
                .shared
                .shutdown_deadline
                .set(deadline_after(Instant::now(), d));
        }
        let before = self.shared.queue.stop();
        if before == NEW {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        if on_loop_thread() {
            return;
        }
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        for handle in threads.drain(..) {
            // A loop never panics (handler panics are caught); if one did,
            // there is nothing left to join.
            let _ = handle.join();
        }
    }

    /// A snapshot of the client's counters.
    pub fn stats(&self) -> Stats {
        let q = &self.shared.queue;
        let queued = q.queued();
        let circuit = match &self.shared.config.breaker {
            Some(b) => b.state(self.shared.millis(Instant::now())),
            None => CircuitState::Closed,
        };
        let mut s = Stats {
            accepted: q.accepted(),
            delivered: 0,
            failed: 0,
            retried: 0,
            rejected: q.rejected(),
            wakeups: q.wakeups(),
            handler_panics: 0,
            queued,
            in_flight: q.in_system().saturating_sub(queued),
            circuit,
        };
        for l in self.shared.loops.iter() {
            l.0.add_to(&mut s);
        }
        s
    }
}

impl Drop for Client {
    /// Same as [`Client::stop`].
    fn drop(&mut self) {
        self.stop();
    }
}
