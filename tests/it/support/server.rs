//! The scripted loopback HTTP/1.1 server.
//!
//! It is std-only: a nonblocking accept loop on one thread and one thread
//! per connection. Every request is parsed with `httparse`, recorded, and
//! answered as the script says. Every loop checks a shutdown flag at least
//! every [`POLL`], so all threads end when the [`Server`] is dropped. The
//! same server speaks HTTPS when started by
//! [`TlsServer`](super::tls::TlsServer): the connection thread runs the TLS
//! handshake first, then the same script over the decrypted stream. Started
//! by `Server::start_raw` (see [`super::raw`]), it hands each connection
//! whole to a script instead.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::alone::{share, Share};
use super::drive::wait_until;
use super::raw::{serve_raw, RawScript};
use super::SERVER_THREAD_START;

/// How often blocked server threads look at the shutdown flag.
pub(super) const POLL: Duration = Duration::from_millis(20);
/// A server write that makes no progress for this long drops the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing connection keeps reading for the client's EOF.
const LINGER: Duration = Duration::from_secs(2);
/// Pause between the bytes of an [`Action::Trickle`] response.
const TRICKLE_PAUSE: Duration = Duration::from_millis(1);
/// Requests larger than this (head plus body) drop the connection.
const MAX_REQUEST: usize = 4 << 20;

/// The answer to most requests: `204 No Content`, keep-alive.
pub(crate) const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

/// Locks `mutex`, also when a thread panicked while holding it (a failing
/// test's script, say): what it guards is a record, valid either way.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// The request method, e.g. `POST`.
    pub(crate) method: String,
    /// The request target: path and query.
    pub(crate) target: String,
    /// The headers in the order received, names as sent.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, `Content-Length` bytes of it.
    pub(crate) body: Vec<u8>,
    /// The index of the connection it came on, in accept order from 0.
    pub(crate) conn: usize,
    /// When its last byte had arrived (when it was parsed).
    pub(crate) received: Instant,
}

impl Request {
    /// The value of the first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many headers are named `name` (case-insensitive).
    pub(crate) fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// Where a request sits, for the script to decide on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnInfo {
    /// The connection's index, in accept order from 0.
    pub(crate) conn: usize,
    /// The request's index on its connection, from 0.
    pub(crate) nth: usize,
    /// The request's index over the whole server, from 0.
    pub(crate) total: usize,
}

/// What the server does with a request.
#[derive(Debug, Clone)]
pub(crate) enum Action {
    /// Write these bytes at once and keep the connection for the next request.
    Reply(Vec<u8>),
    /// Write these bytes at once, then close the connection.
    ReplyAndClose(Vec<u8>),
    /// Write these bytes one at a time, flushing and pausing briefly after
    /// each; then keep the connection, or close it when `close` is set.
    Trickle { bytes: Vec<u8>, close: bool },
    /// Never answer; keep reading (and discarding) until the client closes.
    Stall,
    /// Close the connection without answering.
    Close,
    /// Take these steps in order, then keep the connection for the next
    /// request, unless a step closed it or a write failed.
    Steps(Vec<Step>),
}

/// One step of an [`Action::Steps`] answer.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// Write these bytes at once.
    Write(Vec<u8>),
    /// Write these bytes one at a time, flushing and waiting `pause` after
    /// each.
    Trickle { bytes: Vec<u8>, pause: Duration },
    /// Wait this long (the connection sits idle, as the client sees it).
    Pause(Duration),
    /// Close gracefully (FIN, then read until the client's EOF); ends the
    /// steps.
    Close,
}

impl Action {
    /// `204 No Content`, keep-alive.
    pub(crate) fn no_content() -> Action {
        Action::Reply(NO_CONTENT.to_vec())
    }
}

/// A response with the given status line parts, extra header lines and body;
/// `Content-Length` is added.
pub(crate) fn response(
    status: u16,
    reason: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// How the script answers: given each request and where it sits.
pub(super) type Script = dyn Fn(&Request, ConnInfo) -> Action + Send + Sync;

/// A connection's byte stream as the server sees it: plain TCP, or TLS over
/// TCP (see [`super::tls`]).
pub(super) trait Stream: Read + Write {
    /// Ends the sending side gracefully: a FIN (after a TLS `close_notify`).
    fn close_write(&mut self);
}

impl Stream for TcpStream {
    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Turns a freshly accepted TCP connection into the stream requests are read
/// from (a TLS handshake, say); `None` drops the connection. Runs on the
/// connection's thread.
pub(super) type Upgrade = dyn Fn(TcpStream, &Shared) -> Option<Box<dyn Stream>> + Send + Sync;

/// What the server's threads share: the script and the record.
pub(super) struct Shared {
    script: Box<Script>,
    idle_close: Option<Duration>,
    upgrade: Option<Box<Upgrade>>,
    /// With a raw script, each connection is handed to it whole instead.
    raw: Option<Box<RawScript>>,
    stop: AtomicBool,
    requests: Mutex<Vec<Request>>,
    next_request: AtomicUsize,
    connections: AtomicUsize,
    open: AtomicUsize,
    max_open: AtomicUsize,
    malformed: AtomicUsize,
}

impl Shared {
    /// Whether the server is stopping (every thread should return).
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Records `request` as received, for [`Server::requests`].
    pub(super) fn record(&self, request: Request) {
        lock(&self.requests).push(request);
    }

    /// Counts a request that did not parse (its connection is dropped).
    pub(super) fn malformed(&self) {
        self.malformed.fetch_add(1, Ordering::SeqCst);
    }

    /// Where the `nth` request on connection `conn`, arriving now, sits.
    pub(super) fn info(&self, conn: usize, nth: usize) -> ConnInfo {
        ConnInfo {
            conn,
            nth,
            total: self.next_request.fetch_add(1, Ordering::SeqCst),
        }
    }
}

/// A scripted loopback HTTP/1.1 server on `127.0.0.1`, stopped on drop.
pub(crate) struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
    /// Given back once the server's threads have ended.
    _share: Share,
}

impl Server {
    /// Starts a server that answers every request as `script` says.
    pub(crate) fn start(
        script: impl Fn(&Request, ConnInfo) -> Action + Send + Sync + 'static,
    ) -> Server {
        Server::spawn(Box::new(script), None, None)
    }

    /// Starts a server that also closes a kept-alive connection once no
    /// request has arrived on it for `idle`.
    pub(crate) fn start_with_idle_close(
        idle: Duration,
        script: impl Fn(&Request, ConnInfo) -> Action + Send + Sync + 'static,
    ) -> Server {
        Server::spawn(Box::new(script), Some(idle), None)
    }

    /// Starts a server that does `action` with every request.
    pub(crate) fn always(action: Action) -> Server {
        Server::start(move |_, _| action.clone())
    }

    /// Starts a server that answers `204 No Content` to everything.
    pub(crate) fn no_content() -> Server {
        Server::always(Action::no_content())
    }

    /// Starts a server that never answers.
    pub(crate) fn stalled() -> Server {
        Server::always(Action::Stall)
    }

    /// Starts a server; with `upgrade`, an `https` one (see [`Upgrade`]).
    pub(super) fn spawn(
        script: Box<Script>,
        idle_close: Option<Duration>,
        upgrade: Option<Box<Upgrade>>,
    ) -> Server {
        Server::launch(script, idle_close, upgrade, None)
    }

    /// Starts a server; with `raw`, one that hands each connection to it.
    pub(super) fn launch(
        script: Box<Script>,
        idle_close: Option<Duration>,
        upgrade: Option<Box<Upgrade>>,
        raw: Option<Box<RawScript>>,
    ) -> Server {
        let share = share();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test server");
        listener
            .set_nonblocking(true)
            .expect("make the listener nonblocking");
        let addr = listener.local_addr().expect("the listener's address");
        let scheme = if upgrade.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            script,
            idle_close,
            upgrade,
            raw,
            stop: AtomicBool::new(false),
            requests: Mutex::new(Vec::new()),
            next_request: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(0),
            malformed: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name("test-server-accept".into())
                .spawn(move || {
                    server_thread_started();
                    accept_loop(&listener, &shared)
                })
                .expect("spawn the accept thread")
        };
        Server {
            addr,
            scheme,
            shared,
            acceptor: Some(acceptor),
            _share: share,
        }
    }

    /// `127.0.0.1:PORT`, the expected `Host` header.
    pub(crate) fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT/notify` (`https` for a TLS server).
    pub(crate) fn url(&self) -> String {
        self.url_with("/notify")
    }

    /// `http://127.0.0.1:PORT` followed by `path_and_query` (`https` for a
    /// TLS server).
    pub(crate) fn url_with(&self, path_and_query: &str) -> String {
        format!("{}://{}{path_and_query}", self.scheme, self.addr)
    }

    /// After how long without a request it closes a kept-alive connection,
    /// when it does (see [`Server::start_with_idle_close`]).
    pub(super) fn idle_close(&self) -> Option<Duration> {
        self.shared.idle_close
    }

    /// A copy of every request received so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// How many requests have been received so far.
    pub(crate) fn request_count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// How many connections have been accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections are open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub(crate) fn max_open_connections(&self) -> usize {
        self.shared.max_open.load(Ordering::SeqCst)
    }

    /// How many requests did not parse (each dropped its connection).
    pub(crate) fn malformed_requests(&self) -> usize {
        self.shared.malformed.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests have arrived; false at `timeout`.
    pub(crate) fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.request_count() >= n)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// Runs the hook set in [`SERVER_THREAD_START`], if any.
fn server_thread_started() {
    if let Some(hook) = SERVER_THREAD_START.get() {
        hook();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut handlers: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stopping() {
        match listener.accept() {
            Ok((stream, _)) => {
                let index = shared.connections.fetch_add(1, Ordering::SeqCst);
                let open = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared.max_open.fetch_max(open, Ordering::SeqCst);
                let shared = Arc::clone(shared);
                let handler = thread::Builder::new()
                    .name(format!("test-server-conn-{index}"))
                    .spawn(move || {
                        server_thread_started();
                        match &shared.raw {
                            Some(raw) => serve_raw(stream, index, &shared, raw),
                            None => serve(stream, index, &shared),
                        }
                        shared.open.fetch_sub(1, Ordering::SeqCst);
                    })
                    .expect("spawn a connection thread");
                handlers.retain(|h| !h.is_finished());
                handlers.push(handler);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(1)),
            Err(_) => thread::sleep(Duration::from_millis(1)),
        }
    }
    for handler in handlers {
        let _ = handler.join();
    }
}

/// Makes an accepted connection blocking, with reads that wake every
/// [`POLL`] to look at the shutdown flag and writes bounded by
/// [`WRITE_TIMEOUT`].
pub(super) fn set_blocking(tcp: &TcpStream) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(POLL));
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
}

/// Whether a failed read or peek only means that nothing came in time: the
/// connection is still there.
pub(super) fn nothing_yet(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// What one read brought.
enum ReadOutcome {
    Data,
    Nothing,
    Closed,
}

fn read_some(stream: &mut dyn Stream, buf: &mut Vec<u8>) -> ReadOutcome {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => ReadOutcome::Closed,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            ReadOutcome::Data
        }
        Err(e) if nothing_yet(&e) => ReadOutcome::Nothing,
        Err(_) => ReadOutcome::Closed,
    }
}

/// What waiting for the next request on a connection brought.
pub(super) enum Next {
    /// A complete request, taken from the front of the buffer.
    Request(Request),
    /// The idle deadline passed with nothing received.
    Idle,
    /// The client closed, the request did not parse (counted as
    /// malformed), or the server is stopping.
    Ended,
}

/// Reads from `stream` into `buf` until it holds a complete request from
/// connection `conn`, and takes it. With `idle_deadline`, gives up at that
/// instant when nothing of a next request has come.
pub(super) fn next_request(
    stream: &mut dyn Stream,
    buf: &mut Vec<u8>,
    conn: usize,
    shared: &Shared,
    idle_deadline: Option<Instant>,
) -> Next {
    while !shared.stopping() {
        match parse_request(buf, conn) {
            Err(()) => {
                shared.malformed();
                return Next::Ended;
            }
            Ok(Some((request, used))) => {
                buf.drain(..used);
                return Next::Request(request);
            }
            Ok(None) => {}
        }
        if buf.is_empty() && idle_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Next::Idle;
        }
        if buf.len() > MAX_REQUEST {
            shared.malformed();
            return Next::Ended;
        }
        if let ReadOutcome::Closed = read_some(stream, buf) {
            return Next::Ended;
        }
    }
    Next::Ended
}

fn serve(tcp: TcpStream, conn: usize, shared: &Shared) {
    set_blocking(&tcp);
    let mut stream: Box<dyn Stream> = match &shared.upgrade {
        None => Box::new(tcp),
        Some(upgrade) => match upgrade(tcp, shared) {
            Some(stream) => stream,
            None => return,
        },
    };
    let stream = &mut *stream;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut nth = 0;
    let mut idle_since = Instant::now();
    loop {
        let idle_deadline = shared.idle_close.map(|idle| idle_since + idle);
        let request = match next_request(stream, &mut buf, conn, shared, idle_deadline) {
            Next::Request(request) => request,
            Next::Idle => {
                stream.close_write();
                return;
            }
            Next::Ended => return,
        };
        let info = shared.info(conn, nth);
        nth += 1;
        let action = (shared.script)(&request, info);
        shared.record(request);
        let keep = match action {
            Action::Reply(bytes) => stream.write_all(&bytes).is_ok(),
            Action::ReplyAndClose(bytes) => {
                if stream.write_all(&bytes).is_ok() {
                    linger_close(stream, shared);
                }
                false
            }
            Action::Trickle { bytes, close } => {
                let written = trickle(stream, &bytes, TRICKLE_PAUSE, shared);
                if written && close {
                    linger_close(stream, shared);
                }
                written && !close
            }
            Action::Stall => {
                wait_closed(stream, shared, None);
                false
            }
            Action::Close => false,
            Action::Steps(steps) => run_steps(stream, &steps, shared),
        };
        if !keep {
            return;
        }
        idle_since = Instant::now();
    }
}

/// Parses one complete request from the front of `buf`: `Ok(None)` while
/// more bytes are needed, `Err` when it cannot parse.
pub(super) fn parse_request(buf: &[u8], conn: usize) -> Result<Option<(Request, usize)>, ()> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(buf).map_err(|_| ())? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let body_len = match headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v.trim().parse::<usize>().map_err(|_| ())?,
        None => 0,
    };
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        target: parsed.path.unwrap_or_default().to_owned(),
        headers,
        body: buf[head_len..head_len + body_len].to_vec(),
        conn,
        received: Instant::now(),
    };
    Ok(Some((request, head_len + body_len)))
}

/// Writes `bytes` one at a time, flushing and waiting `pause` after each;
/// false when the connection broke or the server is stopping.
pub(super) fn trickle(
    stream: &mut dyn Stream,
    bytes: &[u8],
    pause: Duration,
    shared: &Shared,
) -> bool {
    for byte in bytes {
        if shared.stopping() || stream.write_all(std::slice::from_ref(byte)).is_err() {
            return false;
        }
        let _ = stream.flush();
        if !sleep_unless_stopping(pause, shared) {
            return false;
        }
    }
    true
}

/// Sleeps `d` in slices of at most [`POLL`]; false when the server began
/// stopping meanwhile.
pub(super) fn sleep_unless_stopping(d: Duration, shared: &Shared) -> bool {
    let end = Instant::now() + d;
    loop {
        if shared.stopping() {
            return false;
        }
        let now = Instant::now();
        if now >= end {
            return true;
        }
        thread::sleep((end - now).min(POLL));
    }
}

/// Takes the steps of an [`Action::Steps`]; true when the connection is
/// kept.
fn run_steps(stream: &mut dyn Stream, steps: &[Step], shared: &Shared) -> bool {
    for step in steps {
        let ok = match step {
            Step::Write(bytes) => stream.write_all(bytes).is_ok(),
            Step::Trickle { bytes, pause } => trickle(stream, bytes, *pause, shared),
            Step::Pause(d) => sleep_unless_stopping(*d, shared),
            Step::Close => {
                linger_close(stream, shared);
                return false;
            }
        };
        if !ok {
            return false;
        }
    }
    true
}

/// How a connection ended, as the server saw it while it waited for the
/// client to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// A clean end of stream from the client.
    Eof,
    /// A read error: the client reset the connection, which it does when
    /// it closes with bytes of ours unread, or when ours arrive after it
    /// closed.
    Reset,
    /// The limit passed, or the server is stopping.
    Open,
}

/// Closes gracefully: sends FIN (after `close_notify` over TLS), then reads
/// until the client's EOF (bounded by [`LINGER`]) so that unread input cannot
/// turn the close into a reset that destroys the response. Says how the
/// client's side ended.
pub(super) fn linger_close(stream: &mut dyn Stream, shared: &Shared) -> Ending {
    stream.close_write();
    wait_closed(stream, shared, Some(LINGER))
}

/// Reads and discards until the client closes (or `limit`, or the server
/// stops), and says how it ended.
pub(super) fn wait_closed(
    stream: &mut dyn Stream,
    shared: &Shared,
    limit: Option<Duration>,
) -> Ending {
    let start = Instant::now();
    let mut chunk = [0u8; 16 * 1024];
    let expired = || limit.is_some_and(|limit| start.elapsed() >= limit);
    while !shared.stopping() && !expired() {
        match stream.read(&mut chunk) {
            Ok(0) => return Ending::Eof,
            Ok(_) => {}
            Err(e) if nothing_yet(&e) => {}
            Err(_) => return Ending::Reset,
        }
    }
    Ending::Open
}
