//! The runtime against a small loopback server that answers `204`: event
//! loops that panic (the test-only fault hook `Config::panic_at_message`
//! makes a loop panic with a message in hand), and a body that stalls; in
//! `connect`, resolvers that hang or fail and addresses that black-hole.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::queue::Refused;
use super::Runtime;
use crate::error::FailureKind;
use crate::{Client, Stats};

mod connect;

/// Answers every request on every connection with `204`, until dropped;
/// with a `first` answer, the very first request gets that instead, and its
/// connection then never answers again.
struct Sink {
    url: String,
    done: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    connections: Arc<AtomicUsize>,
}

impl Sink {
    fn start() -> Sink {
        Sink::answering_first(None)
    }

    fn answering_first(first: Option<&'static [u8]>) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let done = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::clone(&done);
        let count = Arc::clone(&connections);
        let accept = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let stop = Arc::clone(&stop);
                        let nth = count.fetch_add(1, Ordering::SeqCst);
                        let first = first.filter(|_| nth == 0);
                        std::thread::spawn(move || serve(stream, &stop, first));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        });
        Sink {
            url,
            done,
            accept: Some(accept),
            connections,
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Reads requests (head, then a `Content-Length` body) and answers each:
/// with `first` and then never again if given, else with `204`.
fn serve(mut stream: TcpStream, stop: &AtomicBool, mut first: Option<&'static [u8]>) {
    let mut silent = false;
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                buf.drain(..end + 4 + length);
                let answer = match first.take() {
                    Some(answer) => {
                        silent = true;
                        answer
                    }
                    None if silent => b"",
                    None => b"HTTP/1.1 204 No Content\r\n\r\n",
                };
                if stream.write_all(answer).is_err() {
                    return;
                }
                continue;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// A runtime for `sink` with `workers` slots on `threads` loops whose loop
/// 0 panics when it takes its `panic_at`-th message; the kinds of the
/// failures its handler saw.
fn faulty(
    sink: &Sink,
    workers: usize,
    threads: usize,
    panic_at: u64,
) -> (Runtime, Arc<Mutex<Vec<FailureKind>>>) {
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&kinds);
    let mut config = Client::builder(&sink.url)
        .workers(workers)
        .threads(threads)
        .error_handler(move |e| seen.lock().expect("kinds").push(e.kind()))
        .into_config()
        .expect("config");
    config.panic_at_message = Some((0, panic_at));
    (Runtime::new(config).expect("runtime"), kinds)
}

/// Pushes `n` messages, waiting out a full queue; how many were refused
/// because the client stopped.
fn push_all(runtime: &Runtime, n: usize) -> usize {
    let mut stopped = 0;
    for i in 0..n {
        let mut msg = crate::Message::from(format!("message {i}"));
        for _ in 0..10_000 {
            match runtime.push(msg) {
                Ok(()) => break,
                Err((Refused::Full, back)) => {
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((_, _)) => {
                    stopped += 1;
                    break;
                }
            }
        }
    }
    stopped
}

/// Checks a stopped runtime's books: every accepted message ended, none
/// is left, and the handler saw only `Internal` failures, no more than were
/// counted (those the unwinding dropped are counted without a call).
fn assert_ended_as_internal(runtime: &Runtime, kinds: &Mutex<Vec<FailureKind>>) -> Stats {
    let stats = runtime.stats();
    assert_eq!(stats.accepted, stats.delivered + stats.failed, "{stats:?}");
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
    let kinds = kinds.lock().expect("kinds");
    assert!(
        kinds.iter().all(|&k| k == FailureKind::Internal),
        "{kinds:?}"
    );
    assert!(kinds.len() as u64 <= stats.failed, "{kinds:?} {stats:?}");
    stats
}

#[test]
fn a_loop_that_panics_fails_what_it_held_and_stop_returns() {
    let sink = Sink::start();
    // Loop 0 dies with its 50th message in hand; loop 1 carries on.
    let (runtime, kinds) = faulty(&sink, 4, 2, 50);
    runtime.start();
    let refused = push_all(&runtime, 2_000);
    runtime.stop();
    let stats = assert_ended_as_internal(&runtime, &kinds);
    assert_eq!(refused, 0, "one loop lives: the client keeps accepting");
    assert_eq!(stats.accepted, 2_000);
    assert!(
        stats.failed >= 1,
        "the message in hand fails with the loop: {stats:?}"
    );
    assert!(
        stats.delivered >= 1_000,
        "the other loop went on: {stats:?}"
    );
}

#[test]
fn when_every_loop_died_the_client_stops_and_fails_the_queue() {
    let sink = Sink::start();
    let (runtime, kinds) = faulty(&sink, 2, 1, 3);
    runtime.start();
    let refused = push_all(&runtime, 500);
    runtime.stop();
    let stats = assert_ended_as_internal(&runtime, &kinds);
    assert_eq!(stats.accepted + refused as u64, 500, "{stats:?} {refused}");
    assert!(stats.delivered <= 2, "{stats:?}");
    // After the last loop died, a message is refused as from a stopped
    // client rather than left in a queue nobody takes.
    assert!(matches!(
        runtime.push("late".into()),
        Err((Refused::Stopped, _))
    ));
}

#[test]
fn a_2xx_whose_body_stalls_frees_its_slot_long_before_the_timeout() {
    // The first answer promises 100 body bytes and sends 4, then nothing.
    let sink = Sink::answering_first(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart"));
    let config = Client::builder(&sink.url)
        .workers(1)
        .timeout(Duration::from_secs(120))
        .into_config()
        .expect("config");
    let runtime = Runtime::new(config).expect("runtime");
    runtime.start();
    assert_eq!(push_all(&runtime, 2), 0);
    // Held for the whole 120 s timeout, the one slot could not carry the
    // second message within the minute waited here.
    assert!(
        runtime.flush(Duration::from_secs(60)),
        "{:?}",
        runtime.stats()
    );
    runtime.stop();
    let stats = runtime.stats();
    assert_eq!((stats.delivered, stats.failed), (2, 0), "{stats:?}");
    assert_eq!(
        sink.connections.load(Ordering::SeqCst),
        2,
        "the stalled connection was closed, not reused"
    );
}
