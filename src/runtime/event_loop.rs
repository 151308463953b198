//! One event loop: a thread with its own `mio::Poll`, a share of the
//! connection slots, the deadlines of their attempts, and the messages
//! waiting for a retry.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::client::Shared;
use crate::error::{Cause, FailureKind, NotificationError};
use crate::policy::CircuitState;
use crate::runtime::deadline_after;
use crate::runtime::queue::STOPPING;
use crate::runtime::slot::{Ctx, Failure, Finished, Job, Slot};
use crate::runtime::timers::RetryTimers;
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
    poll: Poll,
    shared: Arc<Shared>,
    slots: Vec<Slot>,
    outcomes: Outcomes,
    /// When the loop last found something to do; it spins (busy-polls)
    /// until `config.spin` after that before it parks.
    busy_at: Instant,
}

impl EventLoop {
    pub(crate) fn new(id: usize, poll: Poll, shared: Arc<Shared>, slots: usize) -> EventLoop {
        EventLoop {
            poll,
            slots: (0..slots).map(|i| Slot::new(Token(i))).collect(),
            outcomes: Outcomes {
                id,
                shared: Arc::clone(&shared),
                retries: RetryTimers::default(),
                rng: fastrand::Rng::new(),
                finished_any: false,
            },
            shared,
            busy_at: Instant::now(),
        }
    }

    pub(crate) fn run(mut self) {
        ON_LOOP_THREAD.with(|f| f.set(true));
        let id = self.outcomes.id;
        let mut events = Events::with_capacity(self.slots.len() + 16);
        loop {
            let now = Instant::now();
            self.expire(now);
            self.outcomes.fail_retries_if_open(now);
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
            if free && now.saturating_duration_since(self.busy_at) < self.shared.config.spin {
                // Spinning: look at the sockets without blocking, then at
                // the queue again; producers never need to wake this loop.
                std::hint::spin_loop();
                self.wait(&mut events, now, Some(now), false);
                continue;
            }
            // A free slot may have met a message queued after `fill`
            // looked: `park` checks the queue again.
            let parked = free && self.shared.queue.park(id);
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

    /// Polls until an event or the next deadline (or `wake_by`), then
    /// handles the events.
    fn wait(&mut self, events: &mut Events, now: Instant, wake_by: Option<Instant>, parked: bool) {
        let next = self
            .slots
            .iter()
            .filter_map(Slot::deadline)
            .chain(self.outcomes.retries.next_due())
            .chain(wake_by)
            .min();
        let timeout = next.map(|at| at.saturating_duration_since(now));
        self.outcomes.tell_flush_waiters();
        let polled = self.poll.poll(events, timeout);
        if parked {
            self.shared.queue.unpark(self.outcomes.id);
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
        if !events.is_empty() {
            self.busy_at = now;
        }
        let ctx = Ctx {
            registry: self.poll.registry(),
            config: &self.shared.config,
        };
        for event in events.iter() {
            let token = event.token();
            if token == WAKER {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(token.0) {
                if let Some(f) = slot.ready(&ctx, now, event.is_read_closed()) {
                    self.outcomes.attempt_ended(f, now);
                }
            }
        }
        self.outcomes.tell_flush_waiters();
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
                    self.outcomes.attempt_ended(f, now);
                }
            }
        }
    }

    /// Gives due retries, then queued messages, to free slots, idle
    /// connections first. Returns whether a slot is still free (so there
    /// was nothing left to send). A slot whose attempt ended at once takes
    /// the next message.
    fn fill(&mut self, now: Instant) -> bool {
        let ctx = Ctx {
            registry: self.poll.registry(),
            config: &self.shared.config,
        };
        for idle_pass in [true, false] {
            for slot in &mut self.slots {
                while slot.is_free() && slot.is_idle() == idle_pass {
                    let job = match self.outcomes.retries.pop_due(now) {
                        Some(job) => job,
                        None => match self.shared.queue.pop() {
                            Some(msg) => Job::new(msg),
                            None => return true,
                        },
                    };
                    self.busy_at = now;
                    let Some(job) = self.outcomes.admit(job, now) else {
                        continue;
                    };
                    if let Some(f) = slot.assign(job, &ctx, now) {
                        self.outcomes.attempt_ended(f, now);
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
            if let Some(mut job) = slot.abandon(&ctx) {
                if let (Some(breaker), Some(ticket)) =
                    (&self.shared.config.breaker, job.ticket.take())
                {
                    breaker.on_neutral(ticket, self.shared.millis(Instant::now()));
                }
                self.outcomes.end(job, failure(FailureKind::Shutdown));
            }
        }
        self.outcomes.fail_retries(FailureKind::Shutdown);
        while let Some(msg) = self.shared.queue.pop() {
            self.outcomes
                .end(Job::new(msg), failure(FailureKind::Shutdown));
        }
    }
}

fn failure(kind: FailureKind) -> Result<(), Failure> {
    Err(Failure {
        kind,
        status: None,
        cause: Cause::None,
        retry_after: None,
    })
}

/// How an attempt's result counts for the circuit breaker.
enum Verdict {
    Success,
    Failure,
    Neither,
}

fn verdict(result: &Result<(), Failure>) -> Verdict {
    match result {
        Ok(()) => Verdict::Success,
        Err(f) => match f.kind {
            FailureKind::Status if f.status.is_some_and(|s| s >= 500) => Verdict::Failure,
            FailureKind::Status | FailureKind::Shutdown | FailureKind::CircuitOpen => {
                Verdict::Neither
            }
            _ => Verdict::Failure,
        },
    }
}

/// What the loop does with attempts that ended: the breaker's bookkeeping,
/// retries, counting, and the error handler.
struct Outcomes {
    id: usize,
    shared: Arc<Shared>,
    retries: RetryTimers,
    rng: fastrand::Rng,
    finished_any: bool,
}

impl Outcomes {
    /// Counts an attempt for `job` and asks the breaker. `None` when the
    /// circuit refused it (the job has then ended with `CircuitOpen`).
    fn admit(&mut self, mut job: Job, now: Instant) -> Option<Job> {
        let retry = job.attempts > 0;
        job.attempts += 1;
        if let Some(breaker) = &self.shared.config.breaker {
            match breaker.allow(self.shared.millis(now)) {
                Some(ticket) => job.ticket = Some(ticket),
                None => {
                    self.end(job, failure(FailureKind::CircuitOpen));
                    return None;
                }
            }
        }
        if retry {
            self.stats().retried.fetch_add(1, Ordering::Relaxed);
        }
        Some(job)
    }

    /// Records an attempt's result and either schedules a retry or ends
    /// the job.
    fn attempt_ended(&mut self, f: Finished, now: Instant) {
        let Finished { mut job, result } = f;
        if let (Some(breaker), Some(ticket)) = (&self.shared.config.breaker, job.ticket.take()) {
            let ms = self.shared.millis(now);
            match verdict(&result) {
                Verdict::Success => breaker.on_success(ticket),
                Verdict::Neither => breaker.on_neutral(ticket, ms),
                Verdict::Failure => {
                    let was_open = breaker.state(ms) == CircuitState::Open;
                    breaker.on_failure(ticket, ms);
                    if !was_open && breaker.state(ms) == CircuitState::Open {
                        // Retries waiting on other loops must fail now, not
                        // sleep out their backoff.
                        self.shared.queue.wake_all();
                    }
                }
            }
        }
        if let (Err(f), Some(retry)) = (&result, &self.shared.config.retry) {
            if f.kind.is_retryable(f.status) {
                if let Some(delay) = retry.next_delay(job.attempts, f.retry_after, &mut self.rng) {
                    self.retries.push(deadline_after(now, delay), job);
                    return;
                }
            }
        }
        self.end(job, result);
    }

    /// While the circuit is open, retries fail at once instead of waiting.
    fn fail_retries_if_open(&mut self, now: Instant) {
        if self.retries.is_empty() {
            return;
        }
        if let Some(breaker) = &self.shared.config.breaker {
            if breaker.state(self.shared.millis(now)) == CircuitState::Open {
                self.fail_retries(FailureKind::CircuitOpen);
            }
        }
    }

    fn fail_retries(&mut self, kind: FailureKind) {
        while let Some(mut job) = self.retries.pop() {
            if kind == FailureKind::CircuitOpen {
                // The retry the open circuit refuses is an attempt too.
                job.attempts += 1;
            }
            self.end(job, failure(kind));
        }
    }

    /// Wakes `flush` callers when messages ended since the last call.
    fn tell_flush_waiters(&mut self) {
        if std::mem::take(&mut self.finished_any) {
            self.shared.queue.notify_flush_waiters();
        }
    }

    fn stats(&self) -> &LoopStats {
        &self.shared.loops[self.id].0
    }

    /// Ends a job: counts it, hands a failure to the handler, and releases
    /// its place in the system.
    fn end(&mut self, job: Job, result: Result<(), Failure>) {
        let shared = &*self.shared;
        let stats = &shared.loops[self.id].0;
        match result {
            Ok(()) => {
                stats.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err(failure) => {
                if let Some(handler) = &shared.config.handler {
                    let err = NotificationError::new(
                        job.msg,
                        failure.kind,
                        failure.status,
                        job.attempts,
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
        self.finished_any = true;
    }
}
