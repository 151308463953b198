//! The bounded queue between callers and event loops, the in-system counter
//! that bounds memory, and the park/wake protocol that keeps `notify` free of
//! syscalls while the loops are busy.
//!
//! The park/wake protocol itself lives in [`super::park`]; the queue
//! calls it after each push and around each loop's poll.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;

use super::park::Parking;
use crate::message::Message;

/// Client states; the only transitions are NEW → RUNNING → STOPPING and
/// NEW → STOPPING.
pub(crate) const NEW: u8 = 0;
pub(crate) const RUNNING: u8 = 1;
pub(crate) const STOPPING: u8 = 2;

/// Why a message was not enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    NotStarted,
    Full,
    Stopped,
}

/// Counters written by the callers of `notify`.
#[derive(Debug, Default)]
struct Intake {
    /// Messages accepted and not yet finished: queued, in flight, or
    /// waiting for a retry.
    in_system: AtomicUsize,
    accepted: AtomicU64,
}

/// A queued message and when it expires (`None`: no TTL).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) msg: Message,
    pub(crate) expires: Option<Instant>,
}

/// The queue's ring: of bare messages without a TTL, so that `notify`
/// writes no more than the message; of entries with their expiry with one.
#[derive(Debug)]
enum Ring {
    Plain(ArrayQueue<Message>),
    Timed(ArrayQueue<Entry>),
}

impl Ring {
    fn new(capacity: usize, timed: bool) -> Ring {
        if timed {
            Ring::Timed(ArrayQueue::new(capacity))
        } else {
            Ring::Plain(ArrayQueue::new(capacity))
        }
    }

    #[inline(always)]
    fn push(&self, entry: Entry) -> Result<(), Entry> {
        match self {
            Ring::Plain(ring) => ring
                .push(entry.msg)
                .map_err(|msg| Entry { msg, expires: None }),
            Ring::Timed(ring) => ring.push(entry),
        }
    }

    fn force_push(&self, entry: Entry) -> Option<Entry> {
        match self {
            Ring::Plain(ring) => ring
                .force_push(entry.msg)
                .map(|msg| Entry { msg, expires: None }),
            Ring::Timed(ring) => ring.force_push(entry),
        }
    }

    #[inline(always)]
    fn pop(&self) -> Option<Entry> {
        match self {
            Ring::Plain(ring) => ring.pop().map(|msg| Entry { msg, expires: None }),
            Ring::Timed(ring) => ring.pop(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Ring::Plain(ring) => ring.len(),
            Ring::Timed(ring) => ring.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Messages a full queue dropped to take newer ones, on their way to an
/// event loop that hands them to the error handler. Bounded: a place is
/// reserved before a push that may drop, so the ring never refuses one.
#[derive(Debug)]
struct Dropped {
    ring: ArrayQueue<Message>,
    reserved: AtomicUsize,
    /// Set by a push that dropped a message, cleared by a loop before it
    /// drains the hand-off: a drop wakes the loops when nobody has been
    /// told yet, since a loop whose slots are all busy is not parked and
    /// would otherwise not look until its next socket event.
    told: AtomicBool,
}

/// Shared between the client handle and every event loop.
#[derive(Debug)]
pub(crate) struct Queue {
    queue: Ring,
    capacity: usize,
    /// How long a message may take to be sent, from its `notify`.
    ttl: Option<Duration>,
    /// Set when a full queue drops its oldest message.
    dropped: Option<Box<Dropped>>,
    intake: CachePadded<Intake>,
    rejected: CachePadded<AtomicU64>,
    /// `notify` calls that woke a parked loop.
    wakeups: CachePadded<AtomicU64>,
    state: AtomicU8,
    parking: Parking,
    wakers: Box<[mio::Waker]>,
    flush_waiters: Mutex<Vec<Thread>>,
    flush_waiting: AtomicUsize,
}

impl Queue {
    /// A queue holding at most `capacity` messages in the system, at most
    /// `ring` of them queued, for loops woken by `wakers` (one per loop).
    /// With a `ttl`, entries carry their expiry. With `drop_oldest` a full
    /// queue drops its oldest message to take a new one, handing the dropped one on through at most `handoff`
    /// places; the in-system bound is then the ring, what the loops hold
    /// and the hand-off.
    pub(crate) fn new(
        capacity: usize,
        ring: usize,
        wakers: Vec<mio::Waker>,
        drop_oldest: Option<usize>,
        ttl: Option<Duration>,
    ) -> Queue {
        Queue {
            ttl,
            dropped: drop_oldest.map(|handoff| {
                Box::new(Dropped {
                    ring: ArrayQueue::new(handoff),
                    reserved: AtomicUsize::new(0),
                    told: AtomicBool::new(false),
                })
            }),
            // Without batching the in-system bound also bounds the queue,
            // so a push after a successful reservation always finds room.
            // With batching the connections hold more outside it, and a
            // full ring refuses like a full system.
            queue: Ring::new(ring.min(capacity), ttl.is_some()),
            capacity,
            intake: CachePadded::default(),
            rejected: CachePadded::default(),
            wakeups: CachePadded::default(),
            state: AtomicU8::new(NEW),
            parking: Parking::new(wakers.len()),
            wakers: wakers.into_boxed_slice(),
            flush_waiters: Mutex::new(Vec::new()),
            flush_waiting: AtomicUsize::new(0),
        }
    }

    /// Accepts `msg` unless the client is not running or full (with
    /// drop-oldest: unless the hand-off is full). With a TTL it expires
    /// that long from now; without one the clock is not read.
    #[inline]
    pub(crate) fn push(&self, msg: Message) -> Result<(), (Refused, Message)> {
        // Reserve first, then check the state: `stop` sets the state and
        // then waits for `in_system` to reach zero, so a reservation made
        // while running is always seen by the loops.
        let before = self.intake.in_system.fetch_add(1, Ordering::SeqCst);
        let state = self.state.load(Ordering::SeqCst);
        let full = before >= self.capacity && self.dropped.is_none();
        if state != RUNNING || full {
            return Err(self.refuse(state, msg));
        }
        // Counted before the push, so that the message's end, on a loop,
        // can never be seen before its acceptance.
        self.intake.accepted.fetch_add(1, Ordering::Relaxed);
        let expires = self.ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        let entry = Entry { msg, expires };
        match &self.dropped {
            None => {
                if let Err(entry) = self.queue.push(entry) {
                    // The ring is full while the loops hold batches
                    // outside it.
                    self.intake.accepted.fetch_sub(1, Ordering::Relaxed);
                    return Err(self.refuse(state, entry.msg));
                }
            }
            Some(dropped) => {
                let Err(entry) = self.queue.push(entry) else {
                    self.after_push();
                    return Ok(());
                };
                // The ring is full: a place in the hand-off for the
                // message this push drops, before it.
                if dropped.reserved.fetch_add(1, Ordering::SeqCst) >= dropped.ring.capacity() {
                    dropped.reserved.fetch_sub(1, Ordering::SeqCst);
                    self.intake.accepted.fetch_sub(1, Ordering::Relaxed);
                    return Err(self.refuse(state, entry.msg));
                }
                // Room may have come since: then nothing is dropped.
                match self.queue.force_push(entry) {
                    None => {
                        dropped.reserved.fetch_sub(1, Ordering::SeqCst);
                    }
                    Some(oldest) => {
                        // The reservation leaves room; the oldest stays in
                        // the system until a loop ends it.
                        let pushed = dropped.ring.push(oldest.msg);
                        debug_assert!(pushed.is_ok(), "a hand-off place was reserved");
                        if !dropped.told.swap(true, Ordering::SeqCst) {
                            self.wake_all();
                        }
                    }
                }
            }
        }
        self.after_push();
        Ok(())
    }

    /// Wakes a parked loop for a message just queued, if one is parked.
    #[inline]
    fn after_push(&self) {
        if let Some(id) = self.parking.after_push() {
            self.wakeups.fetch_add(1, Ordering::Relaxed);
            wake(&self.wakers[id]);
        }
    }

    /// Undoes a reservation `push` made for `msg`, and says why.
    #[cold]
    fn refuse(&self, state: u8, msg: Message) -> (Refused, Message) {
        self.release();
        let why = match state {
            NEW => Refused::NotStarted,
            RUNNING => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Refused::Full
            }
            _ => Refused::Stopped,
        };
        (why, msg)
    }

    /// Hands each message a full queue dropped to `each`, until none is
    /// left. A drop made meanwhile either is among them or wakes the loops
    /// again.
    pub(crate) fn take_dropped(&self, mut each: impl FnMut(Message)) {
        let Some(dropped) = &self.dropped else {
            return;
        };
        dropped.told.store(false, Ordering::SeqCst);
        while let Some(msg) = dropped.ring.pop() {
            dropped.reserved.fetch_sub(1, Ordering::SeqCst);
            each(msg);
        }
    }

    /// Wakes every loop, parked or not (state changes, shutdown).
    pub(crate) fn wake_all(&self) {
        self.wakers.iter().for_each(wake);
    }

    /// Takes the oldest queued message.
    #[inline]
    pub(crate) fn pop(&self) -> Option<Entry> {
        self.queue.pop()
    }

    /// Steps 1 and 2 of parking ([`Parking::park`]) for loop `id`, which
    /// leaves the watchers first if it was `watching`: returns `true` when
    /// it may block, and must then call [`Queue::unpark`].
    pub(crate) fn park(&self, id: usize, watching: bool) -> bool {
        self.parking.park(id, watching, || self.queue.is_empty())
    }

    /// Makes the calling loop the one watching the queue
    /// ([`Parking::watch`]), unless one already is; with `fixed`, counts
    /// it among the watchers whoever else watches ([`Parking::watch_too`]).
    /// Returns whether it watches now.
    pub(crate) fn watch(&self, fixed: bool) -> bool {
        if fixed {
            self.parking.watch_too();
            return true;
        }
        self.parking.watch()
    }

    /// A loop whose slots are all busy, or that stops, hands on what is
    /// queued to a parked loop, leaving the watchers if it was `watching`
    /// ([`Parking::hand_on`]).
    pub(crate) fn hand_on(&self, watching: bool) {
        if let Some(id) = self.parking.hand_on(watching, || self.queue.is_empty()) {
            wake(&self.wakers[id]);
        }
    }

    /// Step 3: clears loop `id`'s flag after its poll returned, unless a
    /// producer already did.
    pub(crate) fn unpark(&self, id: usize) {
        self.parking.unpark(id);
    }

    /// Ends one accepted message's stay in the system.
    pub(crate) fn release(&self) {
        self.release_many(1);
    }

    /// Ends `n` accepted messages' stay in the system: a batch's, with one
    /// atomic operation.
    pub(crate) fn release_many(&self, n: usize) {
        let before = self.intake.in_system.fetch_sub(n, Ordering::SeqCst);
        if before == n && self.state.load(Ordering::SeqCst) == STOPPING {
            self.wake_all();
        }
    }

    /// Messages accepted and not yet finished.
    pub(crate) fn in_system(&self) -> usize {
        self.intake.in_system.load(Ordering::SeqCst)
    }

    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(crate) fn accepted(&self) -> u64 {
        self.intake.accepted.load(Ordering::SeqCst)
    }

    pub(crate) fn wakeups(&self) -> u64 {
        self.wakeups.load(Ordering::Relaxed)
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::SeqCst)
    }

    /// Moves NEW → RUNNING; false if the client was started or stopped.
    pub(crate) fn start(&self) -> bool {
        self.state
            .compare_exchange(NEW, RUNNING, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Moves to STOPPING and wakes every loop; returns the previous state.
    pub(crate) fn stop(&self) -> u8 {
        let before = self.state.swap(STOPPING, Ordering::SeqCst);
        self.wake_all();
        before
    }

    /// Registers the current thread to be unparked when messages finish.
    pub(crate) fn add_flush_waiter(&self) {
        let mut waiters = self.flush_waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.push(std::thread::current());
        self.flush_waiting.store(waiters.len(), Ordering::SeqCst);
    }

    /// Undoes [`Queue::add_flush_waiter`] for the current thread.
    pub(crate) fn remove_flush_waiter(&self) {
        let id = std::thread::current().id();
        let mut waiters = self.flush_waiters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = waiters.iter().position(|t| t.id() == id) {
            waiters.swap_remove(i);
        }
        self.flush_waiting.store(waiters.len(), Ordering::SeqCst);
    }

    /// Called by a loop after it finished messages: unparks flush callers.
    pub(crate) fn notify_flush_waiters(&self) {
        if self.flush_waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let waiters = self.flush_waiters.lock().unwrap_or_else(|e| e.into_inner());
        waiters.iter().for_each(Thread::unpark);
    }
}

fn wake(waker: &mio::Waker) {
    // A failed wake means the eventfd counter is saturated, which already
    // makes the loop's poll return: nothing is lost by ignoring it.
    let _: io::Result<()> = waker.wake();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use mio::{Events, Poll, Token, Waker};

    const WAKER: Token = Token(0);

    fn queue(capacity: usize, loops: usize) -> (Arc<Queue>, Vec<Poll>) {
        let polls: Vec<Poll> = (0..loops).map(|_| Poll::new().expect("poll")).collect();
        let wakers = polls
            .iter()
            .map(|p| Waker::new(p.registry(), WAKER).expect("waker"))
            .collect();
        (
            Arc::new(Queue::new(capacity, capacity, wakers, None, None)),
            polls,
        )
    }

    #[test]
    fn refusals_hand_the_message_back() {
        let (q, _polls) = queue(2, 1);
        let refused = |r: Result<(), (Refused, Message)>| r.map_err(|(why, m)| (why, m.into_vec()));
        assert_eq!(
            refused(q.push("a".into())),
            Err((Refused::NotStarted, b"a".to_vec()))
        );
        assert!(q.start());
        assert!(!q.start(), "start is one-shot");
        assert_eq!(refused(q.push("b".into())), Ok(()));
        assert_eq!(refused(q.push("c".into())), Ok(()));
        assert_eq!(
            refused(q.push("d".into())),
            Err((Refused::Full, b"d".to_vec()))
        );
        assert_eq!((q.in_system(), q.accepted(), q.rejected()), (2, 2, 1));
        q.pop();
        assert_eq!(q.in_system(), 2, "a popped message is still in flight");
        q.release();
        assert_eq!(refused(q.push("e".into())), Ok(()));
        q.stop();
        assert_eq!(
            refused(q.push("f".into())),
            Err((Refused::Stopped, b"f".to_vec()))
        );
    }

    #[test]
    fn a_full_queue_dropping_its_oldest_hands_it_on_and_is_bounded_by_the_handoff() {
        let polls: Vec<Poll> = vec![Poll::new().expect("poll")];
        let wakers = vec![Waker::new(polls[0].registry(), WAKER).expect("waker")];
        // A ring of 2, a hand-off of 2.
        let q = Queue::new(2, 2, wakers, Some(2), None);
        assert!(q.start());
        let body = |e: Option<Entry>| e.map(|e| e.msg.into_vec());
        for m in ["a", "b", "c", "d"] {
            q.push(m.into())
                .expect("a full queue takes the new message");
        }
        // "a" and "b" made room for "c" and "d", and wait for a loop.
        assert_eq!((q.in_system(), q.accepted(), q.rejected()), (4, 4, 0));
        let dropped = |q: &Queue| {
            let mut out = Vec::new();
            q.take_dropped(|m| out.push(m.into_vec()));
            out
        };
        assert_eq!(dropped(&q), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(dropped(&q), Vec::<Vec<u8>>::new());
        // Ended by the loop that handled them.
        q.release_many(2);
        // The hand-off full: a push that would drop is refused, and loses
        // nothing.
        q.push("e".into()).expect("drops c");
        q.push("f".into()).expect("drops d");
        match q.push("g".into()) {
            Err((Refused::Full, m)) => assert_eq!(m.into_vec(), b"g"),
            other => panic!("{other:?}"),
        }
        assert_eq!((q.accepted(), q.rejected()), (6, 1));
        assert_eq!(body(q.pop()), Some(b"e".to_vec()));
        // A push that drops nothing needs no room in the hand-off.
        q.push("h".into()).expect("room in the ring");
        assert_eq!(body(q.pop()), Some(b"f".to_vec()));
        assert_eq!(body(q.pop()), Some(b"h".to_vec()));
        assert_eq!(dropped(&q), [b"c".to_vec(), b"d".to_vec()]);
    }

    /// Producers race parking consumers. Each producer waits for its
    /// message to be taken before sending the next, so nothing but the
    /// protocol can wake a consumer that parked just as a message arrived:
    /// a lost wake-up leaves the message stranded, with every consumer
    /// asleep, until a poll times out. A consumer whose poll times out
    /// looks for such a message. A timeout alone proves nothing: the
    /// protocol wakes the lowest parked loop, so loop 1 may sleep through
    /// its timeout while loop 0 takes every message.
    #[test]
    fn parked_loops_are_woken_under_contention() {
        const LOOPS: usize = 2;
        const PRODUCERS: usize = 3;
        const PER_PRODUCER: usize = if cfg!(debug_assertions) {
            3_000
        } else {
            20_000
        };
        const TOTAL: usize = PRODUCERS * PER_PRODUCER;
        const POLL_TIMEOUT: Duration = Duration::from_millis(500);
        /// Waiting this long in the queue, with a consumer parked all the
        /// while, is stranding: a woken loop takes a message within
        /// microseconds, and the scheduler is never this late.
        const STRANDED: Duration = Duration::from_millis(250);

        /// One producer's progress, read by consumers whose poll timed out.
        #[derive(Default)]
        struct Producer {
            pushed: AtomicUsize,
            taken: AtomicUsize,
            /// When its latest message was pushed, in ms since `epoch`.
            pushed_at: AtomicU64,
        }
        impl Producer {
            /// How long its message has been waiting, if one is.
            fn waiting(&self, now_ms: u64) -> Option<Duration> {
                // `taken` first: a later `pushed` and `pushed_at` can only
                // be a newer message, which makes the wait look shorter.
                let taken = self.taken.load(Ordering::SeqCst);
                let pushed = self.pushed.load(Ordering::SeqCst);
                let at = self.pushed_at.load(Ordering::SeqCst);
                (pushed > taken).then(|| Duration::from_millis(now_ms.saturating_sub(at)))
            }
        }

        let epoch = Instant::now();
        let ms = move || u64::try_from(epoch.elapsed().as_millis()).expect("ms");
        let (q, polls) = queue(64, LOOPS);
        assert!(q.start());
        let producers: Arc<Vec<Producer>> =
            Arc::new((0..PRODUCERS).map(|_| Producer::default()).collect());
        let done = Arc::new(AtomicBool::new(false));

        let consumers: Vec<_> = polls
            .into_iter()
            .enumerate()
            .map(|(id, mut poll)| {
                let (q, producers, done) = (q.clone(), producers.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut events = Events::with_capacity(4);
                    let (mut parks, mut stranded) = (0usize, Vec::new());
                    while !done.load(Ordering::SeqCst) {
                        if let Some(entry) = q.pop() {
                            producers[usize::from(entry.msg[0])]
                                .taken
                                .fetch_add(1, Ordering::SeqCst);
                            q.release();
                            continue;
                        }
                        // Widen the window between finding the queue empty and
                        // parking, where a message pushed meanwhile must be
                        // caught by `park`'s second look.
                        std::thread::yield_now();
                        if !q.park(id, false) {
                            continue;
                        }
                        parks += 1;
                        poll.poll(&mut events, Some(POLL_TIMEOUT)).expect("poll");
                        if events.is_empty() {
                            let now = ms();
                            stranded.extend(
                                producers
                                    .iter()
                                    .filter_map(|p| p.waiting(now))
                                    .filter(|&waited| waited >= STRANDED),
                            );
                        }
                        q.unpark(id);
                    }
                    (parks, stranded)
                })
            })
            .collect();

        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let (q, producers) = (q.clone(), producers.clone());
                std::thread::spawn(move || {
                    let me = &producers[p];
                    for i in 0..PER_PRODUCER {
                        let mut msg = Message::from(vec![p as u8]);
                        me.pushed_at.store(ms(), Ordering::SeqCst);
                        while let Err((why, back)) = q.push(msg) {
                            assert_eq!(why, Refused::Full);
                            msg = back;
                            std::thread::yield_now();
                        }
                        me.pushed.store(i + 1, Ordering::SeqCst);
                        // Ping-pong: the consumers' poll timeout bounds this
                        // wait even if the wake-up was lost.
                        while me.taken.load(Ordering::SeqCst) <= i {
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        threads
            .into_iter()
            .for_each(|p| p.join().expect("producer"));
        done.store(true, Ordering::SeqCst);
        q.wake_all();
        let results: Vec<(usize, Vec<Duration>)> = consumers
            .into_iter()
            .map(|c| c.join().expect("consumer"))
            .collect();

        let total: usize = producers
            .iter()
            .map(|p| p.taken.load(Ordering::SeqCst))
            .sum();
        assert_eq!(total, TOTAL);
        assert_eq!(q.in_system(), 0);
        let parks: usize = results.iter().map(|r| r.0).sum();
        assert!(
            parks > 0,
            "the consumers never parked: the test proved nothing"
        );
        let stranded: Vec<Duration> = results.into_iter().flat_map(|r| r.1).collect();
        assert!(
            stranded.is_empty(),
            "{} of {parks} parks timed out with a message stranded for up to {:?}: \
             a wake-up was lost",
            stranded.len(),
            stranded.iter().max()
        );
    }
}
