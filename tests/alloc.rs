//! Heap allocations per delivered message, counted by a global allocator.
//!
//! The count covers the client's event loops and the notifying thread; the
//! test server's threads are left out. Messages are allocated before the
//! counted window, so what remains is what the client itself allocates.

// A global allocator is an `unsafe impl`; this test binary needs one.
#![allow(unsafe_code)]

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use notifier::{Builder, Client, Message};
use support::tls::TlsServer;
use support::{notify_retrying, Server};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static NOT_COUNTED: Cell<bool> = const { Cell::new(false) };
}

struct Counting;

fn count() {
    if !NOT_COUNTED.try_with(Cell::get).unwrap_or(true) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees hold; counting touches only an atomic and a
// const thread-local without a destructor, neither of which allocates.
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
        // them from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM_UP: usize = 5_000;
const MESSAGES: usize = 10_000;
const LONG: Duration = Duration::from_secs(60);

fn leave_server_threads_out() {
    NOT_COUNTED.with(|c| c.set(true));
}

/// Allocations the client made while delivering [`MESSAGES`] 64-byte
/// messages, after a warm-up that opened its connections.
fn allocations_for(builder: Builder) -> u64 {
    let client: Client = builder.build().expect("build");
    client.start();
    for _ in 0..WARM_UP {
        notify_retrying(&client, vec![b'w'; 64]);
    }
    assert!(client.flush(LONG));
    let messages: Vec<Message> = (0..MESSAGES)
        .map(|_| Message::from(vec![b'm'; 64]))
        .collect();

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    for m in messages {
        notify_retrying(&client, m);
    }
    assert!(client.flush(LONG));
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;

    client.stop();
    let stats = client.stats();
    assert_eq!(stats.delivered, (WARM_UP + MESSAGES) as u64, "{stats:?}");
    allocations
}

/// One test, so the two measurements never overlap in the shared counter.
#[test]
fn allocations_per_message_over_http_and_https() {
    support::on_server_thread_start(leave_server_threads_out);

    let server = Server::no_content();
    let http = allocations_for(Client::builder(&server.url()));

    let tls_server = TlsServer::no_content();
    let https =
        allocations_for(Client::builder(&tls_server.url()).tls_config(tls_server.client_config()));

    let per = |n: u64| n as f64 / MESSAGES as f64;
    eprintln!(
        "allocations for {MESSAGES} messages: http {http} ({:.3}/msg), https {https} ({:.3}/msg)",
        per(http),
        per(https)
    );
    // A handful at most (a flush waiter's registration), none per message.
    assert!(
        http <= 16,
        "plain HTTP allocated {http} times for {MESSAGES} messages"
    );
    // rustls 0.23 allocates one buffer per record it encrypts and one per
    // record it decrypts: two per exchange, no more. Its unbuffered API
    // does the same (`encrypt_outgoing` and `received_plaintext` serve
    // both), so it would not lower this.
    assert!(
        https <= 2 * MESSAGES as u64 + 16,
        "HTTPS allocated {https} times for {MESSAGES} messages: more than two per message"
    );
}
