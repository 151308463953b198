//! One event loop: a thread with its own `mio::Poll`, a share of the
//! connection slots, and the deadlines of their attempts.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::client::Shared;
use crate::error::{Cause, FailureKind, NotificationError};
use crate::runtime::queue::STOPPING;
use crate::runtime::slot::{Ctx, Failure, Finished, Job, Slot};
use crate::stats::LoopStats;

/// The token of the loop's `mio::Waker`; slots use their index.
pub(crate) const WAKER: Token = Token(usize::MAX);

thread_local! {
    static ON_LOOP_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is one of a client's event loops (where
/// `stop` must not wait for the loops to end).
pub(crate) fn on_loop_thread() -> bool {
    ON_LOOP_THREAD.with(Cell::get)
}

/// One event loop, run by [`EventLoop::run`] on its own thread.
pub(crate) struct EventLoop {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    finished_any: bool,
}

impl EventLoop {
    pub(crate) fn new(id: usize, poll: Poll, shared: Arc<Shared>, slots: usize) -> EventLoop {
        EventLoop {
            id,
            poll,
            shared,
            slots: (0..slots).map(|i| Slot::new(Token(i))).collect(),
            finished_any: false,
        }
    }

    pub(crate) fn run(mut self) {
        ON_LOOP_THREAD.with(|f| f.set(true));
        let mut events = Events::with_capacity(self.slots.len() + 16);
        loop {
            let now = Instant::now();
            self.expire(now);
            let stopping = self.shared.queue.state() == STOPPING;
            let shutdown_at = if stopping {
                self.shared.shutdown_deadline.get().copied()
            } else {
                None
            };
            let free = if shutdown_at.is_some_and(|at| at <= now) {
                self.abandon();
                true
            } else {
                self.fill(now)
            };
            if stopping && self.shared.queue.in_system() == 0 {
                break;
            }
            // A free slot may have met a message queued after `fill`
            // looked: `park` checks the queue again.
            let parked = free && self.shared.queue.park(self.id);
            if free && !parked {
                continue;
            }
            // Past the shutdown deadline, wait to be woken when the last
            // message leaves the system rather than spin on the deadline.
            self.wait(&mut events, now, shutdown_at.filter(|&at| at > now), parked);
        }
        let registry = self.poll.registry();
        for slot in &mut self.slots {
            slot.close(registry);
        }
    }

    /// Polls until an event or the next deadline, then handles the events.
    fn wait(
        &mut self,
        events: &mut Events,
        now: Instant,
        shutdown_at: Option<Instant>,
        parked: bool,
    ) {
        let next = self
            .slots
            .iter()
            .filter_map(Slot::deadline)
            .chain(shutdown_at)
            .min();
        let timeout = next.map(|at| at.saturating_duration_since(now));
        let polled = self.poll.poll(events, timeout);
        if parked {
            self.shared.queue.unpark(self.id);
        }
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                // epoll_wait fails only on invalid arguments; do not spin
                // on such a failure.
                std::thread::sleep(Duration::from_millis(1));
            }
            return;
        }
        let now = Instant::now();
        for event in events.iter() {
            let token = event.token();
            if token == WAKER {
                continue;
            }
            let ctx = Ctx {
                registry: self.poll.registry(),
                config: &self.shared.config,
            };
            if let Some(slot) = self.slots.get_mut(token.0) {
                if let Some(f) = slot.ready(&ctx, now, event.is_read_closed()) {
                    finish(&self.shared, self.id, f);
                    self.finished_any = true;
                }
            }
        }
        if std::mem::take(&mut self.finished_any) {
            self.shared.queue.notify_flush_waiters();
        }
    }

    /// Acts on passed deadlines.
    fn expire(&mut self, now: Instant) {
        let ctx = Ctx {
            registry: self.poll.registry(),
            config: &self.shared.config,
        };
        for slot in &mut self.slots {
            if slot.deadline().is_some_and(|d| d <= now) {
                if let Some(f) = slot.expire(&ctx) {
                    finish(&self.shared, self.id, f);
                    self.finished_any = true;
                }
            }
        }
    }

    /// Gives queued messages to free slots, idle connections first. Returns
    /// whether a slot is still free (so the queue ran dry). A slot whose
    /// attempt ended at once (connection refused) takes the next message.
    fn fill(&mut self, now: Instant) -> bool {
        let ctx = Ctx {
            registry: self.poll.registry(),
            config: &self.shared.config,
        };
        for idle_pass in [true, false] {
            for slot in &mut self.slots {
                while slot.is_free() && slot.is_idle() == idle_pass {
                    let Some(msg) = self.shared.queue.pop() else {
                        return true;
                    };
                    if let Some(f) = slot.assign(Job::new(msg), &ctx, now) {
                        finish(&self.shared, self.id, f);
                        self.finished_any = true;
                    }
                }
            }
        }
        self.slots.iter().any(Slot::is_free)
    }

    /// Shutdown deadline passed: everything held goes to the handler.
    fn abandon(&mut self) {
        let ctx = Ctx {
            registry: self.poll.registry(),
            config: &self.shared.config,
        };
        for slot in &mut self.slots {
            if let Some(job) = slot.abandon(&ctx) {
                finish(&self.shared, self.id, shutdown(job));
            }
        }
        while let Some(msg) = self.shared.queue.pop() {
            finish(&self.shared, self.id, shutdown(Job::new(msg)));
        }
        self.finished_any = true;
    }
}

fn shutdown(job: Job) -> Finished {
    Finished {
        job,
        result: Err(Failure {
            kind: FailureKind::Shutdown,
            status: None,
            cause: Cause::None,
        }),
    }
}

/// Ends a job: counts it, hands a failure to the handler, and releases its
/// place in the system.
fn finish(shared: &Shared, id: usize, f: Finished) {
    let stats: &LoopStats = &shared.loops[id].0;
    match f.result {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::SeqCst);
        }
        Err(failure) => {
            if let Some(handler) = &shared.config.handler {
                let err = NotificationError::new(
                    f.job.msg,
                    failure.kind,
                    failure.status,
                    f.job.attempts,
                    failure.cause,
                );
                if catch_unwind(AssertUnwindSafe(|| handler(err))).is_err() {
                    stats.handler_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            stats.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
    shared.queue.release();
}
