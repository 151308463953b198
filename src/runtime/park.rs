//! The park/wake handshake between the event loops and `notify`: a loop
//! blocks in its poll only when no message can be left behind, and a
//! producer makes a syscall only when some loop is parked.
//!
//! # Protocol
//!
//! A loop that has a free connection slot and finds the queue empty either
//! watches the queue (spins or dozes, see [`super::watch`]) or parks. A
//! watching loop counts itself in `watchers`; a producer makes no syscall
//! while any loop watches, since that loop will look at the queue soon.
//! Only one loop watches by choice at a time ([`Parking::watch`]); with
//! the builder's fixed spin window every spinning loop counts
//! ([`Parking::watch_too`]).
//!
//! A loop parks this way:
//!
//! 1. if it was watching, it leaves `watchers`; it sets its flag and
//!    increments `parked_count` (SeqCst), then issues a SeqCst fence
//!    ([`Parking::park`]);
//! 2. it checks the queue again; if a message is there it clears its own
//!    flag and goes back to work;
//! 3. otherwise it blocks in `Poll::poll`, and clears its flag when that
//!    returns ([`Parking::unpark`]).
//!
//! A producer pushes its message, issues a SeqCst fence, then reads
//! `watchers` and `parked_count` ([`Parking::after_push`]); only when no
//! loop watches and some loop is parked does it look for a parked loop,
//! clear that loop's flag with a `swap` (so two producers never both wake
//! the same loop for one park) and write the loop's `mio::Waker`.
//!
//! A loop whose slots are all busy does what a producer would for
//! whatever is queued ([`Parking::hand_on`]): it leaves `watchers` if it
//! watched, issues a fence, and if the queue is not empty and no loop
//! watches, wakes a parked loop. That wake is made on the loop's thread,
//! not on a caller's.
//!
//! No wake-up is lost: a loop leaves `watchers`, and sets its flag, before
//! its fence and queue check; the producer's push comes before its fence
//! and its reads. The two fences are ordered one way or the other in the
//! single SeqCst order: if the producer's fence is first, the loop's check
//! sees the message and the loop does not block (or, busy, wakes a parked
//! one); if the loop's is first, the producer sees it gone from
//! `watchers` and parked, and wakes a loop (or another producer already
//! did). A producer that sees a watcher leaves the message to it, and
//! that watcher looks at the queue again before it parks or stops
//! watching. Busy loops never park, so under load `notify` costs the
//! push, a fence and one or two loads: no syscall.
//!
//! # Why a swap and a fence in `park`
//!
//! The SeqCst accesses alone already order all this in the C++20 model
//! (the protocol used to be a flag `store` and no fence). Two choices make
//! it checkable by loom, which treats SeqCst accesses as AcqRel and only
//! models SeqCst fences, and whose model found a false deadlock for each:
//!
//! - the loop's fence in step 1 makes the handshake the textbook
//!   fence/fence pair. It costs one `mfence` on the way to a syscall;
//! - the flag is set with a `swap`, not a `store`: loom orders a plain
//!   store only after the writes its thread has seen, so it let a
//!   producer's earlier `swap(false)` overtake the loop's new `true`,
//!   which real read-modify-writes forbid. On x86 a SeqCst store is the
//!   same `xchg` instruction.

use crossbeam_utils::CachePadded;

use crate::sync::{fence, AtomicBool, AtomicUsize, Ordering};

/// Parking state of a set of event loops, indexed by loop id.
#[derive(Debug)]
pub(crate) struct Parking {
    parked_count: CachePadded<AtomicUsize>,
    /// Loops that look at the queue again soon without being woken.
    watchers: CachePadded<AtomicUsize>,
    flags: Box<[CachePadded<AtomicBool>]>,
}

impl Parking {
    /// Parking state for `loops` event loops, none parked.
    pub(crate) fn new(loops: usize) -> Parking {
        Parking {
            parked_count: CachePadded::new(AtomicUsize::new(0)),
            watchers: CachePadded::new(AtomicUsize::new(0)),
            flags: (0..loops)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Steps 1 and 2: announces that loop `id` is about to block, then asks
    /// `queue_is_empty`. Returns `true` when the loop may block; it must
    /// call [`Parking::unpark`] once its poll returns. Returns `false`
    /// (flag already cleared) when work arrived meanwhile.
    /// A loop that was watching (`watching`) leaves `watchers` first.
    pub(crate) fn park(
        &self,
        id: usize,
        watching: bool,
        queue_is_empty: impl FnOnce() -> bool,
    ) -> bool {
        if watching {
            self.watchers.fetch_sub(1, Ordering::SeqCst);
        }
        // A swap and a fence where a store alone would do: see the module
        // docs. The flag is clear here: the loop cleared it, or a producer.
        let was_parked = self.flags[id].swap(true, Ordering::SeqCst);
        debug_assert!(!was_parked, "loop {id} parked twice");
        self.parked_count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if queue_is_empty() {
            return true;
        }
        self.unpark(id);
        false
    }

    /// Step 3: clears loop `id`'s flag after its poll returned, unless a
    /// producer already did.
    pub(crate) fn unpark(&self, id: usize) {
        if self.flags[id].swap(false, Ordering::SeqCst) {
            self.parked_count.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The producer's side, called right after a push: returns the id of a
    /// parked loop to wake, having cleared its flag, or `None` when no loop
    /// is parked (the common case under load: one fence and one load). The
    /// caller must then wake that loop.
    #[must_use]
    pub(crate) fn after_push(&self) -> Option<usize> {
        fence(Ordering::SeqCst);
        if self.watchers.load(Ordering::SeqCst) > 0 {
            return None;
        }
        self.take_parked()
    }

    /// Makes the calling loop the one that watches by choice, unless
    /// another loop watches already. Returns whether it does now; it must
    /// then leave through [`Parking::park`] or [`Parking::hand_on`].
    pub(crate) fn watch(&self) -> bool {
        self.watchers
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Counts the calling loop among the watchers whoever else watches:
    /// the builder's fixed spin window. It leaves as [`Parking::watch`]
    /// says.
    pub(crate) fn watch_too(&self) {
        self.watchers.fetch_add(1, Ordering::SeqCst);
    }

    /// A loop whose slots are all busy, or that stops, hands on what is
    /// queued: it leaves `watchers` if it was `watching`, and returns a
    /// parked loop to wake, flag cleared, if messages are queued and no
    /// loop watches. The caller must then wake that loop. A busy loop
    /// calls it whether or not it watched: the wake-up that brought it a
    /// message may have been meant for the message behind.
    #[must_use]
    pub(crate) fn hand_on(
        &self,
        watching: bool,
        queue_is_empty: impl FnOnce() -> bool,
    ) -> Option<usize> {
        if watching {
            self.watchers.fetch_sub(1, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
        if queue_is_empty() || self.watchers.load(Ordering::SeqCst) > 0 {
            return None;
        }
        // Leaving `watchers`, a read-modify-write reads the latest count:
        // a loop that parks after it synchronises with it, and so sees
        // the queued message that this loop saw.
        let parked = if watching {
            self.parked_count.fetch_add(0, Ordering::SeqCst)
        } else {
            self.parked_count.load(Ordering::SeqCst)
        };
        if parked == 0 {
            return None;
        }
        self.take_parked()
    }

    /// Clears the flag of a parked loop and returns its id, if one is
    /// parked.
    fn take_parked(&self) -> Option<usize> {
        if self.parked_count.load(Ordering::SeqCst) == 0 {
            return None;
        }
        for (id, flag) in self.flags.iter().enumerate() {
            if flag.load(Ordering::SeqCst) && flag.swap(false, Ordering::SeqCst) {
                self.parked_count.fetch_sub(1, Ordering::SeqCst);
                return Some(id);
            }
        }
        None
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    //! (c) The park/wake protocol never loses a wake-up. A loom
    //! `AtomicUsize` stands in for the queue's length (its push and pop are
    //! SeqCst read-modify-writes, like `ArrayQueue`'s), and a loom `Notify`
    //! per loop for its `mio::Waker`: like an eventfd it keeps a wake-up
    //! written before the wait, and it may wake spuriously. A consumer
    //! that parked and was never woken blocks forever, which loom reports
    //! as a deadlock.

    use super::*;
    use loom::sync::{Arc, Notify};
    use loom::thread;

    struct World {
        parking: Parking,
        len: AtomicUsize,
        wakers: Vec<Notify>,
        taken: AtomicUsize,
    }

    impl World {
        fn new(loops: usize) -> Arc<World> {
            Arc::new(World {
                parking: Parking::new(loops),
                len: AtomicUsize::new(0),
                wakers: (0..loops).map(|_| Notify::new()).collect(),
                taken: AtomicUsize::new(0),
            })
        }

        /// `Queue::push`: the push, then the producer's half of the protocol.
        fn push(&self) {
            self.len.fetch_add(1, Ordering::SeqCst);
            if let Some(id) = self.parking.after_push() {
                self.wakers[id].notify();
            }
        }

        fn pop(&self) -> bool {
            let mut len = self.len.load(Ordering::SeqCst);
            while len > 0 {
                match self
                    .len
                    .compare_exchange(len, len - 1, Ordering::SeqCst, Ordering::SeqCst)
                {
                    Ok(_) => return true,
                    Err(now) => len = now,
                }
            }
            false
        }

        fn is_empty(&self) -> bool {
            self.len.load(Ordering::SeqCst) == 0
        }

        /// Counts one message taken; the loop that takes the last one
        /// wakes the others (as `stop` does), which cannot hide a lost
        /// wake-up: by then every message was taken.
        fn took(&self, total: usize) {
            if self.taken.fetch_add(1, Ordering::SeqCst) + 1 == total {
                self.wakers.iter().for_each(Notify::notify);
            }
        }

        /// An event loop with one slot: takes messages until `total` were
        /// taken by all loops or, with `busy_after_one`, until it took one
        /// and is then busy for good. When the queue is empty it watches
        /// (looks again without being woken) up to `watch` times in all,
        /// if no other loop watches, and parks otherwise. At the end it
        /// hands on whatever is queued to a parked loop.
        fn consume(&self, id: usize, total: usize, mut watch: usize, busy_after_one: bool) {
            let mut watching = false;
            while self.taken.load(Ordering::SeqCst) < total {
                if self.pop() {
                    self.took(total);
                    if busy_after_one {
                        break;
                    }
                    continue;
                }
                if watch > 0 && (watching || self.parking.watch()) {
                    watching = true;
                    watch -= 1;
                    thread::yield_now();
                    continue;
                }
                let block = self.parking.park(id, watching, || self.is_empty());
                watching = false;
                if block {
                    self.wakers[id].wait();
                    self.parking.unpark(id);
                }
            }
            if let Some(other) = self.parking.hand_on(watching, || self.is_empty()) {
                self.wakers[other].notify();
            }
        }
    }

    /// Two producers, one parking consumer: both messages are taken.
    #[test]
    fn loom_no_lost_wakeup_two_producers() {
        loom::model(|| {
            let world = World::new(1);
            let producers: Vec<_> = (0..2)
                .map(|_| {
                    let world = world.clone();
                    thread::spawn(move || world.push())
                })
                .collect();
            world.consume(0, 2, 0, false);
            producers
                .into_iter()
                .for_each(|p| p.join().expect("producer"));
            assert_eq!(world.len.load(Ordering::SeqCst), 0);
        });
    }

    /// One producer pushing two messages, and two loops: loop 1 consumes
    /// them, watching up to `other_watches` times; loop 0 (this thread)
    /// runs `this_loop`. Both messages must be taken.
    fn two_loops(other_watches: usize, this_loop: fn(&World)) {
        loom::model(move || {
            let world = World::new(2);
            let other = {
                let world = world.clone();
                thread::spawn(move || world.consume(1, 2, other_watches, false))
            };
            let producer = {
                let world = world.clone();
                thread::spawn(move || {
                    world.push();
                    world.push();
                })
            };
            this_loop(&world);
            producer.join().expect("producer");
            other.join().expect("consumer");
            assert_eq!(world.taken.load(Ordering::SeqCst), 2);
        });
    }

    /// One producer, two parking consumers: whichever parked is woken.
    #[test]
    fn loom_no_lost_wakeup_two_loops() {
        two_loops(0, |world| world.consume(0, 2, 0, false));
    }

    /// One producer, two loops that watch a little before they park: no
    /// message is left behind when the producer skips the wake-up for a
    /// watcher that then parks.
    #[test]
    fn loom_no_lost_wakeup_with_a_watcher() {
        two_loops(1, |world| world.consume(0, 2, 1, false));
    }

    /// A watcher that takes a message and turns busy wakes the parked
    /// loop for the other one: the producer, seeing a watcher, did not.
    #[test]
    fn loom_a_watcher_that_turns_busy_hands_on_the_wake_up() {
        two_loops(0, |world| world.consume(0, 2, 1, true));
    }
}
