//! One connection slot: at most one keep-alive connection and one request
//! at a time, driven by socket readiness and deadlines through states
//! named for what they wait for:
//!
//! ```text
//! Closed ─► (AwaitAddress) ─► AwaitConnect ─► AwaitHandshake ─► Send ─► AwaitHead ─► DrainBody ─► Idle
//!   ▲                              │ (addresses raced)                    │ outcome decided  │   │
//!   └──────────────────────────────┴──── failure, timeout, close ◄────────┴──────────────────┘   │
//!                                                      Send ◄── the next message ────────────────┘
//!
//! Closed ─► Resting ─► Closed   no socket could be opened for a local reason:
//!                               the request goes back unsent, the slot rests
//! ```
//!
//! A state carries what it needs: the request under way (the message and
//! its attempt's deadline) exists only from `AwaitAddress` to `AwaitHead`;
//! `DrainBody` has its own short deadline, `Idle` its expiry, `Resting`
//! the end of its rest. A slot waits
//! in `AwaitAddress` only while the resolver has no address list yet; its
//! loop moves it on when a lookup's outcome is published. With
//! `preconnect` a slot also opens its connection ahead of any message
//! (`AwaitAddress` to `AwaitHandshake` with no request, then `Idle`); a
//! message that finds it still opening takes that opening over.
//!
//! An idle connection carries a request only while it has been idle for
//! less than the client's idle limit, which the slots teach whenever the
//! server ends a connection they kept idle (see
//! [`idle`](crate::policy::idle)); past it, it is closed and the request
//! goes on a fresh one.
//!
//! Sockets are registered for both READABLE and WRITABLE once, when they
//! are opened, and never re-registered: mio is edge-triggered, so a slot
//! simply makes what progress it can on every event and stops at
//! `WouldBlock`. Spurious events (a token reused by a new connection, an
//! event for both directions) cost one failed syscall at most.

use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use mio::{Registry, Token};

use crate::config::Config;
use crate::conn::{Conn, ConnError};
use crate::error::{Cause, Failure, FailureKind, ProtocolError};
use crate::policy::idle::IdleLimit;
use crate::policy::ledger::{Ledger, Unread};
use crate::policy::redial::Redial;
use crate::policy::shortage;
use crate::proto::request::{Cursor, RequestKey};
use crate::proto::response::{Head, ResponseDecoder, Step, MAX_HEAD};
use crate::runtime::dial::{Dial, Dialed};
use crate::runtime::job::Job;
use crate::runtime::resolver::{Answer, Resolver, Ticket};
use crate::runtime::shared::{deadline_after, earlier, LoopStats};
use crate::trace::{log_debug, log_warn};

/// A connection idle longer than this is checked for a pending end of
/// stream (one non-blocking read) before it carries a request. Hot
/// connections skip the check; cold ones are where servers' keep-alive
/// timeouts strike, and a request written into a closing connection fails
/// rather than being re-sent.
const STALE_CHECK_AFTER: Duration = Duration::from_millis(100);

/// How long the rest of a response's body may take once its head decided
/// the outcome. Past it the connection is closed rather than kept: a 2xx
/// whose body stalls must not hold the slot for the whole `timeout`.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// First size of a slot's read buffer, allocated on the first response; it
/// grows up to the head limit.
const INITIAL_BUFFER: usize = 4096;

/// A job whose attempt ended.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) job: Job,
    pub(crate) result: Result<(), Failure>,
}

/// A request that never left: no socket could be opened for it for a
/// local reason (see [`shortage`]). It goes back to the loops, which give
/// it to another slot (see [`handoff`](crate::runtime::handoff)); its
/// attempt and its deadline stay as they were when it was first taken.
#[derive(Debug)]
pub(crate) struct Unsent {
    exchange: Exchange,
    /// Why the socket could not be opened.
    error: io::Error,
}

impl Unsent {
    /// The attempt's deadline (`None`: none).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.exchange.deadline
    }

    /// How many messages it carries.
    pub(crate) fn len(&self) -> usize {
        self.exchange.job.len()
    }

    /// The deadline passed before a slot could carry it: a `Connect`
    /// failure with the local error under it, for the ledger to book as an
    /// attempt that never reached the endpoint.
    pub(crate) fn lapse(self) -> (Job, Failure) {
        let failure = Failure::caused(FailureKind::Connect, Cause::Io(self.error));
        (self.exchange.job, failure)
    }

    /// The job, given up on (shutdown, a dying loop).
    pub(crate) fn into_job(self) -> Job {
        self.exchange.job
    }
}

#[cfg(test)]
impl Unsent {
    /// A request with `deadline` that met `EMFILE`.
    pub(crate) fn out_of_files(job: Job, deadline: Option<Instant>) -> Unsent {
        Unsent {
            exchange: Exchange { job, deadline },
            error: io::Error::other("Too many open files"),
        }
    }
}

/// What a slot gives back to its loop.
#[derive(Debug)]
pub(crate) enum Returned {
    /// The attempt ended, for the ledger to book.
    Finished(Finished),
    /// The request never left, for another slot.
    Unsent(Unsent),
}

/// What a slot needs from its loop.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) config: &'a Config,
    pub(crate) ledger: &'a Ledger,
    /// The loop's counters: the slot counts the requests it writes.
    pub(crate) stats: &'a LoopStats,
    /// The endpoint's addresses; told of connects that failed.
    pub(crate) resolver: &'a Resolver,
    /// The client's idle limit, which every slot reads and teaches.
    pub(crate) idle: &'a IdleLimit,
}

/// A request under way: its job (the messages it carries) and its
/// attempt's deadline (`None`: too far to represent, so none).
#[derive(Debug)]
struct Exchange {
    job: Job,
    deadline: Option<Instant>,
}

/// What a connection is being opened for.
#[derive(Debug)]
enum Opening {
    /// The request it will carry.
    Request(Exchange),
    /// None yet: it is opened ahead of messages (`preconnect`), and must
    /// be open by `deadline`.
    Ahead { deadline: Option<Instant> },
}

impl Opening {
    fn deadline(&self) -> Option<Instant> {
        match self {
            Opening::Request(exchange) => exchange.deadline,
            Opening::Ahead { deadline } => *deadline,
        }
    }

    fn is_ahead(&self) -> bool {
        matches!(self, Opening::Ahead { .. })
    }
}

#[derive(Debug)]
enum Phase {
    /// No connection.
    Closed,
    /// The resolver has no address list yet: waiting for the lookup that
    /// answers `ticket`.
    AwaitAddress { opening: Opening, ticket: Ticket },
    /// Non-blocking connects under way, raced over the addresses; the
    /// first to connect becomes the connection.
    AwaitConnect { opening: Opening, dial: Dial },
    /// The TLS handshake under way (passed at once over plain TCP).
    AwaitHandshake { opening: Opening },
    /// Writing the request: `cursor` says how far; `sent_before` is the
    /// connection's byte count when it began, unchanged while the kernel
    /// has taken none of it.
    Send {
        exchange: Exchange,
        cursor: Cursor,
        sent_before: u64,
    },
    /// The request is written; reading until the head decides the outcome.
    AwaitHead {
        exchange: Exchange,
        decoder: ResponseDecoder,
    },
    /// The outcome is decided; reading the rest of the body to keep the
    /// connection, until `until`.
    DrainBody {
        decoder: ResponseDecoder,
        until: Option<Instant>,
    },
    /// Connected, no request; watched for EOF and stray bytes, closed at
    /// `until`.
    Idle {
        since: Instant,
        until: Option<Instant>,
    },
    /// No connection: the last socket could not be opened for a local
    /// reason. The slot takes no request before `until`.
    Resting { until: Instant },
}

impl Phase {
    /// What the connection is being opened for, while it is.
    fn opening(&self) -> Option<&Opening> {
        match self {
            Phase::AwaitAddress { opening, .. }
            | Phase::AwaitConnect { opening, .. }
            | Phase::AwaitHandshake { opening } => Some(opening),
            _ => None,
        }
    }

    fn opening_mut(&mut self) -> Option<&mut Opening> {
        match self {
            Phase::AwaitAddress { opening, .. }
            | Phase::AwaitConnect { opening, .. }
            | Phase::AwaitHandshake { opening } => Some(opening),
            _ => None,
        }
    }
}

/// Whether a state handler made progress worth continuing.
enum Flow {
    Continue,
    Wait,
}

/// What reading and decoding produced.
enum Next {
    Head(Head),
    Done {
        reuse: bool,
    },
    /// Nothing more until the next event.
    Wait,
    Eof,
    Failed(Cause),
    Invalid(ProtocolError),
}

/// One connection slot.
#[derive(Debug)]
pub(crate) struct Slot {
    token: Token,
    phase: Phase,
    /// Present from `AwaitHandshake` on; never in `Closed` or `Resting`.
    conn: Option<Conn>,
    /// When the request under way went on a connection that sat idle
    /// before it (it carried an exchange before, or was opened ahead of
    /// any): the idle period it ended, from when to when. The server may
    /// have closed it meanwhile. `None` on a fresh connection.
    idled: Option<(Instant, Instant)>,
    /// When the connection was established.
    opened_at: Instant,
    /// When the slot may open its next connection ahead of messages.
    redial: Redial,
    /// Sockets that could not be opened in a row, for a local reason.
    shortages: u32,
    /// When the connection is too old to be kept after its exchange
    /// (`max_connection_age`, jittered); `None`: no limit.
    retire_at: Option<Instant>,
    /// An event reported the peer's end of stream: read to EOF even after
    /// a short read.
    read_closed: bool,
    /// A read during this event emptied the socket (a short plain-TCP
    /// read): the next bytes bring a new event, so do not read again.
    drained: bool,
    /// The attempt that ended, or the request that could not be sent,
    /// during this event, for the loop.
    returned: Option<Returned>,
    /// Response bytes read and not yet consumed: `buf[start..end]`. Empty
    /// until the slot's first response.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Slot {
    pub(crate) fn new(token: Token) -> Slot {
        Slot {
            token,
            phase: Phase::Closed,
            conn: None,
            idled: None,
            opened_at: Instant::now(),
            redial: Redial::default(),
            shortages: 0,
            retire_at: None,
            read_closed: false,
            drained: false,
            returned: None,
            buf: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    /// Whether the slot can take a message now: it has no request, though
    /// it may be opening a connection ahead of one.
    pub(crate) fn is_free(&self) -> bool {
        match &self.phase {
            Phase::Closed | Phase::Idle { .. } => true,
            phase => phase.opening().is_some_and(Opening::is_ahead),
        }
    }

    /// Whether the slot holds an open, unused connection.
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Idle { .. })
    }

    /// When the slot must act without an event: the attempt's deadline (or
    /// an opening's ahead of messages), the start of a connect's next
    /// address, the end of a body's drain, or an idle connection's expiry.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            Phase::Closed => None,
            Phase::AwaitAddress { opening, .. } | Phase::AwaitHandshake { opening } => {
                opening.deadline()
            }
            Phase::AwaitConnect { opening, dial } => earlier(opening.deadline(), dial.due()),
            Phase::Send { exchange, .. } | Phase::AwaitHead { exchange, .. } => exchange.deadline,
            Phase::DrainBody { until, .. } | Phase::Idle { until, .. } => *until,
            Phase::Resting { until } => Some(*until),
        }
    }

    /// Starts the attempt `job` was admitted for. The slot must be free.
    pub(crate) fn assign(&mut self, job: Job, ctx: &Ctx<'_>, now: Instant) -> Option<Returned> {
        let exchange = Exchange {
            job,
            deadline: deadline_after(now, ctx.config.timeout),
        };
        self.carry(exchange, ctx, now)
    }

    /// Takes up a request another slot could not send, with its attempt's
    /// deadline. The slot must be free.
    pub(crate) fn resume(
        &mut self,
        unsent: Unsent,
        ctx: &Ctx<'_>,
        now: Instant,
    ) -> Option<Returned> {
        self.carry(unsent.exchange, ctx, now)
    }

    /// Sends `exchange` on the idle connection, if it may still carry a
    /// request, else on a fresh one.
    fn carry(&mut self, exchange: Exchange, ctx: &Ctx<'_>, now: Instant) -> Option<Returned> {
        debug_assert!(self.is_free());
        // Opening ahead of messages: the request takes the opening over.
        if let Some(opening) = self.phase.opening_mut().filter(|o| o.is_ahead()) {
            *opening = Opening::Request(exchange);
            return self.returned.take();
        }
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Idle { since, .. } if self.may_carry(ctx, now, since) => {
                self.idled = Some((since, now));
                self.begin_request(exchange);
                self.drained = false;
                self.drive(ctx, now);
            }
            _ => {
                if let Flow::Continue = self.connect(ctx, Opening::Request(exchange), now) {
                    self.drive(ctx, now);
                }
            }
        }
        self.returned.take()
    }

    /// Whether the slot may open a connection ahead of messages at `now`:
    /// it has none, and its backoff after failed openings has passed.
    pub(crate) fn may_open_ahead(&self, now: Instant) -> bool {
        matches!(self.phase, Phase::Closed) && self.redial.due().is_none_or(|at| at <= now)
    }

    /// When a slot without a connection may open one ahead of messages,
    /// when it is backing off.
    pub(crate) fn opens_ahead_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => self.redial.due(),
            _ => None,
        }
    }

    /// Opens a connection ahead of messages; the slot has none.
    pub(crate) fn open_ahead(&mut self, ctx: &Ctx<'_>, now: Instant) {
        debug_assert!(matches!(self.phase, Phase::Closed));
        let opening = Opening::Ahead {
            deadline: deadline_after(now, ctx.config.timeout),
        };
        if let Flow::Continue = self.connect(ctx, opening, now) {
            self.drive(ctx, now);
        }
    }

    /// A lookup's outcome was published: a slot waiting for an address
    /// goes on with the list, or fails with the lookup's error.
    pub(crate) fn address_published(&mut self, ctx: &Ctx<'_>, now: Instant) -> Option<Returned> {
        let (opening, found) = match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitAddress { opening, ticket } => match ctx.resolver.answer(ticket) {
                Answer::Ready(addrs) => (opening, Ok(addrs)),
                Answer::Failed(e) => (opening, Err(e)),
                Answer::Pending => {
                    self.phase = Phase::AwaitAddress { opening, ticket };
                    return None;
                }
            },
            other => {
                self.phase = other;
                return None;
            }
        };
        match found {
            Ok(addrs) => {
                log_debug!(slot = self.token.0, addresses = ?addrs, "resolved");
                self.phase = Phase::AwaitConnect {
                    opening,
                    dial: Dial::new(addrs),
                };
                self.drive(ctx, now);
            }
            Err(e) => {
                let failure = Failure::caused(FailureKind::Connect, Cause::SharedIo(e));
                self.fail_opening(ctx, opening, failure, now);
            }
        }
        self.returned.take()
    }

    /// Makes what progress the socket allows; `read_closed` when the event
    /// reported the peer's end of stream.
    pub(crate) fn ready(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        read_closed: bool,
    ) -> Option<Returned> {
        self.read_closed |= read_closed;
        self.drained = false;
        self.drive(ctx, now);
        self.returned.take()
    }

    /// Acts on a passed deadline: the next address of a connect joins the
    /// race; the attempt (or an opening ahead of messages) times out; a
    /// body's drain or an idle connection ends with its connection; a rest
    /// ends. An attempt still waiting for an address fails as `Connect`.
    pub(crate) fn expire(&mut self, ctx: &Ctx<'_>, now: Instant) -> Option<Returned> {
        let failure = match &self.phase {
            Phase::AwaitConnect { opening, .. } if opening.deadline().is_none_or(|at| at > now) => {
                self.drive(ctx, now);
                return self.returned.take();
            }
            Phase::AwaitAddress { .. } => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the host name's lookup did not end within the timeout",
                );
                Failure::caused(FailureKind::Connect, Cause::Io(e))
            }
            Phase::AwaitConnect { .. } => {
                ctx.resolver.connect_failed();
                Failure::of(FailureKind::Timeout)
            }
            Phase::Idle { .. } => {
                self.redial
                    .closed_idle(now, self.opened_at, fastrand::f64());
                Failure::of(FailureKind::Timeout)
            }
            _ => Failure::of(FailureKind::Timeout),
        };
        if self.phase.opening().is_some() {
            self.redial.failed(now, fastrand::f64());
        }
        let exchange = self.take_exchange(ctx.registry);
        #[cfg(feature = "tracing")]
        if let Some(exchange) = &exchange {
            log_warn!(
                slot = self.token.0,
                messages = exchange.job.len(),
                "attempt timed out"
            );
        }
        self.close(ctx.registry);
        exchange.map(|exchange| {
            Returned::Finished(Finished {
                job: exchange.job,
                result: Err(failure),
            })
        })
    }

    /// Gives up the attempt under way, if any, closing its connection.
    pub(crate) fn abandon(&mut self, registry: &Registry) -> Option<Job> {
        let exchange = self.take_exchange(registry)?;
        self.close(registry);
        Some(exchange.job)
    }

    /// Takes the request under way out of its state (which the caller
    /// then ends, closing the connection); the slot is left as it was when
    /// there is none.
    fn take_exchange(&mut self, registry: &Registry) -> Option<Exchange> {
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::AwaitConnect {
                opening: Opening::Request(exchange),
                dial,
            } => {
                dial.close(registry);
                Some(exchange)
            }
            Phase::AwaitAddress {
                opening: Opening::Request(exchange),
                ..
            }
            | Phase::AwaitHandshake {
                opening: Opening::Request(exchange),
            }
            | Phase::Send { exchange, .. }
            | Phase::AwaitHead { exchange, .. } => Some(exchange),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// Closes the connection, and the connects under way, if any; the slot
    /// is `Closed`.
    pub(crate) fn close(&mut self, registry: &Registry) {
        if let Some(conn) = self.conn.take() {
            log_debug!(slot = self.token.0, "connection closed");
            conn.close(registry);
        }
        if let Phase::AwaitConnect { dial, .. } = std::mem::replace(&mut self.phase, Phase::Closed)
        {
            dial.close(registry);
        }
        self.read_closed = false;
        self.start = 0;
        self.end = 0;
    }

    /// Ends the attempt under way, for the loop to book.
    fn finish(&mut self, job: Job, result: Result<(), Failure>) {
        debug_assert!(self.returned.is_none(), "one attempt per slot");
        self.returned = Some(Returned::Finished(Finished { job, result }));
    }

    /// Ends the attempt under way with a failure and closes the connection.
    fn fail(&mut self, ctx: &Ctx<'_>, exchange: Exchange, failure: Failure) -> Flow {
        log_warn!(
            slot = self.token.0,
            kind = ?failure.kind,
            cause = ?failure.cause,
            messages = exchange.job.len(),
            "attempt failed"
        );
        self.close(ctx.registry);
        self.finish(exchange.job, Err(failure));
        Flow::Wait
    }

    /// Whether a connection idle since `since` can carry a request at
    /// `now`: it has been idle for less than the client's idle limit, and a
    /// cold one must not have an end of stream (or stray bytes) waiting
    /// whose event the loop has not handled yet.
    fn may_carry(&mut self, ctx: &Ctx<'_>, now: Instant, since: Instant) -> bool {
        if !ctx.idle.may_reuse(since, now) {
            return false;
        }
        if now.saturating_duration_since(since) < STALE_CHECK_AFTER {
            return true;
        }
        if self.idle_read_would_block() {
            return true;
        }
        ctx.idle.observe_close(since, now);
        self.close(ctx.registry);
        false
    }

    /// The server ended the connection the request under way was written
    /// to, before any answer (or with a goodbye `408`): when it had sat
    /// idle before the request, the server's idle timeout struck as the
    /// request came, which teaches the idle limit.
    fn closed_under_request(&self, ctx: &Ctx<'_>) {
        if let Some((since, taken)) = self.idled {
            ctx.idle.observe_close(since, taken);
        }
    }

    /// One read of an idle connection: whether it had nothing to say. EOF,
    /// `close_notify`, an error, or bytes nobody asked for all mean the
    /// connection cannot carry another request.
    fn idle_read_would_block(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut scratch = [0u8; 64];
        loop {
            match conn.read(&mut scratch) {
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => return false,
            }
        }
    }

    fn begin_request(&mut self, exchange: Exchange) {
        self.phase = Phase::Send {
            exchange,
            cursor: Cursor::default(),
            sent_before: self.conn.as_ref().map_or(0, Conn::sent),
        };
    }

    /// Opens a fresh connection for `opening`: with the resolver's
    /// addresses, or, while it has none, once a lookup publishes some.
    /// `Continue` when the connects are to start.
    fn connect(&mut self, ctx: &Ctx<'_>, opening: Opening, now: Instant) -> Flow {
        self.close(ctx.registry);
        self.idled = None;
        self.retire_at = ctx.config.max_connection_age.and_then(|age| {
            // ±10 %, so that connections opened together do not all go
            // together.
            deadline_after(now, age.mul_f64(0.9 + 0.2 * fastrand::f64()))
        });
        match ctx.resolver.addresses() {
            Ok(addrs) => {
                log_debug!(slot = self.token.0, addresses = ?addrs, "resolved");
                self.phase = Phase::AwaitConnect {
                    opening,
                    dial: Dial::new(addrs),
                };
                Flow::Continue
            }
            Err(ticket) => {
                log_debug!(slot = self.token.0, "waiting for the host name's addresses");
                self.phase = Phase::AwaitAddress { opening, ticket };
                Flow::Wait
            }
        }
    }

    /// An opening failed: the request's attempt fails with it; an opening
    /// ahead of messages only closes. Either way the next opening ahead
    /// backs off.
    fn fail_opening(
        &mut self,
        ctx: &Ctx<'_>,
        opening: Opening,
        failure: Failure,
        now: Instant,
    ) -> Flow {
        self.redial.failed(now, fastrand::f64());
        match opening {
            Opening::Request(exchange) => self.fail(ctx, exchange, failure),
            Opening::Ahead { .. } => {
                log_debug!(
                    slot = self.token.0,
                    kind = ?failure.kind,
                    cause = ?failure.cause,
                    "opening ahead of messages failed"
                );
                self.close(ctx.registry);
                Flow::Wait
            }
        }
    }

    /// No socket could be opened for a local reason: the request goes back
    /// to the loop, unsent, and the slot rests before it tries again.
    fn rest(&mut self, ctx: &Ctx<'_>, exchange: Exchange, error: io::Error, now: Instant) -> Flow {
        log_debug!(slot = self.token.0, error = %error, "no socket: resting");
        self.close(ctx.registry);
        self.shortages = self.shortages.saturating_add(1);
        let rest = shortage::rest(self.shortages, &mut fastrand::Rng::new());
        self.phase = Phase::Resting {
            until: deadline_after(now, rest).unwrap_or(now),
        };
        debug_assert!(self.returned.is_none(), "one attempt per slot");
        self.returned = Some(Returned::Unsent(Unsent { exchange, error }));
        Flow::Wait
    }

    /// Runs the state machine until it waits for an event.
    fn drive(&mut self, ctx: &Ctx<'_>, now: Instant) {
        while let Flow::Continue = self.step(ctx, now) {}
    }

    fn step(&mut self, ctx: &Ctx<'_>, now: Instant) -> Flow {
        // Waiting for addresses, the slot has no socket; connecting, only
        // the dial's.
        if self.conn.is_none() && !matches!(self.phase, Phase::AwaitConnect { .. }) {
            return Flow::Wait;
        }
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Closed => Flow::Wait,
            Phase::Resting { until } => {
                self.phase = Phase::Resting { until };
                Flow::Wait
            }
            Phase::AwaitAddress { opening, ticket } => {
                self.phase = Phase::AwaitAddress { opening, ticket };
                Flow::Wait
            }
            Phase::AwaitConnect { opening, dial } => self.on_connect(ctx, now, opening, dial),
            Phase::AwaitHandshake { opening } => self.on_handshake(ctx, now, opening),
            Phase::Send {
                exchange,
                cursor,
                sent_before,
            } => self.on_send(ctx, now, exchange, cursor, sent_before),
            Phase::AwaitHead { exchange, decoder } => self.on_head(ctx, now, exchange, decoder),
            Phase::DrainBody { decoder, until } => self.on_drain(ctx, now, decoder, until),
            Phase::Idle { since, until } => self.on_idle(ctx, now, since, until),
        }
    }

    fn on_connect(&mut self, ctx: &Ctx<'_>, now: Instant, opening: Opening, dial: Dial) -> Flow {
        let stream = match dial.advance(ctx.registry, self.token.0, now) {
            Dialed::Pending(dial) => {
                self.phase = Phase::AwaitConnect { opening, dial };
                return Flow::Wait;
            }
            Dialed::Failed(e) => {
                ctx.resolver.connect_failed();
                let failure = Failure::caused(FailureKind::Connect, Cause::Io(e));
                return self.fail_opening(ctx, opening, failure, now);
            }
            // Out of sockets here: a request goes back for a slot that
            // can carry it; an opening ahead backs off.
            Dialed::Short(e) => match opening {
                Opening::Request(exchange) => return self.rest(ctx, exchange, e, now),
                Opening::Ahead { .. } => {
                    let failure = Failure::caused(FailureKind::Connect, Cause::Io(e));
                    return self.fail_opening(ctx, opening, failure, now);
                }
            },
            Dialed::Connected(stream) => stream,
        };
        self.shortages = 0;
        log_debug!(slot = self.token.0, peer = ?stream.peer_addr().ok(), "connection opened");
        self.opened_at = now;
        // Small requests must not wait for Nagle's algorithm; a failure
        // here only costs latency.
        let _: io::Result<()> = stream.set_nodelay(true);
        let conn = match &ctx.config.tls {
            None => Conn::plain(stream),
            Some(tls) => match Conn::tls(stream, tls.config.clone(), tls.name.clone()) {
                Ok(conn) => conn,
                Err(e) => {
                    let failure = Failure::caused(FailureKind::Tls, Cause::Tls(e));
                    return self.fail_opening(ctx, opening, failure, now);
                }
            },
        };
        self.conn = Some(conn);
        self.phase = Phase::AwaitHandshake { opening };
        Flow::Continue
    }

    fn on_handshake(&mut self, ctx: &Ctx<'_>, now: Instant, opening: Opening) -> Flow {
        let Some(conn) = self.conn.as_mut() else {
            return Flow::Wait;
        };
        match conn.handshake() {
            Ok(true) => match opening {
                Opening::Request(exchange) => {
                    self.begin_request(exchange);
                    Flow::Continue
                }
                Opening::Ahead { .. } => {
                    self.go_idle(now, ctx.idle.limit());
                    Flow::Wait
                }
            },
            Ok(false) => {
                self.phase = Phase::AwaitHandshake { opening };
                Flow::Wait
            }
            Err(ConnError::Tls(e)) => {
                let failure = Failure::caused(FailureKind::Tls, Cause::Tls(e));
                self.fail_opening(ctx, opening, failure, now)
            }
            Err(ConnError::Io(e)) => {
                let failure = Failure::caused(FailureKind::Io, Cause::Io(e));
                self.fail_opening(ctx, opening, failure, now)
            }
        }
    }

    fn on_send(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        exchange: Exchange,
        mut cursor: Cursor,
        sent_before: u64,
    ) -> Flow {
        let Some(conn) = self.conn.as_mut() else {
            return Flow::Wait;
        };
        let (len, body) = exchange.job.body(&ctx.config.batching.framing);
        let key = ctx.config.idempotency_key.map(|client| RequestKey {
            client,
            request: exchange.job.key(),
        });
        let head = ctx.config.encoder.head(len, key);
        let request = head.with_body(body);
        while !request.is_done(&cursor) {
            match conn.write(&request, &cursor) {
                Ok(0) => {
                    let e = io::ErrorKind::WriteZero.into();
                    return self.write_failed(ctx, now, exchange, sent_before, e);
                }
                Ok(k) => request.advance(&mut cursor, k),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.phase = Phase::Send {
                        exchange,
                        cursor,
                        sent_before,
                    };
                    return Flow::Wait;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.write_failed(ctx, now, exchange, sent_before, e),
            }
        }
        match conn.flush() {
            // The response cannot be there yet: wait for its readable
            // event instead of a read that would block.
            Ok(true) => {
                ctx.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.phase = Phase::AwaitHead {
                    exchange,
                    decoder: ResponseDecoder::default(),
                };
                Flow::Wait
            }
            Ok(false) => {
                self.phase = Phase::Send {
                    exchange,
                    cursor,
                    sent_before,
                };
                Flow::Wait
            }
            Err(e) => self.write_failed(ctx, now, exchange, sent_before, e),
        }
    }

    /// A write failed before the response. On a reused connection that took
    /// no byte of this request, the server closed it while it sat idle and
    /// never saw the request: the ledger may let it be sent again on a
    /// fresh connection without counting an attempt.
    fn write_failed(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        mut exchange: Exchange,
        sent_before: u64,
        e: io::Error,
    ) -> Flow {
        self.closed_under_request(ctx);
        let untouched = self.conn.as_ref().map_or(0, Conn::sent) == sent_before;
        if untouched
            && ctx.ledger.may_resend(
                exchange.job.record(),
                self.idled.is_some(),
                Unread::Untouched,
            )
        {
            return self.connect(ctx, Opening::Request(exchange), now);
        }
        self.fail(
            ctx,
            exchange,
            Failure::caused(FailureKind::Io, Cause::Io(e)),
        )
    }

    fn on_head(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        mut exchange: Exchange,
        mut decoder: ResponseDecoder,
    ) -> Flow {
        match self.decode(&mut decoder) {
            Next::Wait => {
                self.ack_incomplete(ctx, &decoder);
                self.phase = Phase::AwaitHead { exchange, decoder };
                Flow::Wait
            }
            Next::Head(head) => {
                // The server answers: openings ahead start afresh.
                self.redial.served();
                // A 408 read as the answer on a reused connection is the
                // server's goodbye to a connection it found idle: sent
                // again on a fresh connection, like a request that met a
                // closed idle connection. On a fresh connection (or past
                // the re-sends) it is a failure like any other status.
                let sign = Unread::Answered(head.status);
                let reused = self.idled.is_some();
                if ctx.ledger.may_resend(exchange.job.record(), reused, sign) {
                    self.closed_under_request(ctx);
                    return self.connect(ctx, Opening::Request(exchange), now);
                }
                if let Some(secs) = head.keep_alive_secs {
                    ctx.idle.hint(secs);
                }
                let result = match head.status {
                    200..=299 => Ok(()),
                    status => {
                        let asked = head.retry_after.map(|r| r.delay(SystemTime::now()));
                        Err(Failure::status(status, asked))
                    }
                };
                self.finish(exchange.job, result);
                let until = earlier(exchange.deadline, deadline_after(now, DRAIN_LIMIT));
                self.phase = Phase::DrainBody { decoder, until };
                Flow::Continue
            }
            // The decoder produces a head before it can be done.
            Next::Done { .. } => {
                let cut = Cause::Protocol(ProtocolError::Truncated);
                self.fail(ctx, exchange, Failure::caused(FailureKind::Protocol, cut))
            }
            // Cut short before the head: before its first byte (the
            // server may have acted on the request: a retryable I/O
            // failure, never re-sent automatically) or inside it.
            Next::Eof if decoder.started() => {
                let cut = Cause::Protocol(ProtocolError::Truncated);
                self.fail(ctx, exchange, Failure::caused(FailureKind::Protocol, cut))
            }
            Next::Eof => {
                self.closed_under_request(ctx);
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before any response byte",
                );
                self.fail(
                    ctx,
                    exchange,
                    Failure::caused(FailureKind::Io, Cause::Io(e)),
                )
            }
            Next::Failed(cause) => {
                if !decoder.started() {
                    self.closed_under_request(ctx);
                }
                self.fail(ctx, exchange, Failure::caused(FailureKind::Io, cause))
            }
            Next::Invalid(e) => {
                let cause = Cause::Protocol(e);
                self.fail(ctx, exchange, Failure::caused(FailureKind::Protocol, cause))
            }
        }
    }

    /// The outcome is booked; what is left of the response only decides
    /// whether the connection is kept.
    fn on_drain(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        mut decoder: ResponseDecoder,
        until: Option<Instant>,
    ) -> Flow {
        let idle_limit = ctx.idle.limit();
        match self.decode(&mut decoder) {
            Next::Wait => {
                self.ack_incomplete(ctx, &decoder);
                self.phase = Phase::DrainBody { decoder, until };
            }
            // A peer end of stream that came with the last bytes brings no
            // further event: such a connection is not kept.
            Next::Done { reuse }
                if reuse
                    && self.start == self.end
                    && !self.read_closed
                    && !idle_limit.is_zero()
                    && self.retire_at.is_none_or(|at| at > now) =>
            {
                self.go_idle(now, idle_limit);
            }
            // Not reusable, too old, bytes past the response, a body that
            // broke its framing or ran to the close: the connection ends,
            // the outcome stands.
            Next::Done { .. } | Next::Head(_) | Next::Eof | Next::Failed(_) | Next::Invalid(_) => {
                self.close(ctx.registry)
            }
        }
        Flow::Wait
    }

    /// The connection waits for the next message, until `idle_limit` (the
    /// client's) or its retirement; the request that message brings meets
    /// a connection that sat idle, whether it served before or was opened
    /// ahead.
    fn go_idle(&mut self, now: Instant, idle_limit: Duration) {
        self.start = 0;
        self.end = 0;
        self.phase = Phase::Idle {
            since: now,
            until: earlier(deadline_after(now, idle_limit), self.retire_at),
        };
    }

    /// An event on an idle connection: anything but nothing to read means
    /// the server ended it (an end of stream, a reset, a goodbye), which
    /// teaches the idle limit how long it keeps them.
    fn on_idle(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        since: Instant,
        until: Option<Instant>,
    ) -> Flow {
        if self.idle_read_would_block() {
            self.phase = Phase::Idle { since, until };
        } else {
            // The server closed it (or broke it) while it was idle.
            ctx.idle.observe_close(since, now);
            self.redial
                .closed_idle(now, self.opened_at, fastrand::f64());
            self.close(ctx.registry);
        }
        Flow::Wait
    }

    /// A read left the response incomplete: acknowledges what came at once
    /// (`TCP_QUICKACK`), so that a server holding the rest back until its
    /// first segment is acknowledged (Nagle's algorithm, which
    /// `http.server` and many others leave on) sends it now rather than
    /// after the delayed-ACK timer, some 40 ms. A response that arrives
    /// whole never gets here: it costs no extra syscall.
    fn ack_incomplete(&self, ctx: &Ctx<'_>, decoder: &ResponseDecoder) {
        if !decoder.started() {
            return;
        }
        if let Some(conn) = &self.conn {
            if conn.ack_now() {
                ctx.stats.quick_acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Decodes what the buffer holds, reading more while the decoder needs
    /// it and the socket has it, until the decoder produces a head or the
    /// response's end.
    fn decode(&mut self, decoder: &mut ResponseDecoder) -> Next {
        loop {
            match decoder.decode(&self.buf[self.start..self.end]) {
                Err(e) => return Next::Invalid(e),
                Ok((used, step)) => {
                    self.start += used;
                    match step {
                        Step::Head(head) => return Next::Head(head),
                        Step::Done { reuse } => return Next::Done { reuse },
                        Step::NeedMore => {}
                    }
                }
            }
            if self.drained && !self.read_closed {
                // A short read emptied the socket; the next bytes bring a
                // new edge. An end of stream that came with the bytes
                // brings none, hence `read_closed`.
                return Next::Wait;
            }
            if !self.make_room() {
                return Next::Invalid(ProtocolError::HeadTooLarge);
            }
            let Some(conn) = self.conn.as_mut() else {
                return Next::Eof;
            };
            let short_read_drains = conn.short_read_drains();
            match conn.read(&mut self.buf[self.end..]) {
                Ok(0) => return Next::Eof,
                Ok(n) => {
                    self.end += n;
                    self.drained = short_read_drains && self.end < self.buf.len();
                }
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Next::Wait
                }
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                // A TLS stream cut without close_notify ends like an EOF:
                // what it cut short is not complete, whatever it claims.
                Err(ConnError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Next::Eof
                }
                Err(ConnError::Io(e)) => return Next::Failed(Cause::Io(e)),
                Err(ConnError::Tls(e)) => return Next::Failed(Cause::Tls(e)),
            }
        }
    }

    /// Ensures free space after `end`; false when a head fills the limit.
    fn make_room(&mut self) -> bool {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.is_empty() {
            self.buf.resize(INITIAL_BUFFER, 0);
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
