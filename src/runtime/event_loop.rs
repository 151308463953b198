//! One event loop: a thread with its own `mio::Poll`, a share of the
//! connection slots, the deadlines of their attempts, and the messages
//! waiting for a retry. It does what the ledger decides and counts it.

use std::cell::Cell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::error::{Failure, FailureKind, NotificationError};
use crate::message::Message;
use crate::policy::ledger::{Attempt, Fate};
use crate::policy::CircuitState;
use crate::runtime::queue::{NEW, STOPPING};
use crate::runtime::shared::{deadline_after, LoopStats, Shared};
use crate::runtime::slot::{Ctx, Finished, Job, Slot};
use crate::runtime::timers::RetryTimers;

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
    retries: RetryTimers,
    rng: fastrand::Rng,
    /// Messages this loop took from the queue and has not ended: in a
    /// slot, waiting for a retry, or in hand. If the loop dies, this is
    /// how many fail with it, whether or not they can still be found.
    held: usize,
    /// Messages ended since flush callers were last told.
    finished_any: bool,
    /// When the loop last found something to do; it spins (busy-polls)
    /// until `config.spin` after that before it parks.
    busy_at: Instant,
    /// Messages taken from the queue, for the test-only fault hook.
    #[cfg(test)]
    taken: u64,
}

impl EventLoop {
    pub(crate) fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> EventLoop {
        EventLoop {
            id,
            poll,
            slots: (0..shared.config.slots_of(id))
                .map(|i| Slot::new(Token(i)))
                .collect(),
            retries: RetryTimers::default(),
            rng: fastrand::Rng::new(),
            held: 0,
            finished_any: false,
            shared,
            busy_at: Instant::now(),
            #[cfg(test)]
            taken: 0,
        }
    }

    /// Waits for the client to start, serves until it stops and holds
    /// nothing, then closes its connections. A panic in the loop (a bug:
    /// the error handler's panics are caught where it is called) ends
    /// every message the loop held as [`FailureKind::Internal`] and leaves
    /// the other loops running.
    pub(crate) fn run(mut self) {
        ON_LOOP_THREAD.with(|f| f.set(true));
        let mut events = Events::with_capacity(self.slots.len() + 16);
        self.wait_for_start(&mut events);
        if catch_unwind(AssertUnwindSafe(|| self.serve(&mut events))).is_err() {
            self.die();
            return;
        }
        let registry = self.poll.registry();
        for slot in &mut self.slots {
            slot.close(registry);
        }
    }

    /// Blocks until `start` or `stop`. A client stopped before it started
    /// holds nothing, so serving it ends at once; one stopped right after
    /// it started must still deliver what it accepted.
    fn wait_for_start(&mut self, events: &mut Events) {
        while self.shared.queue.state() == NEW {
            if let Err(e) = self.poll.poll(events, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    fn serve(&mut self, events: &mut Events) {
        loop {
            let now = Instant::now();
            self.expire(now);
            self.fail_retries_if_open(now);
            let stopping = self.shared.queue.state() == STOPPING;
            let shutdown_at = if stopping {
                self.shared.shutdown_deadline()
            } else {
                None
            };
            let free = if shutdown_at.is_some_and(|at| at <= now) {
                self.give_up_all(FailureKind::Shutdown, now);
                true
            } else {
                self.fill(now)
            };
            if stopping && self.shared.queue.in_system() == 0 {
                return;
            }
            if free && now.saturating_duration_since(self.busy_at) < self.shared.config.spin {
                // Spinning: look at the sockets without blocking, then at
                // the queue again; producers never need to wake this loop.
                std::hint::spin_loop();
                self.wait(events, now, Some(now), false);
                continue;
            }
            // A free slot may have met a message queued after `fill`
            // looked: `park` checks the queue again.
            let parked = free && self.shared.queue.park(self.id);
            if free && !parked {
                continue;
            }
            // Past the shutdown deadline, wait to be woken when the last
            // message leaves the system rather than spin on the deadline.
            self.wait(events, now, shutdown_at.filter(|&at| at > now), parked);
        }
    }

    /// Polls until an event or the next deadline (or `wake_by`), then
    /// handles the events.
    fn wait(&mut self, events: &mut Events, now: Instant, wake_by: Option<Instant>, parked: bool) {
        let next = self
            .slots
            .iter()
            .filter_map(Slot::deadline)
            .chain(self.retries.next_due())
            .chain(wake_by)
            .min();
        let timeout = next.map(|at| at.saturating_duration_since(now));
        self.tell_flush_waiters();
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
        if !events.is_empty() {
            self.busy_at = now;
        }
        for event in events.iter() {
            let Some(slot) = self.slots.get_mut(event.token().0) else {
                continue; // the waker
            };
            let ended = slot.ready(&ctx(&self.poll, &self.shared), now, event.is_read_closed());
            if let Some(f) = ended {
                self.attempt_ended(f, now);
            }
        }
        self.tell_flush_waiters();
    }

    /// Acts on passed deadlines.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            if self.slots[i].deadline().is_some_and(|d| d <= now) {
                let ended = self.slots[i].expire(&ctx(&self.poll, &self.shared));
                if let Some(f) = ended {
                    self.attempt_ended(f, now);
                }
            }
        }
    }

    /// Gives due retries, then queued messages, to free slots, idle
    /// connections first. Returns whether a slot is still free (so there
    /// was nothing left to send). A slot whose attempt ended at once takes
    /// the next message.
    fn fill(&mut self, now: Instant) -> bool {
        for idle_pass in [true, false] {
            for i in 0..self.slots.len() {
                while self.slots[i].is_free() && self.slots[i].is_idle() == idle_pass {
                    let mut job = match self.retries.pop_due(now) {
                        Some(job) => job,
                        None => match self.take() {
                            Some(job) => job,
                            None => return true,
                        },
                    };
                    self.busy_at = now;
                    match self
                        .shared
                        .ledger
                        .admit(job.record(), self.shared.millis(now))
                    {
                        Ok(Attempt::First) => {}
                        Ok(Attempt::Retry) => {
                            self.stats().retried.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(refused) => {
                            self.end(job, Err(refused));
                            continue;
                        }
                    }
                    let ended = self.slots[i].assign(job, &ctx(&self.poll, &self.shared), now);
                    if let Some(f) = ended {
                        self.attempt_ended(f, now);
                    }
                }
            }
        }
        self.slots.iter().any(Slot::is_free)
    }

    /// Takes the oldest queued message; from here on the loop holds it.
    fn take(&mut self) -> Option<Job> {
        let msg = self.shared.queue.pop()?;
        self.held += 1;
        #[cfg(test)]
        {
            self.taken += 1;
            if self.shared.config.panic_at_message == Some((self.id, self.taken)) {
                panic!("injected fault: event loop {} panics", self.id);
            }
        }
        Some(Job::new(msg))
    }

    /// Books an attempt's result: a retry goes on the timer, anything else
    /// ends the message.
    fn attempt_ended(&mut self, f: Finished, now: Instant) {
        let Finished { mut job, result } = f;
        let settled =
            self.shared
                .ledger
                .settle(job.record(), result, self.shared.millis(now), &mut self.rng);
        if settled.opened_circuit {
            // Retries waiting on other loops must fail now, not sleep out
            // their backoff.
            self.shared.queue.wake_all();
        }
        match settled.fate {
            Fate::Retry(wait) => self.retries.push(deadline_after(now, wait), job),
            Fate::Delivered => self.end(job, Ok(())),
            Fate::Failed(failure) => self.end(job, Err(failure)),
        }
    }

    /// While the circuit is open, retries fail at once instead of waiting.
    fn fail_retries_if_open(&mut self, now: Instant) {
        if self.retries.is_empty()
            || self.shared.ledger.circuit(self.shared.millis(now)) != CircuitState::Open
        {
            return;
        }
        while let Some(mut job) = self.retries.pop() {
            let failure = self.shared.ledger.refuse_waiting(job.record());
            self.end(job, Err(failure));
        }
    }

    /// Ends everything the loop holds with `kind`: attempts under way
    /// (abandoned, their connections closed), retries waiting, and, once
    /// the loop stops taking messages, the queue's.
    fn give_up_all(&mut self, kind: FailureKind, now: Instant) {
        self.give_up_held(kind, now);
        while let Some(job) = self.take() {
            self.end(job, Err(Failure::of(kind)));
        }
    }

    /// Ends the attempts under way (closing their connections) and the
    /// retries waiting with `kind`.
    fn give_up_held(&mut self, kind: FailureKind, now: Instant) {
        let ms = self.shared.millis(now);
        for i in 0..self.slots.len() {
            if let Some(mut job) = self.slots[i].abandon(self.poll.registry()) {
                let failure = self.shared.ledger.give_up(job.record(), kind, ms);
                self.end(job, Err(failure));
            }
        }
        while let Some(mut job) = self.retries.pop() {
            let failure = self.shared.ledger.give_up(job.record(), kind, ms);
            self.end(job, Err(failure));
        }
    }

    /// After a panic: every message the loop held fails as `Internal`, the
    /// ones it can still find through the error handler, the ones the
    /// unwinding dropped counted only; then the loop is marked dead, so
    /// that no wake-up is spent on it. The last loop to die also fails
    /// what is queued and stops the client, since nothing would take it.
    fn die(&mut self) {
        // Never again parked: a producer must not pick this loop to wake.
        self.shared.queue.unpark(self.id);
        // Cleaning up may meet the same bug: what it cannot end, the count
        // below still does.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            self.give_up_held(FailureKind::Internal, Instant::now());
            let registry = self.poll.registry();
            for slot in &mut self.slots {
                slot.close(registry);
            }
        }));
        let stats = &self.shared.loops[self.id];
        for _ in 0..std::mem::take(&mut self.held) {
            stats.failed.fetch_add(1, Ordering::SeqCst);
            self.shared.queue.release();
        }
        if self.shared.loop_died(self.id) {
            self.shared.queue.stop();
            fail_stranded(&self.shared);
        }
        self.shared.queue.notify_flush_waiters();
    }

    /// Wakes `flush` callers when messages ended since the last call.
    fn tell_flush_waiters(&mut self) {
        if std::mem::take(&mut self.finished_any) {
            self.shared.queue.notify_flush_waiters();
        }
    }

    fn stats(&self) -> &LoopStats {
        &self.shared.loops[self.id]
    }

    /// Ends a job: counts it, hands a failure to the handler, and releases
    /// its place in the system.
    fn end(&mut self, job: Job, result: Result<(), Failure>) {
        let attempts = job.attempts();
        end_message(
            &self.shared,
            self.stats(),
            job.into_message(),
            attempts,
            result,
        );
        self.held -= 1;
        self.finished_any = true;
    }
}

/// What a slot needs from its loop.
fn ctx<'a>(poll: &'a Poll, shared: &'a Shared) -> Ctx<'a> {
    Ctx {
        registry: poll.registry(),
        config: &shared.config,
        ledger: &shared.ledger,
    }
}

/// Counts a message's end, hands a failure to the error handler (catching
/// its panics), and releases the message's place in the system.
fn end_message(
    shared: &Shared,
    stats: &LoopStats,
    msg: Message,
    attempts: u32,
    result: Result<(), Failure>,
) {
    match result {
        Ok(()) => {
            stats.delivered.fetch_add(1, Ordering::SeqCst);
        }
        Err(failure) => {
            if let Some(handler) = &shared.config.handler {
                let err = NotificationError::new(msg, failure, attempts);
                if catch_unwind(AssertUnwindSafe(|| handler(err))).is_err() {
                    stats.handler_panics.fetch_add(1, Ordering::Relaxed);
                }
            }
            stats.failed.fetch_add(1, Ordering::SeqCst);
        }
    }
    shared.queue.release();
}

/// Every loop died: what is still queued fails as `Internal`, counted on
/// the last loop's books.
pub(crate) fn fail_stranded(shared: &Shared) {
    let Some(stats) = shared.loops.last() else {
        return;
    };
    while let Some(msg) = shared.queue.pop() {
        end_message(
            shared,
            stats,
            msg,
            0,
            Err(Failure::of(FailureKind::Internal)),
        );
    }
}
