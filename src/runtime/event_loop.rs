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

use crate::error::{Cause, Failure, FailureKind, NotificationError};
use crate::message::Message;
use crate::policy::ledger::{Attempt, Fate, Settled};
use crate::policy::CircuitState;
use crate::proto::compress::Compressor;
use crate::runtime::dial::slot_of;
use crate::runtime::job::{Job, Spare};
use crate::runtime::queue::{Entry, NEW, RUNNING, STOPPING};
use crate::runtime::shared::{deadline_after, LoopStats, Shared};
use crate::runtime::slot::{Ctx, Finished, Returned, Slot};
use crate::runtime::timers::RetryTimers;
use crate::runtime::watch::{Idle, Watch};
use crate::trace::{log_debug, log_warn};

/// The token of the loop's `mio::Waker`; slots' sockets carry their
/// slot's index (see [`slot_of`]).
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
    /// The batch being gathered, and when its first message was taken.
    /// It lingers only while a slot is free for it; once its slot finds
    /// it full, past its linger, or cut short, it goes.
    forming: Option<(Job, Instant)>,
    /// Ended jobs, for their buffers.
    spare: Spare,
    /// Compresses each new batch's body, when the client compresses.
    compressor: Option<Compressor>,
    /// Requests this loop formed: with its number, each one's half of its
    /// idempotency key.
    formed: u64,
    /// What the loop took from the queue and has not ended.
    held: Held,
    /// Messages ended since flush callers were last told.
    finished_any: bool,
    /// What the loop saw of arrivals, to decide whether to watch the
    /// queue or park when it has nothing to do.
    watch: Watch,
    /// Whether the loop counts among the queue's watchers now.
    watching: bool,
    /// Whether the loop found the queue empty since it last found work.
    found_empty: bool,
    /// The resolver's count of published lookups when the loop last let
    /// its slots see them.
    lookups_seen: u64,
}

/// Messages a loop took from the queue and has not ended: in a slot,
/// waiting for a retry, in the batch being formed, or in hand. If the loop
/// dies, this is how many fail with it, whether or not they can still be
/// found.
#[derive(Default)]
struct Held {
    count: usize,
    /// Messages taken from the queue, for the test-only fault hook.
    #[cfg(test)]
    taken: u64,
}

impl Held {
    /// Takes the oldest queued message for loop `id`; from here on the
    /// loop holds it.
    fn take(&mut self, shared: &Shared, id: usize) -> Option<Entry> {
        let entry = shared.queue.pop()?;
        self.count += 1;
        #[cfg(test)]
        {
            self.taken += 1;
            if shared.config.panic_at_message == Some((id, self.taken)) {
                panic!("injected fault: event loop {id} panics");
            }
        }
        #[cfg(not(test))]
        let _ = id;
        Some(entry)
    }
}

impl EventLoop {
    pub(crate) fn new(id: usize, poll: Poll, shared: Arc<Shared>) -> EventLoop {
        let slots = shared.config.slots_of(id);
        EventLoop {
            id,
            poll,
            slots: (0..slots).map(|i| Slot::new(Token(i))).collect(),
            retries: RetryTimers::default(),
            rng: fastrand::Rng::new(),
            forming: None,
            spare: Spare::new(slots),
            compressor: Compressor::new(shared.config.compression),
            formed: 0,
            held: Held::default(),
            finished_any: false,
            watch: Watch::new(shared.config.spin, shared.config.adaptive_spin),
            watching: false,
            found_empty: true,
            shared,
            lookups_seen: 0,
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
        // Nothing is left to deliver: no connection needs an address.
        self.shared.resolver.stop();
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
            self.fail_dropped();
            self.expire(now);
            self.addresses_published(now);
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
            self.open_ahead(now);
            if stopping && self.shared.queue.in_system() == 0 {
                self.stop_watching();
                return;
            }
            if free {
                self.found_empty = true;
                if !stopping && self.keep_watching(events, now) {
                    continue;
                }
            } else {
                // Busy: what is queued is another loop's.
                let watching = std::mem::take(&mut self.watching);
                self.shared.queue.hand_on(watching);
            }
            // A free slot may have met a message queued after `fill`
            // looked: `park` checks the queue again.
            let watching = std::mem::take(&mut self.watching);
            let parked = free && self.shared.queue.park(self.id, watching);
            if free && !parked {
                continue;
            }
            // Past the shutdown deadline, wait to be woken when the last
            // message leaves the system rather than spin on the deadline.
            self.wait(events, now, shutdown_at.filter(|&at| at > now), parked);
        }
    }

    /// With a free slot and nothing queued: watches the queue for one
    /// round (spins or dozes, handling socket events) if the loop should
    /// and may, and returns whether it did. A loop that watches counts
    /// among the queue's watchers, so producers need not wake it.
    fn keep_watching(&mut self, events: &mut Events, now: Instant) -> bool {
        let idle = self.watch.next(now);
        if !idle.watches() {
            return false;
        }
        if !self.watching {
            let fixed = matches!(idle, Idle::Spin { fixed: true });
            if !self.shared.queue.watch(fixed) {
                return false;
            }
            self.watching = true;
        }
        // Look at the sockets without blocking; the queue is looked at
        // again by the next `fill`.
        self.wait(events, now, Some(now), false);
        match idle {
            Idle::Doze(d) => std::thread::sleep(d),
            _ => std::hint::spin_loop(),
        }
        true
    }

    /// Leaves the queue's watchers if the loop is among them, waking a
    /// parked loop for whatever is queued.
    fn stop_watching(&mut self) {
        if std::mem::take(&mut self.watching) {
            self.shared.queue.hand_on(true);
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
            .chain(self.shared.unsent.next_deadline())
            .chain(self.linger_due())
            .chain(self.open_ahead_due(now))
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
            self.watch.socket_event(now);
        }
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let Some(slot) = self.slots.get_mut(slot_of(event.token())) else {
                continue;
            };
            let returned = slot.ready(
                &ctx(&self.poll, &self.shared, self.id),
                now,
                event.is_read_closed(),
            );
            if let Some(r) = returned {
                self.returned(r, now);
            }
        }
        self.tell_flush_waiters();
    }

    /// Acts on passed deadlines: of the slots, and of the requests that no
    /// slot of any loop could send in time.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            if self.slots[i].deadline().is_some_and(|d| d <= now) {
                let ended = self.slots[i].expire(&ctx(&self.poll, &self.shared, self.id), now);
                if let Some(r) = ended {
                    self.returned(r, now);
                }
            }
        }
        while let Some(unsent) = self.shared.unsent.pop_due(now) {
            self.held.count += unsent.len();
            let (mut job, failure) = unsent.lapse();
            let settled = self.shared.ledger.lapse(
                job.record(),
                failure,
                self.shared.millis(now),
                &mut self.rng,
            );
            self.follow(job, settled, now);
        }
    }

    /// Lets slots waiting for an address see the lookups published since
    /// the loop last looked (one atomic load when there are none).
    fn addresses_published(&mut self, now: Instant) {
        let published = self.shared.resolver.published();
        if published == self.lookups_seen {
            return;
        }
        self.lookups_seen = published;
        for i in 0..self.slots.len() {
            let ended =
                self.slots[i].address_published(&ctx(&self.poll, &self.shared, self.id), now);
            if let Some(r) = ended {
                self.returned(r, now);
            }
        }
    }

    /// Whether slots open connections ahead of messages now: with
    /// `preconnect`, while the client runs and the circuit is closed.
    fn opens_ahead(&self, now: Instant) -> bool {
        self.shared.config.preconnect
            && self.shared.queue.state() == RUNNING
            && self.shared.ledger.circuit(self.shared.millis(now)) == CircuitState::Closed
    }

    /// Opens a connection ahead of messages on every slot that has none
    /// and whose backoff after failed openings has passed.
    fn open_ahead(&mut self, now: Instant) {
        if !self.opens_ahead(now) {
            return;
        }
        let ctx = ctx(&self.poll, &self.shared, self.id);
        for slot in &mut self.slots {
            if slot.may_open_ahead(now) {
                slot.open_ahead(&ctx, now);
            }
        }
    }

    /// When the next slot backing off may open a connection ahead.
    fn open_ahead_due(&self, now: Instant) -> Option<Instant> {
        if !self.opens_ahead(now) {
            return None;
        }
        self.slots.iter().filter_map(Slot::opens_ahead_at).min()
    }

    /// Gives the requests that slots could not send for want of a socket,
    /// then due retries, then batches of queued messages, to free slots,
    /// idle connections first. Returns whether a slot is still free (so
    /// there was nothing left to send, or a batch lingers); a resting slot
    /// is not. A slot whose attempt ended at once takes the next job.
    fn fill(&mut self, now: Instant) -> bool {
        for idle_pass in [true, false] {
            for i in 0..self.slots.len() {
                while self.slots[i].is_free() && self.slots[i].is_idle() == idle_pass {
                    // A request a slot could not send goes first, as it
                    // was: admitted, its deadline running.
                    if let Some(unsent) = self.shared.unsent.pop() {
                        self.held.count += unsent.len();
                        let ctx = ctx(&self.poll, &self.shared, self.id);
                        if let Some(r) = self.slots[i].resume(unsent, &ctx, now) {
                            self.returned(r, now);
                        }
                        continue;
                    }
                    let mut job = match self.retries.pop_due(now) {
                        Some(job) => match self.expire_retry(job, now) {
                            Some(job) => job,
                            None => continue,
                        },
                        None => match self.next_batch(now) {
                            Some(job) => job,
                            None => return true,
                        },
                    };
                    let arrival = std::mem::take(&mut self.found_empty);
                    self.watch.found_work(now, arrival);
                    match self
                        .shared
                        .ledger
                        .admit(job.record(), self.shared.millis(now))
                    {
                        Ok(attempt) => {
                            #[cfg(feature = "tracing")]
                            if job.record().is_probe() {
                                log_debug!("circuit breaker half-open: this attempt is the probe");
                            }
                            if attempt == Attempt::Retry {
                                self.stats()
                                    .retried
                                    .fetch_add(job.len() as u64, Ordering::Relaxed);
                            }
                        }
                        Err(refused) => {
                            self.end(job, Err(refused));
                            continue;
                        }
                    }
                    let returned =
                        self.slots[i].assign(job, &ctx(&self.poll, &self.shared, self.id), now);
                    if let Some(r) = returned {
                        self.returned(r, now);
                    }
                }
            }
        }
        self.slots.iter().any(Slot::is_free)
    }

    /// The next batch for a free slot: the one being formed, topped up
    /// from the queue with up to `max_messages` whose framed body fits
    /// `max_bytes`, in queue order. `None` when nothing is queued, or
    /// while the batch lingers for more. A message that does not fit
    /// starts the batch after this one; one past its TTL is not sent. A
    /// new batch's body is compressed here, once, when the client
    /// compresses.
    fn next_batch(&mut self, now: Instant) -> Option<Job> {
        loop {
            let (mut job, since) = match self.forming.take() {
                Some(forming) => forming,
                None => (self.spare.get(), now),
            };
            let full = self.top_up(&mut job, now);
            if job.is_empty() {
                self.spare.put(job);
                return None;
            }
            let batching = &self.shared.config.batching;
            let lingered = deadline_after(since, batching.linger).is_some_and(|due| due <= now);
            if !(full || lingered || self.linger_cut_short()) {
                self.forming = Some((job, since));
                return None;
            }
            // Messages that expired while the batch lingered.
            self.expire_gathered(&mut job, now, None);
            if job.is_empty() {
                self.spare.put(job);
                continue;
            }
            return self.formed(job);
        }
    }

    /// Takes queued messages into `job` while they fit; whether it is full.
    /// A message already past its TTL ends here, unsent.
    fn top_up(&mut self, job: &mut Job, now: Instant) -> bool {
        let shared = &*self.shared;
        let batching = &shared.config.batching;
        while job.len() < batching.max_messages {
            let Some(Entry { msg, expires }) = self.held.take(shared, self.id) else {
                return false;
            };
            if expires.is_some_and(|at| at <= now) {
                let stats = &shared.loops[self.id];
                fail_message(
                    shared,
                    stats,
                    msg,
                    Failure::of(FailureKind::Expired),
                    0,
                    None,
                );
                self.held.count -= 1;
                self.finished_any = true;
                continue;
            }
            if !job.fits(&batching.framing, batching.max_bytes, msg.len()) {
                let mut next = self.spare.get();
                next.push(&batching.framing, msg, expires, batching.max_messages);
                self.forming = Some((next, now));
                return true;
            }
            job.push(&batching.framing, msg, expires, batching.max_messages);
        }
        true
    }

    /// A job becomes a request: it gets its idempotency key, and its body
    /// is compressed when the client compresses. `None` when compressing
    /// failed (the job ended).
    fn formed(&mut self, mut job: Job) -> Option<Job> {
        job.set_key((self.id as u64) << 48 | self.formed);
        self.formed = (self.formed + 1) & ((1 << 48) - 1);
        if let Some(compressor) = &mut self.compressor {
            if let Err(e) = job.pack(compressor, &self.shared.config.batching.framing) {
                let failure = Failure::caused(FailureKind::Internal, Cause::Io(e));
                self.end(job, Err(failure));
                return None;
            }
        }
        Some(job)
    }

    /// A retry now due leaves out its messages past their TTL; the rest go
    /// as they were, or, when some left, as a new request. `None` when
    /// none is left.
    fn expire_retry(&mut self, mut job: Job, now: Instant) -> Option<Job> {
        let before = job.len();
        if self.expire_gathered(&mut job, now, Some(before)) == 0 {
            return Some(job);
        }
        if job.is_empty() {
            self.spare.put(job);
            return None;
        }
        self.formed(job)
    }

    /// Ends the messages of `job` past their TTL as `Expired`, with the
    /// attempts made; `batch` is the length of the request they were
    /// part of, if they were.
    fn expire_gathered(&mut self, job: &mut Job, now: Instant, batch: Option<usize>) -> usize {
        if self.shared.config.message_ttl.is_none() {
            return 0;
        }
        let attempts = job.attempts();
        let shared = &*self.shared;
        let stats = &shared.loops[self.id];
        let batched = shared.config.batching.on;
        let expired = job.expire(now, &shared.config.batching.framing, |index, msg| {
            let place = batch.filter(|_| batched).map(|len| (index, len));
            let failure = Failure::of(FailureKind::Expired);
            fail_message(shared, stats, msg, failure, attempts, place);
        });
        if expired > 0 {
            self.held.count -= expired;
            self.finished_any = true;
        }
        expired
    }

    /// Ends a message the loop holds outside any request.
    fn fail_alone(&mut self, msg: Message, failure: Failure) {
        fail_message(&self.shared, self.stats(), msg, failure, 0, None);
        self.held.count -= 1;
        self.finished_any = true;
    }

    /// Hands the messages a full queue dropped to the error handler.
    fn fail_dropped(&mut self) {
        let shared = &*self.shared;
        let stats = &shared.loops[self.id];
        let finished = &mut self.finished_any;
        shared.queue.take_dropped(|msg| {
            let failure = Failure::of(FailureKind::Dropped);
            fail_message(shared, stats, msg, failure, 0, None);
            *finished = true;
        });
    }

    /// A lingering batch goes at once while `flush` waits or the client
    /// stops.
    fn linger_cut_short(&self) -> bool {
        self.shared.flushing() || self.shared.queue.state() == STOPPING
    }

    /// When the batch being formed must go, if a slot is free to take it.
    fn linger_due(&self) -> Option<Instant> {
        let (_, since) = self.forming.as_ref()?;
        if !self.slots.iter().any(Slot::is_free) {
            return None;
        }
        deadline_after(*since, self.shared.config.batching.linger)
    }

    /// What a slot gave back: an ended attempt is booked; a request it
    /// could not send waits for the next free slot of any loop (woken, in
    /// case they are parked).
    fn returned(&mut self, r: Returned, now: Instant) {
        match r {
            Returned::Finished(f) => self.attempt_ended(f, now),
            Returned::Unsent(unsent) => {
                self.held.count -= unsent.len();
                if self.shared.unsent.push(unsent) {
                    self.shared.queue.wake_all();
                }
            }
        }
    }

    /// Books an attempt's result: a retry goes on the timer, anything else
    /// ends the message.
    fn attempt_ended(&mut self, f: Finished, now: Instant) {
        let Finished { mut job, result } = f;
        let settled =
            self.shared
                .ledger
                .settle(job.record(), result, self.shared.millis(now), &mut self.rng);
        self.follow(job, settled, now);
    }

    /// Does what the ledger settled for `job`.
    fn follow(&mut self, job: Job, settled: Settled, now: Instant) {
        if settled.opened_circuit {
            log_warn!("circuit breaker opened");
            // Retries waiting on other loops must fail now, not sleep out
            // their backoff.
            self.shared.queue.wake_all();
        }
        if settled.closed_circuit {
            log_debug!("circuit breaker closed: the probe succeeded");
            if self.shared.config.preconnect {
                // Loops that held back their openings ahead resume them.
                self.shared.queue.wake_all();
            }
        }
        match settled.fate {
            Fate::Retry(wait) => {
                log_debug!(
                    messages = job.len(),
                    attempts = job.attempts(),
                    wait = ?wait,
                    "retry scheduled"
                );
                self.retries.push(deadline_after(now, wait), job)
            }
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
    /// (abandoned, their connections closed), retries waiting, the batch
    /// being formed, and, once the loop stops taking messages, the
    /// requests no slot could send and the queue's.
    fn give_up_all(&mut self, kind: FailureKind, now: Instant) {
        self.give_up_held(kind, now);
        let ms = self.shared.millis(now);
        while let Some(unsent) = self.shared.unsent.pop() {
            self.held.count += unsent.len();
            let mut job = unsent.into_job();
            let failure = self.shared.ledger.give_up(job.record(), kind, ms);
            self.end(job, Err(failure));
        }
        self.fail_dropped();
        while let Some(entry) = self.held.take(&self.shared, self.id) {
            self.fail_alone(entry.msg, Failure::of(kind));
        }
    }

    /// Ends the attempts under way (closing their connections), the
    /// retries waiting and the batch being formed with `kind`.
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
        if let Some((job, _)) = self.forming.take() {
            self.end(job, Err(Failure::of(kind)));
        }
    }

    /// After a panic: every message the loop held fails as `Internal`, the
    /// ones it can still find through the error handler, the ones the
    /// unwinding dropped counted only; then the loop is marked dead, so
    /// that no wake-up is spent on it. The last loop to die also fails
    /// what is queued and stops the client, since nothing would take it.
    fn die(&mut self) {
        // Never again parked or watching: a producer must not pick this
        // loop to wake, nor leave a message to it.
        self.shared.queue.unpark(self.id);
        self.stop_watching();
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
        for _ in 0..std::mem::take(&mut self.held.count) {
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

    /// Ends a job: counts its messages, hands each a failure to the
    /// handler, releases their places in the system, and keeps the job's
    /// buffers.
    fn end(&mut self, mut job: Job, result: Result<(), Failure>) {
        let n = job.len();
        let attempts = job.attempts();
        // Messages that never went as a request have no place in one.
        let batched = self.shared.config.batching.on && attempts > 0;
        let shared = &*self.shared;
        let stats = &shared.loops[self.id];
        match result {
            Ok(()) => {
                job.drain();
                stats.delivered.fetch_add(n as u64, Ordering::SeqCst);
                shared.queue.release_many(n);
            }
            Err(failure) => {
                let failures = failure.for_each_of(n);
                for (index, (msg, failure)) in job.drain().zip(failures).enumerate() {
                    let place = batched.then_some((index, n));
                    fail_message(shared, stats, msg, failure, attempts, place);
                }
            }
        }
        self.spare.put(job);
        self.held.count -= n;
        self.finished_any = true;
    }
}

/// What a slot needs from its loop.
fn ctx<'a>(poll: &'a Poll, shared: &'a Shared, id: usize) -> Ctx<'a> {
    Ctx {
        registry: poll.registry(),
        config: &shared.config,
        ledger: &shared.ledger,
        stats: &shared.loops[id],
        resolver: &shared.resolver,
        idle: &shared.idle,
    }
}

/// Counts a message's failure, hands it to the error handler (catching
/// its panics), and releases the message's place in the system. `place`
/// is its index in its batch and the batch's length, with batching on.
fn fail_message(
    shared: &Shared,
    stats: &LoopStats,
    msg: Message,
    failure: Failure,
    attempts: u32,
    place: Option<(usize, usize)>,
) {
    match failure.kind {
        FailureKind::Expired => stats.expired.fetch_add(1, Ordering::Relaxed),
        FailureKind::Dropped => stats.dropped.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
    if let Some(handler) = &shared.config.handler {
        let err = NotificationError::new(msg, failure, attempts, place);
        if catch_unwind(AssertUnwindSafe(|| handler(err))).is_err() {
            stats.handler_panics.fetch_add(1, Ordering::Relaxed);
        }
    }
    stats.failed.fetch_add(1, Ordering::SeqCst);
    shared.queue.release();
}

/// Every loop died: what is still queued, and what waits for a slot, fails
/// as `Internal`, counted on the last loop's books.
pub(crate) fn fail_stranded(shared: &Shared) {
    let Some(stats) = shared.loops.last() else {
        return;
    };
    shared.queue.take_dropped(|msg| {
        fail_message(
            shared,
            stats,
            msg,
            Failure::of(FailureKind::Dropped),
            0,
            None,
        );
    });
    while let Some(unsent) = shared.unsent.pop() {
        let mut job = unsent.into_job();
        let (n, attempts) = (job.len(), job.attempts());
        let ms = shared.millis(Instant::now());
        let failure = shared
            .ledger
            .give_up(job.record(), FailureKind::Internal, ms);
        let batched = shared.config.batching.on;
        for (index, (msg, failure)) in job.drain().zip(failure.for_each_of(n)).enumerate() {
            let place = batched.then_some((index, n));
            fail_message(shared, stats, msg, failure, attempts, place);
        }
    }
    while let Some(entry) = shared.queue.pop() {
        let failure = Failure::of(FailureKind::Internal);
        fail_message(shared, stats, entry.msg, failure, 0, None);
    }
}
