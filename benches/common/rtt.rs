//! A TCP proxy on 127.0.0.1 that adds a round-trip time, for measuring
//! clients as if their server were far away (the kernel here has no
//! netem). `benches/compare --rtt-us N` puts one in front of its sink.
//!
//! Every chunk read from one side is forwarded to the other no earlier
//! than its arrival plus half the RTT, in both directions, so a request
//! and its answer take at least the RTT on top of the proxy's own hop.
//! A FIN (read returns 0) is delayed the same way and forwarded as a
//! half-close (`shutdown(Write)`); a reset (a read fails, or a write to
//! that side fails) is delayed the same way and forwarded as a reset
//! (SO_LINGER 0, then the socket is closed), which ends the connection.
//! After a FIN from a side, a later reset from it is not seen (a read
//! after end of file only says end of file again).
//!
//! One connection is two accepted/connected sockets, both TCP_NODELAY, and
//! four threads: per direction a reader, which stamps each chunk with its
//! arrival time and queues it, and a forwarder, which sleeps until each
//! chunk is due (timer slack 1 ns) and writes it. Order is kept per
//! direction. A direction holds at most [`DIRECTION_CAP`] bytes: beyond
//! that its reader stops reading from its side (TCP backpressure, no
//! unbounded queue); FIN and reset take no room. Dropping the [`Proxy`]
//! stops its acceptor, shuts every connection's sockets down, which wakes
//! every thread, and joins them all. RTT 0 forwards each chunk as soon as
//! the forwarder has it: the proxy's own hop and nothing more.
//!
//! The proxy's threads report to an [`Observer`] (`thread_started` first,
//! `thread_ending` last), so the harness can keep their CPU time and
//! allocations out of the client's account.
//!
//! Not modelled: the connect handshake (a client's `connect` returns at
//! once, the proxy then connects to the target), bandwidth, loss. The cap
//! on what a direction holds is a window, though: one connection streams
//! at most [`DIRECTION_CAP`] per half RTT one way, 51 MB/s at 10 ms
//! (measured 50.6 MB/s, the ignored test `bandwidth`). A request of 500
//! NDJSON messages of 64 bytes is 32.5 kB, an eighth of it, so a batching
//! client's request and answer still take one round trip (the test
//! `a_large_body_takes_one_round_trip` checks 128 KiB each way): at 10 ms,
//! 10 connections carry up to 500,000 such messages a second, 32.5 MB/s in
//! all, with the proxy nowhere near its bound.
//!
//! # What it costs, how close it keeps
//!
//! On the 2-core KVM guest of BENCHMARKS.md, niced, nothing else
//! running. One connection, 64 bytes echoed one exchange at a time (the
//! ignored test `round_trips` below):
//!
//! ```text
//! nice -n 19 cargo test --release -p compare -- --ignored --nocapture round_trips
//! ```
//!
//! | path | round trip min | p50 | p99 |
//! |---|---|---|---|
//! | direct | 13.2 µs | 58.7 µs | 98.1 µs |
//! | RTT 0 | 52.6 µs | 91.9 µs | 139.0 µs |
//! | RTT 1 ms | 1.082 ms | 1.143 ms | 1.261 ms |
//! | RTT 10 ms | 10.157 ms | 10.255 ms | 10.456 ms |
//!
//! The raw floor of `benches/compare`, 10 connections, 64 B, medians of 3
//! runs (min–max); per request is 10 connections over the rate:
//!
//! ```text
//! compare --clients raw --runs 3 --messages 50000 --paced-messages 20000 --warmup 5000 [--rtt-us 0]
//! compare --clients raw --runs 3 --rtt-us 1000 --messages 20000 --paced-messages 5000 --warmup 1000
//! compare --clients raw --runs 3 --rtt-us 10000 --messages 3000 --paced-messages 1000 --warmup 200
//! ```
//!
//! | path | free msgs/s | per request | paced → sink p50 | p99 | proxy CPU µs/msg, free / paced |
//! |---|---|---|---|---|---|
//! | direct | 66.2 k (63.7–90.6 k) | 151 µs | 20.3 µs (18.4–27.8 µs) | 135.0 µs | – |
//! | RTT 0 | 36.9 k (35.4–37.3 k) | 271 µs | 71.0 µs (43.6–77.0 µs) | 317.2 µs | 22–25 / 28–32 |
//! | RTT 1 ms | 8.0 k (7.8–8.5 k) | 1.25 ms | 555.5 µs (555.0–580.6 µs) | 675.3 µs | 64–80 / 72–94 |
//! | RTT 10 ms | 969 (968–972) | 10.32 ms | 5.1 ms (5.1–5.1 ms) | 6.0 ms | 89–108 / 130–151 |
//!
//! (At 10 ms the tables now print 5.14 ms: a later run of one, with
//! `--messages 2000 --paced-messages 1000`.)
//!
//! (An earlier session of the same: direct 105.5 k msgs/s and 11.8 µs to
//! the sink, RTT 0 50.9 k and 36.0 µs: the machine's speed moves more
//! than the proxy's share does.) So the proxy's own hop halves the
//! floor's throughput on two cores, its two reads and two writes per
//! request, and their wake-ups, costing twice the sink's CPU, and adds
//! 17–50 µs one way. A delayed chunk goes out 25–80 µs after it is due
//! (the forwarder's timed wake-up on a virtual machine, longer after a
//! longer sleep), so one connection's round trip is 1.14 ms at 1 ms
//! (+14 %) and 10.26 ms at 10 ms (+2.6 %); ten connections whose requests
//! arrive together also queue behind each other on the two cores
//! (10.32 ms per request). A paced message reaches the sink after half
//! the RTT plus 56 µs at 1 ms and plus 140 µs at 10 ms (p50). The proxy's CPU per message grows
//! with the RTT: a delayed chunk wakes its forwarder twice, once when it
//! is queued and once when it is due, where at RTT 0 its reader writes it.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::sink::{spawn_observed, Acceptor, Observer};

/// The most bytes one direction of a connection holds; its reader waits
/// for room before it reads again.
pub(crate) const DIRECTION_CAP: usize = 256 * 1024;

/// The most one read takes.
const READ_CHUNK: usize = 64 * 1024;

/// The two sides of a connection, as indices into [`Link`]'s arrays.
const CLIENT: usize = 0;
const TARGET: usize = 1;

/// A running proxy: its address forwards to the target it was started
/// with.
pub(crate) struct Proxy {
    shared: Arc<Shared>,
    /// `None` once dropped.
    acceptor: Option<Acceptor>,
}

/// What the acceptor and the connections share.
struct Shared {
    target: SocketAddr,
    half_rtt: Duration,
    observer: Arc<dyn Observer>,
    links: Mutex<Vec<Running>>,
}

/// A connection's threads, and the link they share while any lives.
struct Running {
    link: Weak<Link>,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port; every connection accepted is
    /// forwarded to `target` with `rtt` added to each round trip.
    pub(crate) fn start(
        target: SocketAddr,
        rtt: Duration,
        observer: Arc<dyn Observer>,
    ) -> io::Result<Proxy> {
        let shared = Arc::new(Shared {
            target,
            half_rtt: rtt / 2,
            observer,
            links: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let inner = Arc::clone(&shared);
            Acceptor::start("rtt", &shared.observer, move |client| {
                accept(client, &inner);
            })?
        };
        Ok(Proxy {
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.acceptor.as_ref().expect("kept until drop").addr()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // No link is added after this.
        drop(self.acceptor.take());
        let running = std::mem::take(&mut *lock(&self.shared.links));
        for r in &running {
            if let Some(link) = r.link.upgrade() {
                link.stop();
            }
        }
        for thread in running.into_iter().flat_map(|r| r.threads) {
            let _ = thread.join();
        }
    }
}

/// Forwards a connection accepted, first joining those that are over.
fn accept(client: TcpStream, shared: &Shared) {
    let mut links = lock(&shared.links);
    links.retain_mut(|r| {
        if r.threads.iter().all(JoinHandle::is_finished) {
            for thread in r.threads.drain(..) {
                let _ = thread.join();
            }
            false
        } else {
            true
        }
    });
    match connect(client, shared) {
        Ok(running) => links.push(running),
        Err(e) => eprintln!("rtt proxy: cannot forward a connection: {e}"),
    }
}

/// Connects `client` to the target and starts the connection's threads.
/// A client whose target cannot be reached is reset.
fn connect(client: TcpStream, shared: &Shared) -> io::Result<Running> {
    let target = match TcpStream::connect(shared.target) {
        Ok(target) => target,
        Err(e) => {
            let _ = set_linger_zero(&client);
            return Err(e);
        }
    };
    client.set_nodelay(true)?;
    target.set_nodelay(true)?;
    let link = Arc::new(Link {
        sockets: [client, target],
        queues: [Queue::new(), Queue::new()],
        half_rtt: shared.half_rtt,
    });
    let mut running = Running {
        link: Arc::downgrade(&link),
        threads: Vec::with_capacity(4),
    };
    for from in [CLIENT, TARGET] {
        let (reader, forwarder) = (Arc::clone(&link), Arc::clone(&link));
        let spawned = spawn_observed("rtt-read", &shared.observer, move || reader.read(from))
            .and_then(|t| {
                running.threads.push(t);
                spawn_observed("rtt-forward", &shared.observer, move || {
                    fine_timer_slack();
                    forwarder.forward(from);
                })
            });
        match spawned {
            Ok(t) => running.threads.push(t),
            Err(e) => {
                // The threads already started end at once; they are joined
                // with the others.
                eprintln!("rtt proxy: cannot spawn a thread: {e}");
                link.stop();
                break;
            }
        }
    }
    Ok(running)
}

// ---------------------------------------------------------------------------
// A connection
// ---------------------------------------------------------------------------

/// What a direction carries.
enum Event {
    Data(Vec<u8>),
    Fin,
    Reset,
}

/// An event and when it may be forwarded.
struct Due {
    at: Instant,
    event: Event,
}

/// One direction's events, oldest first.
struct Queue {
    state: Mutex<QueueState>,
    /// Wakes the forwarder: an event, the last producer gone, closed.
    filled: Condvar,
    /// Wakes the reader: room, or closed.
    drained: Condvar,
}

struct QueueState {
    events: VecDeque<Due>,
    /// Bytes of data in `events`.
    bytes: usize,
    /// Who may still push: this direction's reader, and the other
    /// direction's forwarder (a failed write is a reset from its side).
    producers: usize,
    /// The forwarder is gone or the link torn down: pushes are dropped, the
    /// reader never waits.
    closed: bool,
    /// Someone is writing this direction's data: the forwarder, or the
    /// reader that found nothing ahead of a chunk already due. Only the
    /// reader queues data, and not while it has the turn, so the forwarder
    /// never finds data to write while the reader writes.
    turn: bool,
}

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                bytes: 0,
                producers: 2,
                closed: false,
                turn: false,
            }),
            filled: Condvar::new(),
            drained: Condvar::new(),
        }
    }

    /// Waits for room; how many bytes the reader may read now.
    fn room(&self) -> usize {
        let mut state = lock(&self.state);
        while !state.closed && state.bytes >= DIRECTION_CAP {
            state = self
                .drained
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            READ_CHUNK
        } else {
            (DIRECTION_CAP - state.bytes).min(READ_CHUNK)
        }
    }

    /// Queues `event`, due at `at`; dropped when the queue is closed.
    fn push(&self, at: Instant, event: Event) {
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        if let Event::Data(bytes) = &event {
            state.bytes += bytes.len();
        }
        state.events.push_back(Due { at, event });
        self.filled.notify_one();
    }

    /// Whether the reader may write a chunk due `at` itself: nothing is
    /// queued or being written, and it is due. If so the reader has the
    /// turn until [`Queue::turn_done`].
    fn take_turn(&self, at: Instant) -> bool {
        let mut state = lock(&self.state);
        let free = !state.closed && !state.turn && state.events.is_empty();
        if free && at <= Instant::now() {
            state.turn = true;
            return true;
        }
        false
    }

    /// A write begun with the turn is over.
    fn turn_done(&self) {
        lock(&self.state).turn = false;
    }

    /// A producer is done.
    fn release(&self) {
        lock(&self.state).producers -= 1;
        self.filled.notify_one();
    }

    fn close(&self) {
        let mut state = lock(&self.state);
        state.closed = true;
        state.events.clear();
        state.bytes = 0;
        self.filled.notify_all();
        self.drained.notify_all();
    }

    /// The oldest event once it is due; `None` once closed, or empty with
    /// no producer left. Data comes with the turn: the caller writes it,
    /// then calls [`Queue::turn_done`].
    fn next(&self) -> Option<Event> {
        let mut state = lock(&self.state);
        loop {
            if state.closed {
                return None;
            }
            let Some(front) = state.events.front() else {
                if state.producers == 0 {
                    return None;
                }
                state = self
                    .filled
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let now = Instant::now();
            if front.at <= now {
                let due = state.events.pop_front().expect("the front is there");
                if let Event::Data(bytes) = &due.event {
                    state.bytes -= bytes.len();
                    state.turn = true;
                    self.drained.notify_one();
                }
                return Some(due.event);
            }
            let wait = front.at - now;
            state = self
                .filled
                .wait_timeout(state, wait)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A proxied connection: `sockets[CLIENT]` accepted, `sockets[TARGET]`
/// connected; `queues[side]` carries what `sockets[side]` sent to the
/// other side. The sockets close when the last of the four threads is done.
struct Link {
    sockets: [TcpStream; 2],
    queues: [Queue; 2],
    half_rtt: Duration,
}

impl Link {
    /// The reader of side `from`: reads, stamps, queues; a FIN or an error
    /// is queued as such and ends it.
    fn read(&self, from: usize) {
        let queue = &self.queues[from];
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let room = queue.room();
            let read = (&self.sockets[from]).read(&mut buf[..room]);
            let at = Instant::now() + self.half_rtt;
            match read {
                Ok(0) => {
                    queue.push(at, Event::Fin);
                    break;
                }
                // Nothing ahead of it and due already (RTT 0): written
                // here, which saves the forwarder's wake-up.
                Ok(n) if queue.take_turn(at) => {
                    self.write(from, &buf[..n]);
                    queue.turn_done();
                }
                Ok(n) => queue.push(at, Event::Data(buf[..n].to_vec())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    queue.push(at, Event::Reset);
                    break;
                }
            }
        }
        queue.release();
    }

    /// The forwarder of what side `from` sent: writes each event to the
    /// other side when it is due.
    fn forward(&self, from: usize) {
        let to = 1 - from;
        let queue = &self.queues[from];
        // Where a failed write to the other side goes, as a reset from it.
        let mut back = Some(&self.queues[to]);
        while let Some(event) = queue.next() {
            match event {
                Event::Data(bytes) => {
                    let written = self.write(from, &bytes);
                    queue.turn_done();
                    if !written {
                        break;
                    }
                }
                Event::Fin => {
                    let _ = self.sockets[to].shutdown(Shutdown::Write);
                    // Nothing more is written there, so no failure to report.
                    if let Some(back) = back.take() {
                        back.release();
                    }
                }
                Event::Reset => {
                    self.reset(to);
                    break;
                }
            }
        }
        queue.close();
        if let Some(back) = back {
            back.release();
        }
    }

    /// Writes what side `from` sent to the other side, holding the
    /// direction's turn. A failure is a reset from the other side: it goes
    /// back to side `from`, and what comes for the other side from now on
    /// is dropped. Whether it was written.
    fn write(&self, from: usize, bytes: &[u8]) -> bool {
        let to = 1 - from;
        if (&self.sockets[to]).write_all(bytes).is_ok() {
            return true;
        }
        self.queues[to].push(Instant::now() + self.half_rtt, Event::Reset);
        self.queues[from].close();
        false
    }

    /// Resets `sockets[side]` and ends the connection: with SO_LINGER 0 its
    /// close sends a RST; its reader is woken by `shutdown(Read)` (which
    /// sends nothing), the other socket is shut down.
    fn reset(&self, side: usize) {
        let _ = set_linger_zero(&self.sockets[side]);
        self.queues.iter().for_each(Queue::close);
        let _ = self.sockets[side].shutdown(Shutdown::Read);
        let _ = self.sockets[1 - side].shutdown(Shutdown::Both);
    }

    /// Ends the connection at once: every thread wakes and returns.
    fn stop(&self) {
        self.queues.iter().for_each(Queue::close);
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the socket's close send a RST.
fn set_linger_zero(socket: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open for as long as `socket` is borrowed,
    // and SO_LINGER reads a `linger` of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes this thread's sleeps end on time: Linux's default timer slack
/// (50 µs) is a tenth of the half RTT of 1 ms (and, in `benches/compare`,
/// the size of a whole paced interval at 20,000 messages per second).
pub(crate) fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes only
    // the calling thread's timer slack.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;
    use crate::sink::Quiet;

    /// A bound on every blocking call of a test, so that a bug fails it
    /// instead of hanging it.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// A listener whose first connection is served by `serve` on a thread.
    fn target<T: Send + 'static>(
        serve: impl FnOnce(TcpStream) -> T + Send + 'static,
    ) -> (SocketAddr, JoinHandle<T>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            conn.set_read_timeout(Some(PATIENCE)).unwrap();
            serve(conn)
        });
        (addr, server)
    }

    fn through(proxy: &Proxy) -> TcpStream {
        let conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(PATIENCE)).unwrap();
        conn
    }

    fn proxy(target: SocketAddr, rtt: Duration) -> Proxy {
        Proxy::start(target, rtt, Arc::new(Quiet)).unwrap()
    }

    /// Echoes until end of file.
    fn echo(mut conn: TcpStream) {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            conn.write_all(&buf[..n]).unwrap();
        }
    }

    #[test]
    fn a_round_trip_takes_at_least_the_rtt() {
        let rtt = Duration::from_millis(20);
        let (addr, server) = target(echo);
        let proxy = proxy(addr, rtt);
        let mut conn = through(&proxy);
        for byte in [b'a', b'b'] {
            let start = Instant::now();
            conn.write_all(&[byte]).unwrap();
            let mut back = [0u8];
            conn.read_exact(&mut back).unwrap();
            assert!(start.elapsed() >= rtt, "{:?} < {rtt:?}", start.elapsed());
            assert_eq!(back[0], byte);
        }
        drop(conn);
        server.join().unwrap();
    }

    #[test]
    fn rtt_zero_forwards() {
        let (addr, server) = target(echo);
        let proxy = proxy(addr, Duration::ZERO);
        let mut conn = through(&proxy);
        let data: Vec<u8> = (0..=255).cycle().take(1 << 20).collect();
        let writer = {
            let (mut conn, data) = (conn.try_clone().unwrap(), data.clone());
            thread::spawn(move || conn.write_all(&data).unwrap())
        };
        let mut back = vec![0u8; data.len()];
        conn.read_exact(&mut back).unwrap();
        writer.join().unwrap();
        assert!(back == data, "the bytes came back changed or reordered");
        drop(conn);
        server.join().unwrap();
    }

    /// A half-close reaches the target as end of file while the way back
    /// stays open, and the target's close comes back as end of file.
    #[test]
    fn a_fin_is_forwarded_as_a_half_close() {
        let (addr, server) = target(|mut conn| {
            let mut got = Vec::new();
            conn.read_to_end(&mut got).unwrap();
            conn.write_all(b"bye").unwrap();
            got
        });
        let proxy = proxy(addr, Duration::from_millis(2));
        let mut conn = through(&proxy);
        conn.write_all(b"hi").unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        conn.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"bye");
        assert_eq!(server.join().unwrap(), b"hi");
    }

    #[test]
    fn a_reset_by_the_target_reaches_the_client_as_a_reset() {
        let (addr, server) = target(|mut conn| {
            let mut byte = [0u8];
            conn.read_exact(&mut byte).unwrap();
            set_linger_zero(&conn).unwrap();
        });
        let proxy = proxy(addr, Duration::from_millis(2));
        let mut conn = through(&proxy);
        conn.write_all(b"x").unwrap();
        server.join().unwrap();
        let mut buf = [0u8; 8];
        let err = conn
            .read(&mut buf)
            .expect_err("a reset, not data or end of file");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }

    #[test]
    fn a_reset_by_the_client_reaches_the_target_as_a_reset() {
        let (addr, server) = target(|mut conn| {
            let mut buf = [0u8; 8];
            conn.read_exact(&mut buf[..1]).unwrap();
            conn.write_all(&buf[..1]).unwrap();
            conn.read(&mut buf).map_err(|e| e.kind())
        });
        let proxy = proxy(addr, Duration::from_millis(2));
        let mut conn = through(&proxy);
        // The byte's echo says the target has it, so the reset cannot
        // overtake it on the way in.
        conn.write_all(b"x").unwrap();
        conn.read_exact(&mut [0u8]).unwrap();
        set_linger_zero(&conn).unwrap();
        drop(conn);
        assert_eq!(server.join().unwrap(), Err(io::ErrorKind::ConnectionReset));
    }

    /// Not a check: prints the round trip of 64 bytes echoed over one
    /// connection, direct and through the proxy at 0, 1 and 10 ms, one
    /// exchange at a time (the figures in this file's documentation).
    ///
    /// ```text
    /// nice -n 19 cargo test --release -p compare -- --ignored --nocapture round_trips
    /// ```
    #[test]
    #[ignore = "a measurement, not a check"]
    fn round_trips() {
        let cases = [
            (None, 5000),
            (Some(Duration::ZERO), 5000),
            (Some(Duration::from_millis(1)), 1000),
            (Some(Duration::from_millis(10)), 200),
        ];
        for (rtt, exchanges) in cases {
            let (addr, server) = target(echo);
            let proxy = rtt.map(|rtt| proxy(addr, rtt));
            let mut conn = TcpStream::connect(proxy.as_ref().map_or(addr, Proxy::addr)).unwrap();
            conn.set_nodelay(true).unwrap();
            let (message, mut back) = ([b'.'; 64], [0u8; 64]);
            let mut times: Vec<Duration> = (0..exchanges)
                .map(|_| {
                    let start = Instant::now();
                    conn.write_all(&message).unwrap();
                    conn.read_exact(&mut back).unwrap();
                    start.elapsed()
                })
                .collect();
            drop(conn);
            server.join().unwrap();
            times.sort();
            let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
            println!(
                "{:>12}: {exchanges} round trips, min {:?}, p50 {:?}, p99 {:?}, max {:?}",
                rtt.map_or("direct".to_owned(), |rtt| format!("RTT {rtt:?}")),
                at(0.0),
                at(0.5),
                at(0.99),
                at(1.0),
            );
            for time in &times {
                assert!(*time >= rtt.unwrap_or_default());
            }
        }
    }

    /// Echoes until end of file, in reads of up to 64 KiB.
    fn echo_large(mut conn: TcpStream) {
        let mut buf = vec![0u8; READ_CHUNK];
        while let Ok(n @ 1..) = conn.read(&mut buf) {
            conn.write_all(&buf[..n]).unwrap();
        }
    }

    /// A body of 128 KiB (four times a batch of 500 messages of 64 bytes
    /// in NDJSON) and its echo take one round trip, not one per chunk or
    /// per read: every chunk that arrives together is due together. The
    /// best of five exchanges is checked, with room for a busy machine.
    #[test]
    fn a_large_body_takes_one_round_trip() {
        let rtt = Duration::from_millis(50);
        let (addr, server) = target(echo_large);
        let proxy = proxy(addr, rtt);
        let mut conn = through(&proxy);
        let body: Vec<u8> = (0..=255).cycle().take(128 * 1024).collect();
        let mut back = vec![0u8; body.len()];
        let best = (0..5)
            .map(|_| {
                let start = Instant::now();
                conn.write_all(&body).unwrap();
                conn.read_exact(&mut back).unwrap();
                let took = start.elapsed();
                assert!(back == body, "the bytes came back changed or reordered");
                assert!(took >= rtt, "{took:?} < {rtt:?}");
                took
            })
            .min()
            .unwrap();
        assert!(
            best < rtt * 3 / 2,
            "best of five took {best:?} at RTT {rtt:?}"
        );
        drop(conn);
        server.join().unwrap();
    }

    /// Not a check: prints how fast one connection streams one way through
    /// the proxy at RTT 10 ms. The bound is [`DIRECTION_CAP`] per half RTT
    /// (51 MB/s at 10 ms), the window of a link that long.
    ///
    /// ```text
    /// nice -n 19 cargo test --release -p compare -- --ignored --nocapture bandwidth
    /// ```
    #[test]
    #[ignore = "a measurement, not a check"]
    fn bandwidth() {
        const BYTES: usize = 64 << 20;
        let rtt = Duration::from_millis(10);
        let (addr, server) = target(|mut conn| {
            let mut buf = vec![0u8; READ_CHUNK];
            let mut got = 0;
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                got += n;
            }
            got
        });
        let proxy = proxy(addr, rtt);
        let mut conn = through(&proxy);
        let chunk = vec![b'.'; 32 * 1024];
        let start = Instant::now();
        for _ in 0..BYTES / chunk.len() {
            conn.write_all(&chunk).unwrap();
        }
        conn.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.join().unwrap(), BYTES);
        let took = start.elapsed();
        println!(
            "{} MiB one way at RTT {rtt:?} in {took:?}: {:.1} MB/s",
            BYTES >> 20,
            BYTES as f64 / took.as_secs_f64() / 1e6
        );
    }

    /// Dropping the proxy ends connections that are still open.
    #[test]
    fn drop_stops_live_connections() {
        let (addr, server) = target(echo);
        let proxy = proxy(addr, Duration::from_millis(2));
        let mut conn = through(&proxy);
        conn.write_all(b"x").unwrap();
        let mut byte = [0u8];
        conn.read_exact(&mut byte).unwrap();
        drop(proxy);
        assert_eq!(conn.read(&mut byte).unwrap(), 0);
        server.join().unwrap();
    }
}
