//! The park/wake handshake between the event loops and `notify`: a loop
//! blocks in its poll only when no message can be left behind, and a
//! producer makes a syscall only when some loop is parked.
//!
//! # Protocol
//!
//! A loop that has a free connection slot and finds the queue empty parks:
//!
//! 1. it sets its flag and increments `parked_count` (SeqCst), then issues
//!    a SeqCst fence ([`Parking::park`]);
//! 2. it checks the queue again; if a message is there it clears its own
//!    flag and goes back to work;
//! 3. otherwise it blocks in `Poll::poll`, and clears its flag when that
//!    returns ([`Parking::unpark`]).
//!
//! A producer pushes its message, issues a SeqCst fence, then reads
//! `parked_count` ([`Parking::after_push`]); only when it is non-zero does
//! it look for a parked loop, clear that loop's flag with a `swap` (so two
//! producers never both wake the same loop for one park) and write the
//! loop's `mio::Waker`.
//!
//! No wake-up is lost: the loop's flag swap and count increment (1) come
//! before its fence and queue check (2); the producer's push comes before
//! its fence and count read. The two fences are ordered one way or the
//! other in the single SeqCst order: if the producer's fence is first, the
//! loop's check sees the message and the loop does not block; if the
//! loop's is first, the producer sees the count and the flag, and wakes
//! the loop (or another producer already did). Busy loops never park, so
//! under load `notify` costs the push, a fence and one load: no syscall.
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
    flags: Box<[CachePadded<AtomicBool>]>,
}

impl Parking {
    /// Parking state for `loops` event loops, none parked.
    pub(crate) fn new(loops: usize) -> Parking {
        Parking {
            parked_count: CachePadded::new(AtomicUsize::new(0)),
            flags: (0..loops)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
        }
    }

    /// Steps 1 and 2: announces that loop `id` is about to block, then asks
    /// `queue_is_empty`. Returns `true` when the loop may block; it must
    /// call [`Parking::unpark`] once its poll returns. Returns `false`
    /// (flag already cleared) when work arrived meanwhile.
    pub(crate) fn park(&self, id: usize, queue_is_empty: impl FnOnce() -> bool) -> bool {
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

        /// An event loop with one free slot: takes messages until `total`
        /// were taken by all loops, parking whenever the queue is empty.
        /// The loop that takes the last message wakes the others (as
        /// `stop` does), which cannot hide a lost wake-up: by then every
        /// message was taken.
        fn consume(&self, id: usize, total: usize) {
            while self.taken.load(Ordering::SeqCst) < total {
                if self.pop() {
                    if self.taken.fetch_add(1, Ordering::SeqCst) + 1 == total {
                        self.wakers.iter().for_each(Notify::notify);
                    }
                    continue;
                }
                if self
                    .parking
                    .park(id, || self.len.load(Ordering::SeqCst) == 0)
                {
                    self.wakers[id].wait();
                    self.parking.unpark(id);
                }
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
            world.consume(0, 2);
            producers
                .into_iter()
                .for_each(|p| p.join().expect("producer"));
            assert_eq!(world.len.load(Ordering::SeqCst), 0);
        });
    }

    /// One producer, two parking consumers: whichever parked is woken.
    #[test]
    fn loom_no_lost_wakeup_two_loops() {
        loom::model(|| {
            let world = World::new(2);
            let other = {
                let world = world.clone();
                thread::spawn(move || world.consume(1, 2))
            };
            let producer = {
                let world = world.clone();
                thread::spawn(move || {
                    world.push();
                    world.push();
                })
            };
            world.consume(0, 2);
            producer.join().expect("producer");
            other.join().expect("consumer");
            assert_eq!(world.taken.load(Ordering::SeqCst), 2);
        });
    }
}
