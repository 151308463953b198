//! The HTTP/1.1 sink the end-to-end benchmarks deliver to, embedded in the
//! benchmark's process: `benches/e2e.rs` and the comparison harness
//! `benches/compare` include this file with `#[path]`, so every client is
//! measured against the same server.
//!
//! It is the sink of `benches/loopback.rs` cut down to what a benchmark
//! needs: it listens on `127.0.0.1:<ephemeral>` and answers every request
//! with `204 No Content`. It shares the machine's
//! cores with the client under test, so it is kept cheap: a thread per
//! connection, blocking reads into one reusable buffer, `httparse` for the
//! request head, all the answers to one read in one write, and no
//! allocation per request. Over TLS the same loop reads and writes through
//! a `rustls::StreamOwned`.
//!
//! An [`Observer`] sees every sink thread start and end and every request
//! body: the comparison harness uses it to keep the sink's CPU time and
//! allocations out of the client's account and to read the send time
//! stamped in each body.
//!
//! Started with [`Sink::closing_idle`], it also closes a connection on
//! which nothing arrived for a while, as servers close idle keep-alive
//! connections (`benches/preconnect.rs`); [`Sink::start`] never does.
//!
//! Dropping the [`Sink`] stops its acceptor; connection threads end when
//! their clients close the connections.
//!
//! The [`Acceptor`] and [`spawn_observed`] also serve the RTT proxy of
//! `benches/common/rtt.rs`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// `204 No Content` needs no `Content-Length`: it never has a body.
const RESPONSE_204: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
const RESPONSE_400: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_431: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
const RESPONSE_501: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Initial size of a connection's read buffer: a request head must fit in
/// it; it grows for larger bodies.
const READ_BUFFER: usize = 64 * 1024;

/// Headers parsed per request; more is answered with 431.
const MAX_HEADERS: usize = 32;

/// Sees what the sink does, on the sink's own threads.
pub(crate) trait Observer: Send + Sync + 'static {
    /// Called first on every thread the sink starts (the acceptor and each
    /// connection's) and on every thread of the RTT proxy given it.
    fn thread_started(&self) {}

    /// Called last on each of those threads: a connection's, when its
    /// client has closed the connection.
    fn thread_ending(&self) {}

    /// Called with each request's body, before it is answered. A
    /// batching client's body carries many messages: the observer finds
    /// them (`benches/common/framing.rs`) and counts them.
    /// It runs on the hot path of the sink: it must not allocate.
    fn request(&self, body: &[u8]) {
        let _ = body;
    }

    /// Called when a sink started with [`Sink::closing_idle`] closes a
    /// connection that was idle too long, as it closes it.
    fn idle_closed(&self) {}
}

/// An observer that does nothing.
pub(crate) struct Quiet;

impl Observer for Quiet {}

/// What the connection threads share.
struct Shared {
    observer: Arc<dyn Observer>,
    tls: Option<Arc<ServerConfig>>,
    /// Close a connection on which nothing arrived for this long.
    idle_close: Option<Duration>,
}

/// The embedded HTTP/1.1 server.
pub(crate) struct Sink {
    shared: Arc<Shared>,
    acceptor: Acceptor,
}

impl Sink {
    /// Listens on an ephemeral loopback port and accepts in the background,
    /// serving TLS with `tls` when given.
    pub(crate) fn start(
        tls: Option<Arc<ServerConfig>>,
        observer: Arc<dyn Observer>,
    ) -> io::Result<Sink> {
        Sink::launch(tls, observer, None)
    }

    /// Like [`Sink::start`], and closes every connection on which nothing
    /// arrived for `idle` (no `close_notify` over TLS: the socket is
    /// closed), telling the observer.
    pub(crate) fn closing_idle(
        tls: Option<Arc<ServerConfig>>,
        observer: Arc<dyn Observer>,
        idle: Duration,
    ) -> io::Result<Sink> {
        Sink::launch(tls, observer, Some(idle))
    }

    fn launch(
        tls: Option<Arc<ServerConfig>>,
        observer: Arc<dyn Observer>,
        idle_close: Option<Duration>,
    ) -> io::Result<Sink> {
        let shared = Arc::new(Shared {
            observer,
            tls,
            idle_close,
        });
        let acceptor = {
            let inner = Arc::clone(&shared);
            Acceptor::start("sink", &shared.observer, move |stream| {
                serve_spawned(stream, &inner);
            })?
        };
        Ok(Sink { shared, acceptor })
    }

    /// The address the sink listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.acceptor.addr()
    }

    /// `http://<addr>/notify`, or `https://…` when serving TLS.
    pub(crate) fn url(&self) -> String {
        self.url_at(self.addr())
    }

    /// The sink's URL as reached through `addr` (a proxy in front of it).
    pub(crate) fn url_at(&self, addr: SocketAddr) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{addr}/notify")
    }
}

/// A listener on an ephemeral loopback port whose thread hands every
/// connection it accepts to `serve`, until it is dropped.
pub(crate) struct Acceptor {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Listens and accepts on a thread named `{name}-accept`, which reports
    /// to `observer` (see [`spawn_observed`]).
    pub(crate) fn start(
        name: &str,
        observer: &Arc<dyn Observer>,
        mut serve: impl FnMut(TcpStream) + Send + 'static,
    ) -> io::Result<Acceptor> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stopping, name) = (Arc::clone(&stopping), name.to_owned());
            spawn_observed(&format!("{name}-accept"), observer, move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    match stream {
                        Ok(stream) => serve(stream),
                        Err(e) => {
                            eprintln!("{name}: accept failed: {e}");
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                }
            })?
        };
        Ok(Acceptor {
            addr,
            stopping,
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Unblock `accept` with a connection of our own; the thread sees
        // the flag and returns, so nothing is served after this.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Spawns a thread named `name` that tells `observer` first that it
/// started and last that it is ending.
pub(crate) fn spawn_observed(
    name: &str,
    observer: &Arc<dyn Observer>,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let observer = Arc::clone(observer);
    thread::Builder::new().name(name.to_owned()).spawn(move || {
        observer.thread_started();
        f();
        observer.thread_ending();
    })
}

/// Serves an accepted connection on a thread of its own.
fn serve_spawned(stream: TcpStream, shared: &Arc<Shared>) {
    let spawned = {
        let inner = Arc::clone(shared);
        spawn_observed("sink-conn", &shared.observer, move || {
            if let Err(e) = serve_connection(stream, &inner) {
                // A reset by a client that is done is no news.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("sink: connection failed: {e}");
                }
            }
        })
    };
    if let Err(e) = spawned {
        eprintln!("sink: cannot spawn a connection thread: {e}");
    }
}

/// Serves one accepted connection, over TLS when the sink has a
/// configuration (the handshake happens on the first read).
fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // A read that waits this long fails: the connection was idle.
    stream.set_read_timeout(shared.idle_close)?;
    match &shared.tls {
        None => serve(stream, shared),
        Some(config) => {
            let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
            serve(StreamOwned::new(conn, stream), shared)
        }
    }
}

/// A parsed request head: where its body starts and ends in the buffer.
struct RequestHead {
    head_len: usize,
    total_len: usize,
    close: bool,
}

/// Parses a request head at the start of `buf`: `Ok(None)` when it is not
/// complete yet, `Err(response)` when it cannot be served.
fn parse_head(buf: &[u8]) -> Result<Option<RequestHead>, &'static [u8]> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(RESPONSE_431),
        Err(_) => return Err(RESPONSE_400),
    };
    // HTTP/1.1 keeps the connection open unless told otherwise; 1.0 closes.
    let mut close = request.version != Some(1);
    let mut content_length: Option<usize> = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(RESPONSE_400)?;
            if content_length.is_some_and(|seen| seen != value) {
                return Err(RESPONSE_400);
            }
            content_length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // The clients under test all send Content-Length.
            return Err(RESPONSE_501);
        } else if header.name.eq_ignore_ascii_case("connection") {
            if header.value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let total_len = head_len
        .checked_add(content_length.unwrap_or(0))
        .ok_or(RESPONSE_400)?;
    Ok(Some(RequestHead {
        head_len,
        total_len,
        close,
    }))
}

/// Serves one keep-alive connection until the peer closes it, or until
/// it idles past the sink's idle limit, when it has one.
///
/// Bytes accumulate in `buf[start..end]`; every complete request in it is
/// answered, all answers of one read going out in one write.
fn serve(mut stream: impl Read + Write, shared: &Shared) -> io::Result<()> {
    let mut buf = vec![0u8; READ_BUFFER];
    let mut out: Vec<u8> = Vec::with_capacity(RESPONSE_204.len() * 64);
    let (mut start, mut end) = (0usize, 0usize);
    // The head of a request whose body is still arriving, so it is parsed once.
    let mut pending: Option<RequestHead> = None;

    loop {
        // Make room: drop consumed bytes, or grow for a request larger than the buffer.
        if end == buf.len() {
            if start > 0 {
                buf.copy_within(start..end, 0);
                end -= start;
                start = 0;
            } else if let Some(head) = &pending {
                buf.resize(head.total_len.max(buf.len() * 2), 0);
            } else {
                // A request head that fills the whole buffer is not one we serve.
                stream.write_all(RESPONSE_431)?;
                return stream.flush();
            }
        }
        let read = match stream.read(&mut buf[end..]) {
            Err(e)
                if shared.idle_close.is_some()
                    && matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
            {
                shared.observer.idle_closed();
                return Ok(());
            }
            read => read?,
        };
        if read == 0 {
            return Ok(()); // The client closed the connection.
        }
        end += read;

        let mut close = false;
        while start < end {
            let head = match pending.take() {
                Some(head) => head,
                None => match parse_head(&buf[start..end]) {
                    Ok(Some(head)) => head,
                    Ok(None) => break,
                    Err(response) => {
                        out.extend_from_slice(response);
                        close = true;
                        break;
                    }
                },
            };
            if end - start < head.total_len {
                pending = Some(head); // Wait for the rest of the body.
                break;
            }
            shared
                .observer
                .request(&buf[start + head.head_len..start + head.total_len]);
            start += head.total_len;
            out.extend_from_slice(RESPONSE_204);
            if head.close {
                close = true;
                break;
            }
        }
        if start == end {
            (start, end) = (0, 0);
        }

        if !out.is_empty() {
            stream.write_all(&out)?;
            stream.flush()?;
            out.clear();
        }
        if close {
            return Ok(());
        }
    }
}
