//! Heap allocations counted by the global allocator, during the measured
//! phase only, on the threads that belong to the client under test. Used
//! by `benches/compare` and by `tests/alloc.rs`, which include this file.
//!
//! The count is off outside [`enable`]/[`disable`], and always off on a
//! thread that called [`exclude_this_thread`] (the sink's threads) or
//! inside [`uncounted`] (the producer building a message: the message's
//! own buffer is the caller's, not the client's). `alloc`, `alloc_zeroed`
//! and `realloc` count one each; `dealloc` counts nothing.
//!
//! The counter is striped over cache lines by thread, so that a client
//! which allocates a lot on several threads (tokio's workers) is not slowed
//! down by the counting itself.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Stripes of the counter; threads share them modulo this.
const STRIPES: usize = 64;

/// One stripe, alone on its cache line.
#[repr(align(128))]
struct Stripe(AtomicU64);

static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicU64::new(0)) }; STRIPES];
static ENABLED: AtomicBool = AtomicBool::new(false);
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

// Thread-locals with `const` initialisers and no destructor: reading them
// never allocates, so the allocator may use them.
thread_local! {
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The global allocator of the binaries that include this file: the
/// system allocator, counting.
pub(crate) struct Counting;

#[inline]
fn count() {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    // During thread teardown the thread-locals may be gone: not counted.
    let Ok(false) = EXCLUDED.try_with(Cell::get) else {
        return;
    };
    let Ok(stripe) = STRIPE.try_with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        s.get()
    }) else {
        return;
    };
    COUNTS[stripe].0.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; counting touches only atomics and `const`
// thread-locals without destructors, none of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` and `layout` come from this allocator, which got
        // them from `System`; the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations counted so far.
pub(crate) fn total() -> u64 {
    COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
}

/// Starts counting (the measured phase begins).
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

/// Stops counting.
pub(crate) fn disable() {
    ENABLED.store(false, Ordering::SeqCst);
}

/// Never counts this thread's allocations again.
pub(crate) fn exclude_this_thread() {
    EXCLUDED.with(|e| e.set(true));
}

/// Runs `f` without counting its allocations on this thread.
pub(crate) fn uncounted<R>(f: impl FnOnce() -> R) -> R {
    let before = EXCLUDED.with(|e| e.replace(true));
    let result = f();
    EXCLUDED.with(|e| e.set(before));
    result
}
