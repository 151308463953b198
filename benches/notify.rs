//! What `notify` costs the caller, and how many messages per second go
//! through the queue to the event loops, without the network.
//!
//! ```text
//! cargo bench --features internals --bench notify
//! ```
//!
//! The public API has no dequeue, so the benchmark makes the event loops
//! drain without HTTP: the client points at a closed port and has a circuit
//! breaker that opens on the first failure and stays open for an hour.
//! After one connection refused, every message is taken off the queue and
//! fails at once with `CircuitOpen` (pop, breaker check, a no-op error
//! handler), so the loops empty the queue as fast as they can and no
//! socket is involved. One event loop (`threads(1)`), 10 workers; messages
//! are `Message::from_static`, so nothing is allocated per call.
//!
//! - `notify (queue has room)`: the caller's cost of one accepted `notify`
//!   while the loop drains concurrently. Each sample notifies in chunks of
//!   at most `CHUNK` messages into a queue that holds two chunks, and waits
//!   (untimed) for the loop to drain between chunks, so `QueueFull` never
//!   happens. With `2 producers`, a second thread notifies the same number
//!   of messages at the same time (both released by a barrier); the time
//!   is the measured thread's.
//! - `notify+drain`: messages per second through a default-sized queue
//!   (1000), counted from the first `notify` until the loop has ended every
//!   message (`flush`). A producer that meets a full queue spins and tries
//!   again. With `2 producers` each sends half. The failing loop is faster
//!   than the producer, so it keeps emptying the queue and parking, and
//!   `notify` keeps paying to wake it (an `eventfd` write): this is the
//!   cost of the wake-up protocol. With `spin` (`Builder::spin(50 µs)`) the
//!   loop busy-polls instead of parking, which leaves the queue's own
//!   enqueue and dequeue.
//!
//! - `notify (DropOldest, queue full)`: the caller's cost of `notify` into
//!   a full queue with `Overflow::DropOldest`, the loop unable to take any
//!   message (its one connection holds a request never answered): each
//!   call displaces the oldest queued message into the bounded hand-off,
//!   which the loop drains to the error handler.
//!
//! - `queue (enqueue+dequeue)`: the queue alone, no event loop, no wake-up
//!   (`notifier::__bench::Queue`): `push` is `notify`'s path (reserve,
//!   push, look for a parked loop), `pop` a loop's (pop, release). With
//!   `uncontended`, one thread pushes and pops each message in turn; with
//!   `2 producers`, two threads push (spinning on a full queue) while a
//!   third pops, and the time runs from the start until the consumer has
//!   taken every message.
//!
//! The machine this was written on has 2 cores: with two producers and the
//! loop, three busy threads share them.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use notifier::__bench::Queue;
use notifier::{CircuitBreakerConfig, CircuitState, Client, Message, NotifyError, Overflow};

static BODY: [u8; 64] = [b'x'; 64];

/// Messages notified between two drains in `notify (queue has room)`.
const CHUNK: u64 = 50_000;

/// `Builder::spin` of the spinning variants.
const SPIN: Duration = Duration::from_micros(50);

/// How long a drain may take before the bench gives up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A started client whose loop drains by failing every message at once,
/// busy-polling for `spin` before it parks.
fn draining_client(queue_size: usize, spin: Duration) -> Arc<Client> {
    // A port nobody listens on: bound, then released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot find a free port");
    let client = Client::builder(&format!("http://{closed}/notify"))
        .workers(10)
        .threads(1)
        .queue_size(queue_size)
        .circuit_breaker(
            CircuitBreakerConfig::default()
                .failure_threshold(1)
                .reset_timeout(Duration::from_secs(3600)),
        )
        .error_handler(|_| {})
        .spin(spin)
        .build()
        .expect("cannot build the client");
    client.start();
    // The first message opens the circuit.
    notify_spinning(&client);
    assert!(client.flush(FLUSH_TIMEOUT), "the first message did not end");
    assert_eq!(
        client.stats().circuit,
        CircuitState::Open,
        "the circuit did not open"
    );
    Arc::new(client)
}

/// Notifies one message, spinning while the queue is full.
#[inline]
fn notify_spinning(client: &Client) {
    let mut msg = Message::from_static(&BODY);
    loop {
        match client.notify(msg) {
            Ok(()) => return,
            Err(NotifyError::QueueFull(back)) => {
                msg = back;
                std::hint::spin_loop();
            }
            Err(e) => panic!("notify failed: {e}"),
        }
    }
}

/// Notifies `count` messages; returns how long it took.
fn notify_many(client: &Client, count: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..count {
        notify_spinning(client);
    }
    start.elapsed()
}

/// A second producer: on each round, notifies the number of messages it is
/// told, released together with the measured thread by a barrier.
struct Helper {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    start: Arc<Barrier>,
    done: Arc<Barrier>,
    thread: Option<JoinHandle<()>>,
}

impl Helper {
    fn spawn(client: &Arc<Client>) -> Helper {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let start = Arc::new(Barrier::new(2));
        let done = Arc::new(Barrier::new(2));
        let thread = {
            let (client, count, stop) = (Arc::clone(client), Arc::clone(&count), Arc::clone(&stop));
            let (start, done) = (Arc::clone(&start), Arc::clone(&done));
            thread::spawn(move || loop {
                start.wait();
                if stop.load(Ordering::Acquire) {
                    return;
                }
                notify_many(&client, count.load(Ordering::Acquire));
                done.wait();
            })
        };
        Helper {
            count,
            stop,
            start,
            done,
            thread: Some(thread),
        }
    }

    /// Runs `own` on this thread while the helper notifies `count`
    /// messages; returns when both are done.
    fn round<R>(&self, count: u64, own: impl FnOnce() -> R) -> R {
        self.count.store(count, Ordering::Release);
        self.start.wait();
        let result = own();
        self.done.wait();
        result
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.start.wait();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `notify` into a queue with room, in chunks, draining between them.
fn with_room(client: &Client, helper: Option<&Helper>, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(CHUNK);
        total += match helper {
            None => notify_many(client, chunk),
            Some(helper) => helper.round(chunk, || notify_many(client, chunk)),
        };
        assert!(client.flush(FLUSH_TIMEOUT), "the loop did not drain");
        left -= chunk;
    }
    total
}

fn notify(c: &mut Criterion) {
    let mut group = c.benchmark_group("notify (queue has room)");
    group.throughput(Throughput::Elements(1));
    // Two chunks from two producers fit without `QueueFull`.
    let client = draining_client(2 * CHUNK as usize, Duration::ZERO);
    group.bench_function("1 producer", |b| {
        b.iter_custom(|iters| with_room(&client, None, iters))
    });
    let helper = Helper::spawn(&client);
    group.bench_function("2 producers", |b| {
        b.iter_custom(|iters| with_room(&client, Some(&helper), iters))
    });
    drop(helper);
    client.stop();
    group.finish();

    let mut group = c.benchmark_group("notify+drain");
    group.throughput(Throughput::Elements(1));
    for (spin, suffix) in [(Duration::ZERO, ""), (SPIN, ", spin")] {
        let client = draining_client(notifier::DEFAULT_QUEUE_SIZE, spin);
        group.bench_function(format!("1 producer{suffix}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                notify_many(&client, iters);
                assert!(client.flush(FLUSH_TIMEOUT), "the loop did not drain");
                start.elapsed()
            })
        });
        let helper = Helper::spawn(&client);
        group.bench_function(format!("2 producers{suffix}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                helper.round(iters / 2, || notify_many(&client, iters - iters / 2));
                assert!(client.flush(FLUSH_TIMEOUT), "the loop did not drain");
                start.elapsed()
            })
        });
        drop(helper);
        client.stop();
    }
    group.finish();
}

/// Pushes `count` messages into `queue`, spinning while it is full.
fn push_many(queue: &Queue, count: u64) {
    for _ in 0..count {
        let mut msg = Message::from_static(&BODY);
        while let Err(back) = queue.push(msg) {
            msg = back;
            std::hint::spin_loop();
        }
    }
}

/// Two producers push `iters` messages between them while this thread
/// pops them all; returns the time until the last was taken.
fn two_producers_one_consumer(queue: &Arc<Queue>, iters: u64) -> Duration {
    let start = Arc::new(Barrier::new(3));
    let producers: Vec<_> = [iters / 2, iters - iters / 2]
        .into_iter()
        .map(|count| {
            let (queue, start) = (Arc::clone(queue), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                push_many(&queue, count);
            })
        })
        .collect();
    start.wait();
    let began = Instant::now();
    let mut taken = 0;
    while taken < iters {
        match queue.pop() {
            Some(msg) => {
                black_box(msg);
                taken += 1;
            }
            None => std::hint::spin_loop(),
        }
    }
    let elapsed = began.elapsed();
    for producer in producers {
        producer.join().expect("a producer panicked");
    }
    elapsed
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue (enqueue+dequeue)");
    group.throughput(Throughput::Elements(1));
    let queue = Arc::new(Queue::new(notifier::DEFAULT_QUEUE_SIZE).expect("cannot create a queue"));
    group.bench_function("uncontended", |b| {
        b.iter(|| {
            if queue.push(Message::from_static(&BODY)).is_err() {
                panic!("an emptied queue refused a message");
            }
            black_box(queue.pop())
        })
    });
    group.bench_function("2 producers", |b| {
        b.iter_custom(|iters| two_producers_one_consumer(&queue, iters))
    });
    group.finish();
}

/// `notify` into a full queue that drops its oldest message
/// (`Overflow::DropOldest`): the one slot holds a request a server never
/// answers, so the loop takes nothing from the queue, and every `notify`
/// displaces the oldest queued message into the hand-off, which the loop
/// drains to a no-op error handler. A `notify` the hand-off refuses
/// (`QueueFull`, the loop behind on the drops) spins and tries again, and
/// its time is counted.
fn notify_drop_oldest(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot listen");
    let addr = listener.local_addr().expect("an address");
    let stop = Arc::new(AtomicBool::new(false));
    let holder = {
        let stop = Arc::clone(&stop);
        listener.set_nonblocking(true).expect("nonblocking");
        thread::spawn(move || {
            // Accepts and holds every connection, never answering.
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => thread::sleep(Duration::from_millis(1)),
                }
            }
        })
    };
    let client = Client::builder(&format!("http://{addr}/notify"))
        .workers(1)
        .threads(1)
        .timeout(Duration::from_secs(3600))
        .overflow(Overflow::DropOldest)
        .error_handler(|_| {})
        .build()
        .expect("cannot build the client");
    client.start();
    // One message in flight, then the queue filled.
    for _ in 0..=notifier::DEFAULT_QUEUE_SIZE + 1 {
        notify_spinning(&client);
    }
    let mut group = c.benchmark_group("notify (DropOldest, queue full)");
    group.throughput(Throughput::Elements(1));
    group.bench_function("1 producer", |b| {
        b.iter_custom(|iters| notify_many(&client, iters))
    });
    group.finish();
    assert!(
        client.stats().dropped > 0,
        "nothing was dropped: {:?}",
        client.stats()
    );
    stop.store(true, Ordering::Relaxed);
    holder.join().expect("the holder panicked");
    client.stop();
}

criterion_group!(benches, notify, notify_drop_oldest, queue);
criterion_main!(benches);
