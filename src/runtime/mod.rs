//! The only place with sockets, threads and clocks: the shared queue, the
//! event loops that drain it, and the resolver thread that looks the
//! endpoint's host name up for them.

pub(crate) mod dial;
pub(crate) mod event_loop;
pub(crate) mod handoff;
pub(crate) mod job;
pub(crate) mod park;
pub(crate) mod queue;
pub(crate) mod resolver;
pub(crate) mod sched;
pub(crate) mod shared;
pub(crate) mod slot;
pub(crate) mod timers;
pub(crate) mod watch;

use std::io;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Poll, Waker};

use crate::config::{Config, Overflow, DROP_HANDOFF};
use crate::message::Message;
use crate::stats::Stats;
use event_loop::{on_loop_thread, EventLoop, WAKER};
use queue::{Queue, Refused};
use shared::Shared;

/// A client's running part: the shared state, the event-loop threads and,
/// for a host name, the resolver's thread.
///
/// The threads are spawned when it is made and wait for [`Runtime::start`]
/// (or [`Runtime::stop`]), so a thread that cannot be spawned is an error
/// of the build, never a panic of `start`. The resolver's thread is not
/// joined: a lookup cannot be cut short, so one under way at `stop` is
/// left to end on its own, and the thread with it.
pub(crate) struct Runtime {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Runtime {
    /// Makes the queue and the event loops and spawns their threads, which
    /// wait for `start`. On failure nothing is left running.
    pub(crate) fn new(config: Config) -> io::Result<Runtime> {
        let mut polls = Vec::with_capacity(config.threads);
        let mut wakers = Vec::with_capacity(config.threads);
        for _ in 0..config.threads {
            let poll = Poll::new()?;
            wakers.push(Waker::new(poll.registry(), WAKER)?);
            polls.push(poll);
        }
        let drop_oldest = (config.overflow == Overflow::DropOldest).then_some(DROP_HANDOFF);
        let queue = Queue::new(
            config.capacity(),
            config.queue_capacity(),
            wakers,
            drop_oldest,
            config.message_ttl,
        );
        let runtime = Runtime {
            shared: Arc::new(Shared::new(config, queue)),
            threads: Mutex::new(Vec::with_capacity(polls.len())),
        };
        let cores = if runtime.shared.config.pin_threads {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        for (id, poll) in polls.into_iter().enumerate() {
            let event_loop = EventLoop::new(id, poll, Arc::clone(&runtime.shared));
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let batch = runtime.shared.config.batch_scheduling;
            let spawned = std::thread::Builder::new()
                .name(format!("notifier-{id}"))
                .spawn(move || {
                    if let Some(core) = core {
                        // Unpinned is the documented fallback when the
                        // platform refuses.
                        let _pinned: bool = core_affinity::set_for_current(core);
                    }
                    // Dozing loops sleep tens of microseconds: the default
                    // slack would stretch each sleep by up to 50 µs.
                    sched::fine_timer_slack();
                    if batch {
                        // The documented fallback where refused: the
                        // default policy.
                        let _batch: bool = sched::batch_current_thread();
                    }
                    event_loop.run();
                });
            match spawned {
                Ok(handle) => runtime.lock_threads().push(handle),
                Err(e) => {
                    // The loops spawned so far end, never started.
                    runtime.stop();
                    return Err(e);
                }
            }
        }
        if runtime.shared.resolver.needs_thread() {
            // Each published lookup wakes the loops, whose slots may wait
            // for it; the thread does not keep the client's state alive.
            let shared = Arc::downgrade(&runtime.shared);
            let spawned = resolver::spawn(
                Arc::clone(&runtime.shared.resolver),
                &runtime.shared.config,
                move || {
                    if let Some(shared) = shared.upgrade() {
                        shared.queue.wake_all();
                    }
                },
            );
            if let Err(e) = spawned {
                runtime.stop();
                return Err(e);
            }
        }
        Ok(runtime)
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Lets the loops run; no effect once started or stopped.
    pub(crate) fn start(&self) {
        if self.shared.queue.start() {
            self.shared.resolver.start();
            self.shared.queue.wake_all();
        }
    }

    pub(crate) fn push(&self, msg: Message) -> Result<(), (Refused, Message)> {
        self.shared.queue.push(msg)
    }

    /// Waits until every message accepted before the call has ended, for
    /// at most `timeout`; whether they all had.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
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
        // Lingering batches go at once while a flush waits for them.
        self.shared.flush_waits(true);
        if self.shared.config.batching.linger > Duration::ZERO {
            self.shared.queue.wake_all();
        }
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
        self.shared.flush_waits(false);
        self.shared.queue.remove_flush_waiter();
        result
    }

    /// Stops accepting, lets the loops deliver or fail what they hold, and
    /// joins them (unless called from a loop thread, which must not wait
    /// for itself). If every loop died, what is left in the queue fails
    /// here, on the caller's thread.
    pub(crate) fn stop(&self) {
        if let Some(d) = self.shared.config.shutdown_timeout {
            // Set before the state changes, so the loops see it with it.
            self.shared.set_shutdown_deadline(Instant::now(), d);
        }
        self.shared.queue.stop();
        if on_loop_thread() {
            return;
        }
        for handle in self.lock_threads().drain(..) {
            // A loop's own panics are caught in the loop; there is nothing
            // left to report from a join.
            let _ = handle.join();
        }
        // No loop needs an address any more.
        self.shared.resolver.stop();
        if self.shared.all_loops_dead() {
            event_loop::fail_stranded(&self.shared);
        }
    }

    pub(crate) fn stats(&self) -> Stats {
        self.shared.stats()
    }
}

#[cfg(test)]
mod tests;
