//! Opening connections against a resolver the tests control (the
//! test-only hook `Config::lookup`): a lookup that hangs delays nothing
//! that does not need it, an attempt waiting for an address ends at its
//! timeout or with the lookup's error, a connect failure asks for a new
//! lookup, and a black-holed address costs the connect-attempt delay, not
//! the attempt.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{push_all, Sink};
use crate::error::FailureKind;
use crate::runtime::Runtime;
use crate::{Builder, Client};

const LONG: Duration = Duration::from_secs(30);

/// Holds lookups until opened; opens when dropped, so that no resolver
/// thread outlives its test.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    /// A closed gate, and the guard that opens it.
    fn closed() -> (Arc<Gate>, Release) {
        let gate = Arc::new(Gate::default());
        (Arc::clone(&gate), Release(gate))
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// Opens its gate when dropped.
struct Release(Arc<Gate>);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// What the error handler saw: each failure's kind and source.
type Seen = Arc<Mutex<Vec<(FailureKind, String)>>>;

/// A runtime for `url` as `builder` configures it, whose host name is
/// looked up by `lookup` (given the number of the lookup, from 0), and
/// what its error handler saw.
fn runtime(
    url: &str,
    builder: impl FnOnce(Builder) -> Builder,
    lookup: impl Fn(usize) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
) -> (Runtime, Seen) {
    let seen: Seen = Arc::default();
    let record = Arc::clone(&seen);
    let mut config = builder(Client::builder(url))
        .error_handler(move |e| {
            let source = std::error::Error::source(&e).map_or(String::new(), |s| s.to_string());
            record.lock().expect("seen").push((e.kind(), source));
        })
        .into_config()
        .expect("config");
    let calls = AtomicUsize::new(0);
    config.lookup = Some(Arc::new(move |_: &str, _: u16| {
        lookup(calls.fetch_add(1, Ordering::SeqCst))
    }));
    (Runtime::new(config).expect("runtime"), seen)
}

/// The sink's address, and a URL naming it by a host name.
fn named(sink: &Sink) -> (SocketAddr, String) {
    let addr: SocketAddr = sink
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("the sink's address");
    (addr, format!("http://sink.test:{}/", addr.port()))
}

fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LONG;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}

#[test]
fn a_hung_resolver_delays_no_message_on_an_open_connection() {
    let sink = Sink::start();
    let (addr, url) = named(&sink);
    let (gate, _release) = Gate::closed();
    let hung = Arc::clone(&gate);
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    // The first lookup answers; every refresh after it hangs.
    let (runtime, seen) = runtime(
        &url,
        |b| b.workers(1).dns_refresh(Duration::from_millis(20)),
        move |n| {
            counted.fetch_add(1, Ordering::SeqCst);
            if n > 0 {
                hung.wait();
            }
            Ok(vec![addr])
        },
    );
    runtime.start();
    assert_eq!(push_all(&runtime, 1), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    assert!(
        wait_until(|| lookups.load(Ordering::SeqCst) == 2),
        "a refresh hangs"
    );
    assert_eq!(push_all(&runtime, 20), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    assert_eq!(lookups.load(Ordering::SeqCst), 2, "the refresh still hangs");
    gate.open();
    runtime.stop();
    let stats = runtime.stats();
    assert_eq!(
        (stats.delivered, stats.failed),
        (21, 0),
        "{stats:?} {seen:?}"
    );
    assert_eq!(sink.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn an_ip_literal_endpoint_never_waits_for_the_resolver() {
    let sink = Sink::start();
    let (gate, _release) = Gate::closed();
    let hung = Arc::clone(&gate);
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    let (runtime, _) = runtime(
        &sink.url,
        |b| b.workers(2),
        move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            hung.wait();
            Ok(Vec::new())
        },
    );
    assert!(!runtime.shared.resolver.needs_thread());
    runtime.start();
    assert_eq!(push_all(&runtime, 20), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    runtime.stop();
    assert_eq!(runtime.stats().delivered, 20);
    assert_eq!(lookups.load(Ordering::SeqCst), 0);
}

#[test]
fn a_message_waiting_for_an_address_fails_at_its_timeout_and_flows_after_release() {
    let sink = Sink::start();
    let (addr, url) = named(&sink);
    let (gate, _release) = Gate::closed();
    let hung = Arc::clone(&gate);
    let (runtime, seen) = runtime(
        &url,
        |b| b.workers(1).timeout(Duration::from_millis(500)),
        move |_| {
            hung.wait();
            Ok(vec![addr])
        },
    );
    runtime.start();
    assert_eq!(push_all(&runtime, 1), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].0, FailureKind::Connect, "{seen:?}");
        assert!(seen[0].1.contains("lookup"), "{seen:?}");
    }
    // Another message waits for the same lookup; released, it goes.
    assert_eq!(push_all(&runtime, 1), 0);
    gate.open();
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    runtime.stop();
    let stats = runtime.stats();
    assert_eq!(
        (stats.delivered, stats.failed),
        (1, 1),
        "{stats:?} {seen:?}"
    );
}

#[test]
fn a_failed_lookup_fails_the_attempts_that_waited_for_it() {
    let (runtime, seen) = runtime(
        "http://nowhere.test/",
        |b| b.workers(2).timeout(LONG * 10),
        |_| Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
    );
    runtime.start();
    assert_eq!(push_all(&runtime, 2), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    runtime.stop();
    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(kind, source)| *kind == FailureKind::Connect && source == "no such host"),
        "{seen:?}"
    );
}

#[test]
fn a_connect_failure_asks_for_a_new_lookup() {
    let sink = Sink::start();
    let (addr, url) = named(&sink);
    // Nothing listens there any more: connects are refused.
    let refused = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let lookups = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&lookups);
    let (runtime, seen) = runtime(
        &url,
        |b| b.workers(1).dns_refresh(Duration::ZERO),
        move |n| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(vec![if n == 0 { refused } else { addr }])
        },
    );
    runtime.start();
    assert_eq!(push_all(&runtime, 1), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    assert_eq!(seen.lock().expect("seen")[0].0, FailureKind::Connect);
    assert!(
        wait_until(|| lookups.load(Ordering::SeqCst) == 2),
        "no lookup after the failure"
    );
    assert!(wait_until(|| runtime
        .shared
        .resolver
        .addresses()
        .is_ok_and(|a| a[..] == [addr])));
    assert_eq!(push_all(&runtime, 1), 0);
    runtime.stop();
    let stats = runtime.stats();
    assert_eq!((stats.delivered, stats.failed), (1, 1), "{stats:?}");
}

/// A listener whose accept queue is full, so that the kernel drops the
/// SYNs of further connects: they neither connect nor fail. The
/// connections that fill the queue (as many as its backlog takes) are
/// kept with it; the connect that first hangs proves the black hole.
#[cfg(target_os = "linux")]
fn black_hole() -> (TcpListener, Vec<TcpStream>, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(filler) => fillers.push(filler),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return (listener, fillers, addr),
            Err(e) => panic!("connect to the listener: {e}"),
        }
        assert!(
            fillers.len() <= 1024,
            "this kernel does not drop SYNs to a full accept queue"
        );
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_black_holed_address_costs_the_delay_and_the_next_one_carries_the_message() {
    let sink = Sink::start();
    let (good, url) = named(&sink);
    let (_listener, _fillers, hole) = black_hole();
    let (runtime, seen) = runtime(
        &url,
        |b| b.workers(1).timeout(LONG),
        move |_| Ok(vec![hole, good]),
    );
    runtime.start();
    assert_eq!(push_all(&runtime, 3), 0);
    assert!(runtime.flush(LONG), "{:?}", runtime.stats());
    runtime.stop();
    let stats = runtime.stats();
    assert_eq!(
        (stats.delivered, stats.failed),
        (3, 0),
        "{stats:?} {seen:?}"
    );
    assert_eq!(
        sink.connections.load(Ordering::SeqCst),
        1,
        "one connection, to the address that answers, carried all three"
    );
}
