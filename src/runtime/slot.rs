//! One connection slot: at most one keep-alive connection and one request
//! at a time. The state machine runs Closed → Connecting → Handshaking
//! (TLS) → Writing → Receiving → Idle (or Closed), driven by socket
//! readiness and deadlines.
//!
//! Sockets are registered for both READABLE and WRITABLE once, when they
//! are opened, and never re-registered: mio is edge-triggered, so a slot
//! simply makes what progress it can on every event and stops at
//! `WouldBlock`. Spurious events (a token reused by a new connection, an
//! event for both directions) cost one failed syscall at most.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::builder::Config;
use crate::conn::{Conn, ConnError};
use crate::error::{Cause, FailureKind, ProtocolError};
use crate::message::Message;
use crate::policy::breaker::Ticket;
use crate::proto::response::{ResponseDecoder, Step, MAX_HEAD};
use crate::runtime::deadline_after;

/// Automatic re-sends of one attempt after a reused connection turned out
/// dead before it took any byte (SPEC §3.7a).
const MAX_RESENDS: u8 = 5;

/// A connection idle longer than this is checked for a pending end of
/// stream (one non-blocking read) before it carries a request. Hot
/// connections skip the check; cold ones are where servers' keep-alive
/// timeouts strike, and a request written into a closing connection fails
/// (§3.7b) rather than being re-sent.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(100);

/// First size of a slot's read buffer; it grows up to the head limit.
const INITIAL_BUFFER: usize = 4096;

/// A message being delivered.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) msg: Message,
    pub(crate) attempts: u32,
    /// The circuit breaker's admission of the attempt under way.
    pub(crate) ticket: Option<Ticket>,
    resends: u8,
}

impl Job {
    pub(crate) fn new(msg: Message) -> Job {
        Job {
            msg,
            attempts: 0,
            ticket: None,
            resends: 0,
        }
    }
}

/// Why an attempt failed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) status: Option<u16>,
    pub(crate) cause: Cause,
    /// The wait a 5xx's `Retry-After` asked for.
    pub(crate) retry_after: Option<Duration>,
}

/// A job whose attempt ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) job: Job,
    pub(crate) result: Result<(), Failure>,
}

/// What a slot needs from its loop.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) config: &'a Config,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection.
    Closed,
    /// Non-blocking connect under way to `addrs[next_addr - 1]`.
    Connecting,
    /// TLS handshake under way (passed at once over plain TCP).
    Handshaking,
    /// Writing the request; `written` bytes of it are taken.
    Writing,
    /// Reading the response. With a job: waiting for the head. Without
    /// one: the outcome is decided and the body is read to keep the
    /// connection.
    Receiving,
    /// Connected, no request; watched for EOF and stray bytes.
    Idle,
}

/// One connection slot.
#[derive(Debug)]
pub(crate) struct Slot {
    token: Token,
    phase: Phase,
    conn: Option<Conn>,
    job: Option<Job>,
    /// Attempt deadline while a request is under way; idle expiry while idle.
    deadline: Option<Instant>,
    /// The connection has carried a complete exchange before.
    reused: bool,
    /// When the connection last became idle.
    idle_since: Instant,
    /// An event reported the peer's end of stream: read to EOF even after
    /// a short read.
    read_closed: bool,
    idle_limit: Duration,
    written: usize,
    /// `conn.sent()` when the request began: unchanged while the kernel
    /// has taken no byte of it.
    sent_before: u64,
    decoder: ResponseDecoder,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    addrs: Vec<SocketAddr>,
    next_addr: usize,
}

fn fail(kind: FailureKind, status: Option<u16>, cause: Cause) -> Result<(), Failure> {
    Err(Failure {
        kind,
        status,
        cause,
        retry_after: None,
    })
}

impl Slot {
    pub(crate) fn new(token: Token) -> Slot {
        Slot {
            token,
            phase: Phase::Closed,
            conn: None,
            job: None,
            deadline: None,
            reused: false,
            idle_since: Instant::now(),
            read_closed: false,
            idle_limit: Duration::ZERO,
            written: 0,
            sent_before: 0,
            decoder: ResponseDecoder::default(),
            buf: vec![0; INITIAL_BUFFER],
            start: 0,
            end: 0,
            addrs: Vec::new(),
            next_addr: 0,
        }
    }

    /// Whether the slot can take a message now.
    pub(crate) fn is_free(&self) -> bool {
        matches!(self.phase, Phase::Closed | Phase::Idle)
    }

    /// Whether the slot holds an open, unused connection.
    pub(crate) fn is_idle(&self) -> bool {
        self.phase == Phase::Idle
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Starts the attempt `job` was admitted for (its `attempts` already
    /// count it). The slot must be free.
    pub(crate) fn assign(&mut self, job: Job, ctx: &Ctx<'_>, now: Instant) -> Option<Finished> {
        debug_assert!(self.is_free() && self.job.is_none());
        self.job = Some(job);
        self.deadline = Some(deadline_after(now, ctx.config.timeout));
        if self.phase == Phase::Idle && self.still_open(ctx, now) {
            self.begin_request();
            return self.progress(ctx, now);
        }
        self.connect(ctx)
    }

    /// Whether an idle connection can carry a request: a cold one must not
    /// have an end of stream (or stray bytes) waiting whose event the loop
    /// has not handled yet.
    fn still_open(&mut self, ctx: &Ctx<'_>, now: Instant) -> bool {
        if now.saturating_duration_since(self.idle_since) < STALE_CHECK_AFTER {
            return true;
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        match conn.read(&mut self.buf) {
            Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => true,
            _ => {
                self.close(ctx.registry);
                false
            }
        }
    }

    /// Makes what progress the socket allows; `read_closed` when the event
    /// reported the peer's end of stream.
    pub(crate) fn ready(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        read_closed: bool,
    ) -> Option<Finished> {
        self.read_closed |= read_closed;
        self.progress(ctx, now)
    }

    /// Acts on a passed deadline: the attempt times out, an idle
    /// connection is closed.
    pub(crate) fn expire(&mut self, ctx: &Ctx<'_>) -> Option<Finished> {
        self.close(ctx.registry);
        self.deadline = None;
        self.end_job(fail(FailureKind::Timeout, None, Cause::None))
    }

    /// Gives up the attempt under way (shutdown), closing its connection.
    pub(crate) fn abandon(&mut self, ctx: &Ctx<'_>) -> Option<Job> {
        let job = self.job.take()?;
        self.close(ctx.registry);
        self.deadline = None;
        Some(job)
    }

    /// Closes the connection, if any.
    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(conn) = self.conn.take() {
            conn.close(registry);
        }
        self.phase = Phase::Closed;
        self.read_closed = false;
        self.start = 0;
        self.end = 0;
    }

    fn end_job(&mut self, result: Result<(), Failure>) -> Option<Finished> {
        let job = self.job.take()?;
        if self.phase != Phase::Receiving {
            self.deadline = None;
        }
        Some(Finished { job, result })
    }

    fn begin_request(&mut self) {
        self.phase = Phase::Writing;
        self.written = 0;
        self.sent_before = self.conn.as_ref().map_or(0, Conn::sent);
        self.decoder = ResponseDecoder::default();
    }

    fn connect(&mut self, ctx: &Ctx<'_>) -> Option<Finished> {
        self.close(ctx.registry);
        self.reused = false;
        self.idle_limit = ctx.config.idle_timeout;
        match ctx.config.endpoint.resolve() {
            Ok(addrs) => {
                self.addrs = addrs;
                self.next_addr = 0;
                self.connect_next(ctx, None)
            }
            Err(e) => self.end_job(fail(FailureKind::Connect, None, Cause::Io(e))),
        }
    }

    /// Tries the remaining resolved addresses in order.
    fn connect_next(&mut self, ctx: &Ctx<'_>, mut last: Option<io::Error>) -> Option<Finished> {
        self.close(ctx.registry);
        while let Some(&addr) = self.addrs.get(self.next_addr) {
            self.next_addr += 1;
            let opened = TcpStream::connect(addr).and_then(|mut stream| {
                ctx.registry
                    .register(
                        &mut stream,
                        self.token,
                        Interest::READABLE | Interest::WRITABLE,
                    )
                    .map(|()| stream)
            });
            let stream = match opened {
                Ok(stream) => stream,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let conn = match &ctx.config.tls {
                None => Conn::plain(stream),
                Some(tls) => match Conn::tls(stream, tls.config.clone(), tls.name.clone()) {
                    Ok(conn) => conn,
                    Err(e) => return self.end_job(fail(FailureKind::Tls, None, Cause::Tls(e))),
                },
            };
            self.conn = Some(conn);
            self.phase = Phase::Connecting;
            return None;
        }
        let e = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"));
        self.end_job(fail(FailureKind::Connect, None, Cause::Io(e)))
    }

    /// A write failed before the response. On a reused connection that took
    /// no byte of this request, the server closed it while it sat idle:
    /// send again on a fresh connection without counting an attempt.
    fn write_failed(&mut self, ctx: &Ctx<'_>, e: io::Error) -> Option<Finished> {
        let untouched = self.conn.as_ref().map_or(0, Conn::sent) == self.sent_before;
        let resend =
            untouched && self.reused && self.job.as_ref().is_some_and(|j| j.resends < MAX_RESENDS);
        self.close(ctx.registry);
        if resend {
            if let Some(job) = self.job.as_mut() {
                job.resends += 1;
            }
            return self.connect(ctx);
        }
        self.end_job(fail(FailureKind::Io, None, Cause::Io(e)))
    }

    fn progress(&mut self, ctx: &Ctx<'_>, now: Instant) -> Option<Finished> {
        loop {
            let conn = self.conn.as_mut()?;
            match self.phase {
                Phase::Closed => return None,
                Phase::Connecting => {
                    let stream = conn.stream();
                    match stream.take_error() {
                        Ok(None) => {}
                        Ok(Some(e)) | Err(e) => return self.connect_next(ctx, Some(e)),
                    }
                    match stream.peer_addr() {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return None,
                        Err(e) => return self.connect_next(ctx, Some(e)),
                    }
                    // Small requests must not wait for Nagle's algorithm; a
                    // failure here only costs latency.
                    let _: io::Result<()> = stream.set_nodelay(true);
                    self.phase = Phase::Handshaking;
                }
                Phase::Handshaking => match conn.handshake() {
                    Ok(true) => self.begin_request(),
                    Ok(false) => return None,
                    Err(e) => {
                        self.close(ctx.registry);
                        let result = match e {
                            ConnError::Tls(e) => fail(FailureKind::Tls, None, Cause::Tls(e)),
                            ConnError::Io(e) => fail(FailureKind::Io, None, Cause::Io(e)),
                        };
                        return self.end_job(result);
                    }
                },
                Phase::Writing => {
                    let Some(job) = self.job.as_ref() else {
                        self.close(ctx.registry);
                        return None;
                    };
                    let head = ctx.config.encoder.head(job.msg.len());
                    let request = head.with_body(&job.msg);
                    if self.written < request.len() {
                        match conn.write(&request, self.written) {
                            Ok(0) => {
                                return self.write_failed(ctx, io::ErrorKind::WriteZero.into())
                            }
                            Ok(k) => self.written += k,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return self.write_failed(ctx, e),
                        }
                        continue;
                    }
                    match conn.flush() {
                        // The response cannot be there yet: wait for its
                        // readable event instead of a read that would block.
                        Ok(true) => {
                            self.phase = Phase::Receiving;
                            return None;
                        }
                        Ok(false) => return None,
                        Err(e) => return self.write_failed(ctx, e),
                    }
                }
                Phase::Receiving => return self.receive(ctx, now),
                Phase::Idle => match conn.read(&mut self.buf) {
                    Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    // EOF, close_notify, an error, or bytes nobody asked
                    // for: the connection cannot carry another request.
                    _ => {
                        self.close(ctx.registry);
                        self.deadline = None;
                        return None;
                    }
                },
            }
        }
    }

    /// Reads and decodes until the socket would block or the response ends.
    fn receive(&mut self, ctx: &Ctx<'_>, now: Instant) -> Option<Finished> {
        let mut finished = None;
        loop {
            if !self.make_room() {
                let result = fail(
                    FailureKind::Protocol,
                    None,
                    Cause::Protocol(ProtocolError::HeadTooLarge),
                );
                self.close(ctx.registry);
                return finished.or_else(|| self.end_job(result));
            }
            let Some(conn) = self.conn.as_mut() else {
                return finished;
            };
            let short_read_drains = conn.short_read_drains();
            let n = match conn.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    let at_eof = self.eof(ctx);
                    return finished.or(at_eof);
                }
                Ok(n) => n,
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return finished,
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A TLS stream cut without close_notify ends like an EOF:
                // what it cut short is not complete, whatever it claims.
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let at_eof = self.eof(ctx);
                    return finished.or(at_eof);
                }
                Err(e) => {
                    self.close(ctx.registry);
                    let cause = match e {
                        ConnError::Io(e) => Cause::Io(e),
                        ConnError::Tls(e) => Cause::Tls(e),
                    };
                    return finished.or_else(|| self.end_job(fail(FailureKind::Io, None, cause)));
                }
            };
            self.end += n;
            let drained = short_read_drains && self.end < self.buf.len();
            loop {
                match self.decoder.decode(&self.buf[self.start..self.end]) {
                    Err(e) => {
                        self.close(ctx.registry);
                        let result = fail(FailureKind::Protocol, None, Cause::Protocol(e));
                        return finished.or_else(|| self.end_job(result));
                    }
                    Ok((used, step)) => {
                        self.start += used;
                        match step {
                            Step::NeedMore if used > 0 && self.start < self.end => {}
                            Step::NeedMore => break,
                            Step::Head(head) => {
                                if let Some(secs) = head.keep_alive_secs {
                                    let hint = Duration::from_secs(secs.saturating_sub(1));
                                    self.idle_limit = self.idle_limit.min(hint);
                                }
                                let result = match head.status {
                                    200..=299 => Ok(()),
                                    status => Err(Failure {
                                        kind: FailureKind::Status,
                                        status: Some(status),
                                        cause: Cause::None,
                                        // Only a 5xx's Retry-After is heeded.
                                        retry_after: head
                                            .retry_after
                                            .filter(|_| status >= 500)
                                            .map(|r| r.delay(SystemTime::now())),
                                    }),
                                };
                                finished = self.end_job(result);
                            }
                            Step::Done { reuse } => {
                                let clean = self.start == self.end;
                                // A peer end of stream that came with the last bytes brings no
                                // further event: such a connection is not kept.
                                if reuse && clean && !self.read_closed && !self.idle_limit.is_zero()
                                {
                                    self.phase = Phase::Idle;
                                    self.idle_since = now;
                                    self.reused = true;
                                    self.deadline = Some(deadline_after(now, self.idle_limit));
                                    self.start = 0;
                                    self.end = 0;
                                } else {
                                    self.close(ctx.registry);
                                    self.deadline = None;
                                }
                                return finished;
                            }
                        }
                    }
                }
            }
            if drained && !self.read_closed {
                // A short read emptied the socket; the next bytes bring a
                // new edge. An end of stream that came with the bytes
                // brings none, hence `read_closed`.
                return finished;
            }
        }
    }

    /// The server closed the connection during the response.
    fn eof(&mut self, ctx: &Ctx<'_>) -> Option<Finished> {
        self.close(ctx.registry);
        if self.job.is_none() {
            // The head decided the outcome (a body read to the close ends
            // here); only the connection ends.
            self.deadline = None;
            return None;
        }
        // With the job still here no head was decoded, so the response is
        // cut short: before its first byte (§3.7b) or inside its head.
        let result = if self.decoder.started() {
            fail(
                FailureKind::Protocol,
                None,
                Cause::Protocol(ProtocolError::Truncated),
            )
        } else {
            fail(
                FailureKind::Io,
                None,
                Cause::Io(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before any response byte",
                )),
            )
        };
        self.end_job(result)
    }

    /// Ensures free space after `end`; false when a head fills the limit.
    fn make_room(&mut self) -> bool {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return true;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            return true;
        }
        if self.buf.len() < MAX_HEAD {
            self.buf.resize((self.buf.len() * 2).min(MAX_HEAD), 0);
            return true;
        }
        false
    }
}
