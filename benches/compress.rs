//! Request-body compression, as an event loop would do it once per batch:
//! 1 KiB JSON-like messages (webhook-style events) framed as NDJSON, each
//! message and its `\n` a part, compressed into a reused buffer by one
//! reused compressor.
//!
//! ```text
//! cargo bench --features gzip,zstd --bench compress
//! ```
//!
//! - `gzip level N` / `zstd level N`: a batch of 500 messages (512,500 B)
//!   and a batch of one (1,025 B). Throughput is of uncompressed bytes; the
//!   ratio (compressed / uncompressed) is printed before each group.
//! - First, the heap allocations counted over 200 more bodies once the
//!   buffer has grown: 0 expected (zstd allocates through Rust's global
//!   allocator, the `with-rust-allocator` feature, so the count sees it).
//!
//! flate2's backend is a build choice of `Cargo.toml` (the `flate2`
//! dependency's features); to measure another, change them there and run
//! this again.
//!
//! The compressor is `pub(crate)`: the bench compiles its source file in
//! as a module of its own.

// `criterion_group!` defines an undocumented `pub fn`.
#![allow(missing_docs)]
// The counting global allocator is an `unsafe impl`.
#![allow(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

// Its unit tests are left out of a bench build, their imports with them.
#[allow(dead_code, unreachable_pub, unused_imports)]
#[path = "../src/proto/compress.rs"]
mod compress;

#[allow(dead_code)]
#[path = "common/alloc.rs"]
mod alloc;

// The events the compressor's unit tests compress, the same generator.
// Where this target is built with `cfg(test)` (clippy's `--all-targets`),
// the module above includes the file too, for its tests.
#[allow(dead_code, unreachable_pub, clippy::duplicate_mod)]
#[path = "../src/proto/compress/sample.rs"]
mod sample;

use sample::{json_like_batch, ndjson};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

use compress::{Compression, Compressor};

/// The codecs and levels measured.
fn configs() -> Vec<(Compression, i32)> {
    let v = (1..=6).map(|l| (Compression::Gzip, l));
    #[cfg(feature = "zstd")]
    let v = v.chain((1..=3).map(|l| (Compression::Zstd, l)));
    v.collect()
}

/// The codecs, each at its default level.
fn codecs() -> Vec<Compression> {
    let v = [Compression::Gzip].into_iter();
    #[cfg(feature = "zstd")]
    let v = v.chain([Compression::Zstd]);
    v.collect()
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        #[cfg(feature = "zstd")]
        Compression::Zstd => "zstd",
    }
}

fn compress(c: &mut Criterion) {
    let batches = [
        ("500 messages", ndjson(&json_like_batch(500, 1))),
        ("1 message", ndjson(&json_like_batch(1, 2))),
    ];
    for (codec, level) in configs() {
        let mut group = c.benchmark_group(format!("{} level {level}", name(codec)));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(3));
        let mut z = Compressor::with_level(codec, level).expect("a codec");
        let mut out = Vec::new();
        for (label, parts) in &batches {
            let len: usize = parts.iter().map(Vec::len).sum();
            z.compress(parts.iter().map(Vec::as_slice), &mut out)
                .expect("compress");
            println!(
                "{} level {level}, {label}: {len} B -> {} B, ratio {:.3}",
                name(codec),
                out.len(),
                out.len() as f64 / len as f64
            );
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    z.compress(parts.iter().map(|p| black_box(p.as_slice())), &mut out)
                        .expect("compress");
                    black_box(out.len())
                })
            });
        }
        group.finish();
    }
}

/// Allocations over 200 bodies of no more than the first's size, after it;
/// and, to show that the counter sees the codec's own allocations, those
/// of making the compressor and compressing the first body.
fn steady_state_allocations(_: &mut Criterion) {
    let bodies: Vec<Vec<Vec<u8>>> = (0..4)
        .map(|s| ndjson(&json_like_batch([500, 1, 37, 500][s], 10 + s as u64)))
        .collect();
    for codec in codecs() {
        let mut out = Vec::new();
        alloc::enable();
        let before = alloc::total();
        let mut z = Compressor::new(codec).expect("a codec");
        let made = alloc::total() - before;
        out.reserve(1 << 20);
        let before = alloc::total();
        z.compress(bodies[0].iter().map(Vec::as_slice), &mut out)
            .expect("compress");
        let first = alloc::total() - before;
        let before = alloc::total();
        for i in 0..200 {
            let body = &bodies[i % bodies.len()];
            z.compress(body.iter().map(Vec::as_slice), &mut out)
                .expect("compress");
        }
        let steady = alloc::total() - before;
        alloc::disable();
        println!(
            "{z:?}: {made} allocations to make it, {first} to compress a first body \
             into a reserved buffer, {steady} over 200 bodies after it"
        );
        assert!(
            made + first > 0,
            "the counter missed {z:?}'s own allocations"
        );
        assert_eq!(steady, 0, "{z:?} allocated in steady state");
    }
}

criterion_group!(benches, steady_state_allocations, compress);
criterion_main!(benches);
