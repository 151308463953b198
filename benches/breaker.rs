//! The circuit breaker's cost per attempt: `allow` then `on_success`, as
//! every attempt of every event loop pays it.
//!
//! - `uncontended`: one thread.
//! - `2 threads`: the measured thread and one more hammering the same
//!   breaker in a loop, as two event loops would.
//!
//! ```text
//! cargo bench --features internals --bench breaker
//! ```

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use notifier::__bench::Breaker;

fn breaker() -> Breaker {
    Breaker::new(5, Duration::from_secs(30))
}

fn check_and_record(c: &mut Criterion) {
    let mut group = c.benchmark_group("breaker check+record");
    group.throughput(Throughput::Elements(1));

    let b = breaker();
    group.bench_function("uncontended", |bench| {
        bench.iter(|| b.check_and_record(black_box(1_000), black_box(true)))
    });

    let b = Arc::new(breaker());
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (b, stop) = (b.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                black_box(b.check_and_record(black_box(1_000), true));
                n += 1;
            }
            n
        })
    };
    group.bench_function("2 threads", |bench| {
        bench.iter(|| b.check_and_record(black_box(1_000), black_box(true)))
    });
    stop.store(true, Ordering::Relaxed);
    other.join().expect("the other thread");

    // One failure in four: the word is written, and with two threads the
    // CAS loops contend. The threshold is out of reach, so it stays closed
    // (every fourth success resets the count).
    let b = Arc::new(breaker());
    let stop = Arc::new(AtomicBool::new(false));
    let other = {
        let (b, stop) = (b.clone(), stop.clone());
        thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                black_box(b.check_and_record(1_000, i % 4 != 0));
                i = i.wrapping_add(1);
            }
        })
    };
    let mut i = 0u32;
    group.bench_function("2 threads, 1 in 4 failing", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            b.check_and_record(black_box(1_000), i % 4 != 0)
        })
    });
    stop.store(true, Ordering::Relaxed);
    other.join().expect("the other thread");
    group.finish();
}

criterion_group!(benches, check_and_record);
criterion_main!(benches);
