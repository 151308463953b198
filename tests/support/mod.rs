//! Test support: a scripted loopback HTTP/1.1 server and helpers to drive a
//! [`Client`] and collect what reaches its error handler.
//!
//! The server is std-only: a nonblocking accept loop on one thread and one
//! thread per connection. Every request is parsed with `httparse`, recorded,
//! and answered as the script says. Every loop checks a shutdown flag at
//! least every [`POLL`], so all threads end when the [`Server`] is dropped.
//! The same server speaks HTTPS when started by [`tls::TlsServer`]: the
//! connection thread runs the TLS handshake first, then the same script over
//! the decrypted stream.

#![allow(dead_code)]

pub(crate) mod tls;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use notifier::{
    Builder, Client, FailureKind, Message, NotificationError, NotifyError, RetryConfig, Stats,
};

/// Run first on every server thread: a test that counts allocations uses it
/// to leave the server's own out of the count.
static SERVER_THREAD_START: OnceLock<fn()> = OnceLock::new();

/// Sets the hook every server thread runs when it starts (once per test
/// binary).
pub(crate) fn on_server_thread_start(hook: fn()) {
    assert!(SERVER_THREAD_START.set(hook).is_ok(), "hook already set");
}

fn server_thread_started() {
    if let Some(hook) = SERVER_THREAD_START.get() {
        hook();
    }
}

/// How often blocked server threads look at the shutdown flag.
const POLL: Duration = Duration::from_millis(20);
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

type Script = dyn Fn(&Request, ConnInfo) -> Action + Send + Sync;

/// A connection's byte stream as the server sees it: plain TCP, or TLS over
/// TCP (see [`tls`]).
trait Stream: Read + Write {
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
type Upgrade = dyn Fn(TcpStream, &Shared) -> Option<Box<dyn Stream>> + Send + Sync;

struct Shared {
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
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// A scripted loopback HTTP/1.1 server on `127.0.0.1`, stopped on drop.
pub(crate) struct Server {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
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
    fn spawn(
        script: Box<Script>,
        idle_close: Option<Duration>,
        upgrade: Option<Box<Upgrade>>,
    ) -> Server {
        Server::launch(script, idle_close, upgrade, None)
    }

    /// Starts a plain `http` server that hands every accepted connection,
    /// on its own thread, to `script` (see [`RawConn`]): for what an
    /// [`Action`] cannot say, such as resetting a connection or never
    /// reading from it. Nothing is recorded unless the script says so
    /// ([`RawConn::record`]).
    pub(crate) fn start_raw(script: impl Fn(RawConn<'_>) + Send + Sync + 'static) -> Server {
        Server::launch(
            Box::new(|_, _| Action::Close),
            None,
            None,
            Some(Box::new(script)),
        )
    }

    fn launch(
        script: Box<Script>,
        idle_close: Option<Duration>,
        upgrade: Option<Box<Upgrade>>,
        raw: Option<Box<RawScript>>,
    ) -> Server {
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

    /// A copy of every request received so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Request> {
        self.lock_requests().clone()
    }

    /// How many requests have been received so far.
    pub(crate) fn request_count(&self) -> usize {
        self.lock_requests().len()
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

    fn lock_requests(&self) -> MutexGuard<'_, Vec<Request>> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
            ) =>
        {
            ReadOutcome::Nothing
        }
        Err(_) => ReadOutcome::Closed,
    }
}

fn serve(tcp: TcpStream, conn: usize, shared: &Shared) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(POLL));
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
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
    while !shared.stopping() {
        match parse_request(&buf, conn) {
            Err(()) => {
                shared.malformed.fetch_add(1, Ordering::SeqCst);
                return;
            }
            Ok(Some((request, used))) => {
                buf.drain(..used);
                let info = ConnInfo {
                    conn,
                    nth,
                    total: shared.next_request.fetch_add(1, Ordering::SeqCst),
                };
                nth += 1;
                let action = (shared.script)(&request, info);
                shared
                    .requests
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(request);
                let keep = match action {
                    Action::Reply(bytes) => stream.write_all(&bytes).is_ok(),
                    Action::ReplyAndClose(bytes) => {
                        if stream.write_all(&bytes).is_ok() {
                            linger_close(stream, shared);
                        }
                        false
                    }
                    Action::Trickle { bytes, close } => {
                        let written = trickle(stream, &bytes, shared);
                        if written && close {
                            linger_close(stream, shared);
                        }
                        written && !close
                    }
                    Action::Stall => {
                        drain_until_closed(stream, shared, None);
                        false
                    }
                    Action::Close => false,
                    Action::Steps(steps) => run_steps(stream, &steps, shared),
                };
                if !keep {
                    return;
                }
                idle_since = Instant::now();
                continue;
            }
            Ok(None) => {}
        }
        if buf.is_empty()
            && shared
                .idle_close
                .is_some_and(|idle| idle_since.elapsed() >= idle)
        {
            stream.close_write();
            return;
        }
        if buf.len() > MAX_REQUEST {
            shared.malformed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        match read_some(stream, &mut buf) {
            ReadOutcome::Closed => return,
            ReadOutcome::Data | ReadOutcome::Nothing => {}
        }
    }
}

/// Parses one complete request from the front of `buf`: `Ok(None)` while
/// more bytes are needed, `Err` when it cannot parse.
fn parse_request(buf: &[u8], conn: usize) -> Result<Option<(Request, usize)>, ()> {
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

/// Writes `bytes` one at a time; false when the connection broke.
fn trickle(stream: &mut dyn Stream, bytes: &[u8], shared: &Shared) -> bool {
    trickle_paced(stream, bytes, TRICKLE_PAUSE, shared)
}

/// Writes `bytes` one at a time, `pause` after each; false when the
/// connection broke or the server is stopping.
fn trickle_paced(stream: &mut dyn Stream, bytes: &[u8], pause: Duration, shared: &Shared) -> bool {
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
fn sleep_unless_stopping(d: Duration, shared: &Shared) -> bool {
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
            Step::Trickle { bytes, pause } => trickle_paced(stream, bytes, *pause, shared),
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

/// Closes gracefully: sends FIN (after `close_notify` over TLS), then reads
/// until the client's EOF (bounded by [`LINGER`]) so that unread input cannot
/// turn the close into a reset that destroys the response.
fn linger_close(stream: &mut dyn Stream, shared: &Shared) {
    stream.close_write();
    drain_until_closed(stream, shared, Some(LINGER));
}

/// Reads and discards until the peer closes, the server stops, or `limit`.
fn drain_until_closed(stream: &mut dyn Stream, shared: &Shared, limit: Option<Duration>) {
    let start = Instant::now();
    let mut sink = Vec::new();
    let expired = || limit.is_some_and(|limit| start.elapsed() >= limit);
    while !shared.stopping() && !expired() {
        sink.clear();
        if let ReadOutcome::Closed = read_some(stream, &mut sink) {
            return;
        }
    }
}

/// A raw script, given each accepted connection whole (see
/// [`Server::start_raw`]).
type RawScript = dyn Fn(RawConn<'_>) + Send + Sync;

/// How a connection ended, as [`RawConn::wait_closed`] saw it.
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

/// One connection of a raw server ([`Server::start_raw`]), on its own
/// thread: a blocking plain-TCP socket (reads wake every [`POLL`] to look at
/// the shutdown flag) and the bytes read from it but not yet parsed.
pub(crate) struct RawConn<'a> {
    tcp: TcpStream,
    index: usize,
    nth: usize,
    shared: &'a Shared,
    buf: Vec<u8>,
}

fn serve_raw(tcp: TcpStream, index: usize, shared: &Shared, script: &RawScript) {
    let _ = tcp.set_nonblocking(false);
    let _ = tcp.set_nodelay(true);
    let _ = tcp.set_read_timeout(Some(POLL));
    let _ = tcp.set_write_timeout(Some(WRITE_TIMEOUT));
    let conn = RawConn {
        tcp,
        index,
        nth: 0,
        shared,
        buf: Vec::with_capacity(16 * 1024),
    };
    script(conn);
}

impl RawConn<'_> {
    /// The connection's index, in accept order from 0.
    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Whether the server is stopping (the script should return).
    pub(crate) fn stopping(&self) -> bool {
        self.shared.stopping()
    }

    fn info(&mut self) -> ConnInfo {
        let info = ConnInfo {
            conn: self.index,
            nth: self.nth,
            total: self.shared.next_request.fetch_add(1, Ordering::SeqCst),
        };
        self.nth += 1;
        info
    }

    /// Reads the next complete request, consuming it. `None` when the
    /// client closed, the request did not parse (counted as malformed), or
    /// the server is stopping. Not recorded: see [`RawConn::record`].
    pub(crate) fn next_request(&mut self) -> Option<(Request, ConnInfo)> {
        while !self.shared.stopping() {
            match parse_request(&self.buf, self.index) {
                Err(()) => {
                    self.shared.malformed.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
                Ok(Some((request, used))) => {
                    self.buf.drain(..used);
                    return Some((request, self.info()));
                }
                Ok(None) if self.buf.len() > MAX_REQUEST => {
                    self.shared.malformed.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
                Ok(None) => {}
            }
            if let ReadOutcome::Closed = read_some(&mut self.tcp, &mut self.buf) {
                return None;
            }
        }
        None
    }

    /// Waits until the next request is complete in the kernel's receive
    /// buffer and returns it without taking it from there (`MSG_PEEK`): a
    /// connection dropped afterwards is reset (RST), because closing a
    /// socket with unread input resets it, as `SO_LINGER` 0 would. `None`
    /// as for [`RawConn::next_request`], or when the request is larger
    /// than 64 KiB. Not recorded: see [`RawConn::record`].
    pub(crate) fn peek_request(&mut self) -> Option<(Request, ConnInfo)> {
        assert!(self.buf.is_empty(), "peek with bytes already read");
        let mut peeked = vec![0u8; 64 * 1024];
        while !self.shared.stopping() {
            let n = match self.tcp.peek(&mut peeked) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(_) => return None,
            };
            match parse_request(&peeked[..n], self.index) {
                Err(()) => {
                    self.shared.malformed.fetch_add(1, Ordering::SeqCst);
                    return None;
                }
                Ok(Some((request, _))) => return Some((request, self.info())),
                Ok(None) if n == peeked.len() => return None,
                Ok(None) => thread::sleep(Duration::from_millis(1)),
            }
        }
        None
    }

    /// Records `request` as received, for [`Server::requests`].
    pub(crate) fn record(&self, request: Request) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(request);
    }

    /// Writes `bytes`; false when the connection broke.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).is_ok()
    }

    /// Writes `bytes` one at a time, waiting `pause` after each; false when
    /// the connection broke or the server is stopping.
    pub(crate) fn trickle(&mut self, bytes: &[u8], pause: Duration) -> bool {
        trickle_paced(&mut self.tcp, bytes, pause, self.shared)
    }

    /// Waits `d`; false when the server began stopping meanwhile.
    pub(crate) fn pause(&self, d: Duration) -> bool {
        sleep_unless_stopping(d, self.shared)
    }

    /// Reads and discards until the client closes (or `limit`, or the
    /// server stops), and says how it ended.
    pub(crate) fn wait_closed(&mut self, limit: Option<Duration>) -> Ending {
        let start = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        let expired = || limit.is_some_and(|limit| start.elapsed() >= limit);
        while !self.shared.stopping() && !expired() {
            match self.tcp.read(&mut chunk) {
                Ok(0) => return Ending::Eof,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Ending::Reset,
            }
        }
        Ending::Open
    }

    /// Closes gracefully: sends FIN, then reads until the client's EOF
    /// (bounded by [`LINGER`]), and says how the client's side ended. The
    /// socket itself is closed when the script returns.
    pub(crate) fn close(&mut self) -> Ending {
        let _ = self.tcp.shutdown(Shutdown::Write);
        self.wait_closed(Some(LINGER))
    }

    /// Drops the connection at once. After [`RawConn::peek_request`] (input
    /// left unread) the kernel resets it; otherwise it closes with a FIN.
    pub(crate) fn reset(self) {}

    /// Never reads again: holds the connection open until the server
    /// stops.
    pub(crate) fn hold(&self) {
        while !self.shared.stopping() {
            thread::sleep(POLL);
        }
    }
}

/// Retry with up to `max_attempts` attempts and backoffs of a few
/// milliseconds.
pub(crate) fn quick_retry(max_attempts: u32) -> RetryConfig {
    RetryConfig::default()
        .max_attempts(max_attempts)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(10))
}

/// Polls `done` every few milliseconds until it holds; false at `timeout`.
pub(crate) fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The body of test message `i`: `id=<i>`.
pub(crate) fn msg(i: usize) -> String {
    format!("id={i}")
}

/// The id in a body made by [`msg`].
pub(crate) fn id_of(body: &[u8]) -> usize {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| s.strip_prefix("id="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("unexpected body {:?}", body.escape_ascii().to_string()))
}

/// Asserts that the bodies of `requests` are exactly `msg(0)..msg(n)`, each once.
pub(crate) fn assert_each_id_once(requests: &[Request], n: usize) {
    let mut seen = vec![0usize; n];
    for request in requests {
        let id = id_of(&request.body);
        assert!(id < n, "unexpected id {id} (expected below {n})");
        seen[id] += 1;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let repeated: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "{} missing (first {:?}), {} repeated (first {:?})",
        missing.len(),
        &missing[..missing.len().min(10)],
        repeated.len(),
        &repeated[..repeated.len().min(10)],
    );
    assert_eq!(requests.len(), n);
}

/// Notifies `msg`, retrying after a short pause while the queue is full.
/// Panics on any other refusal, or when the queue stays full for 30 s.
pub(crate) fn notify_retrying(client: &Client, msg: impl Into<Message>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut msg = msg.into();
    loop {
        match client.notify(msg) {
            Ok(()) => return,
            Err(NotifyError::QueueFull(back)) => {
                assert!(Instant::now() < deadline, "queue full for 30 s");
                msg = back;
                thread::sleep(Duration::from_micros(50));
            }
            Err(e) => panic!("notify refused: {e:?}"),
        }
    }
}

/// Notifies [`msg`]`(i)` for each `i` in `ids`, with [`notify_retrying`].
pub(crate) fn notify_all(client: &Client, ids: Range<usize>) {
    for i in ids {
        notify_retrying(client, msg(i));
    }
}

/// Builds `builder` with a new [`Failures`] as its error handler, and starts
/// the client.
pub(crate) fn started(builder: Builder) -> (Client, Failures) {
    let failures = Failures::new();
    let client = builder
        .error_handler(failures.handler())
        .build()
        .expect("build");
    client.start();
    (client, failures)
}

/// Checks the counters of a stopped client: every accepted message ended
/// exactly once, none left queued or in flight.
pub(crate) fn assert_balanced(stats: &Stats) {
    assert_eq!(
        stats.accepted,
        stats.delivered + stats.failed,
        "accepted != delivered + failed: {stats:?}"
    );
    assert_eq!((stats.queued, stats.in_flight), (0, 0), "{stats:?}");
}

/// [`assert_balanced`], with `n` messages accepted and `failed` of them
/// at the error handler.
pub(crate) fn assert_each_ended(stats: &Stats, n: usize, failed: usize) {
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_balanced(stats);
    assert_eq!(stats.failed, failed as u64, "{stats:?}");
}

/// Checks, once `client` has stopped, that `msg(0)..msg(n)` were all
/// accepted and delivered to `server`, each once, and none failed.
pub(crate) fn assert_all_delivered(
    client: &Client,
    failures: &Failures,
    server: &Server,
    n: usize,
) {
    failures.assert_none();
    let stats = client.stats();
    assert_eq!(stats.accepted, n as u64, "{stats:?}");
    assert_eq!(stats.delivered, n as u64, "{stats:?}");
    assert_eq!(stats.failed, 0, "{stats:?}");
    assert_each_id_once(&server.requests(), n);
}

/// Builds `builder` with a [`Failures`] handler, starts it, notifies
/// `msg(0)..msg(n)`, stops it, and checks with [`assert_all_delivered`] that
/// all reached `server` once each, without failure. Gives back the stopped
/// client.
pub(crate) fn send_all(server: &Server, builder: Builder, n: usize) -> Client {
    let (client, failures) = started(builder);
    notify_all(&client, 0..n);
    client.stop();
    assert_all_delivered(&client, &failures, server, n);
    client
}

/// Sends three rounds of five messages to `server`, which closes connections
/// idle for a while (see [`Server::start_with_idle_close`]), through a
/// client built from `builder`. After each round it waits for delivery, then
/// long enough for the server to close every connection and for the client
/// to notice, before it reuses one; then it sends one more message, stops,
/// and checks with [`assert_all_delivered`] that none was lost.
pub(crate) fn deliver_across_idle_closes(server: &Server, builder: Builder) {
    let idle = server
        .shared
        .idle_close
        .expect("a server that closes idle connections");
    let (client, failures) = started(builder);
    let mut sent = 0;
    for _round in 0..3 {
        for _ in 0..5 {
            client.notify(msg(sent)).expect("notify");
            sent += 1;
        }
        assert!(
            client.flush(Duration::from_secs(60)),
            "flush timed out: {:?}",
            client.stats()
        );
        thread::sleep(idle * 3);
        assert_eq!(server.open_connections(), 0, "the server did not close");
    }
    client.notify(msg(sent)).expect("notify");
    sent += 1;
    client.stop();
    assert_all_delivered(&client, &failures, server, sent);
}

/// One call of the error handler.
#[derive(Debug)]
pub(crate) struct Failure {
    /// What the handler was given.
    pub(crate) error: NotificationError,
    /// When it was called.
    pub(crate) at: Instant,
}

/// Collects the error handler's calls.
#[derive(Clone, Default)]
pub(crate) struct Failures(Arc<Mutex<Vec<Failure>>>);

impl Failures {
    /// A new, empty collector.
    pub(crate) fn new() -> Failures {
        Failures::default()
    }

    /// An error handler that records into this collector.
    pub(crate) fn handler(&self) -> impl Fn(NotificationError) + Send + Sync + 'static {
        let failures = self.clone();
        move |error| {
            failures.lock().push(Failure {
                error,
                at: Instant::now(),
            })
        }
    }

    /// How many failures were recorded.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none was recorded.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the failures recorded so far.
    pub(crate) fn take(&self) -> Vec<Failure> {
        std::mem::take(&mut *self.lock())
    }

    /// Takes the one failure recorded, and checks it is of `kind`, for
    /// `message`, after one attempt. Panics unless there was exactly one.
    pub(crate) fn take_single(&self, kind: FailureKind, message: &[u8]) -> Failure {
        let mut all = self.take();
        assert_eq!(all.len(), 1, "expected one failure, got {all:?}");
        let failure = all.pop().unwrap();
        assert_eq!(failure.error.kind(), kind, "{}", failure.error);
        assert_eq!(failure.error.message(), message);
        assert_eq!(failure.error.attempts(), 1, "{}", failure.error);
        failure
    }

    /// Whether a failure of `message` was recorded (and not taken).
    pub(crate) fn contains(&self, message: &[u8]) -> bool {
        self.lock().iter().any(|f| f.error.message() == message)
    }

    /// Waits until at least `n` failures were recorded; false at `timeout`.
    pub(crate) fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.len() >= n)
    }

    /// Panics, listing them, when any failure was recorded.
    pub(crate) fn assert_none(&self) {
        let failures = self.lock();
        assert!(
            failures.is_empty(),
            "{} unexpected failures, first: {}",
            failures.len(),
            failures[0].error
        );
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Failure>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
