//! The builder: collects settings and validates them into a [`Config`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{BatchConfig, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES, MAX_LINGER};
use crate::config::{
    Batching, Config, Handler, Overflow, DEFAULT_CONTENT_TYPE, DEFAULT_DNS_REFRESH,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_QUEUE_SIZE, DEFAULT_TIMEOUT, DEFAULT_WORKERS, MAX_DNS_REFRESH,
    MAX_MESSAGE_TTL, MAX_QUEUE_SIZE, MAX_THREADS, MAX_WORKERS,
};
use crate::conn::tls::TlsSetup;
use crate::endpoint::{Endpoint, Scheme};
use crate::error::{BuildError, NotificationError};
use crate::policy::{CircuitBreakerConfig, RetryConfig};
use crate::proto::compress::Compression;
use crate::proto::request::{Framing, RequestEncoder};

/// Configures a [`Client`](crate::Client); every setting is validated by
/// [`Builder::build`].
///
/// Settings that make no sense (zero workers, a zero timeout) are ignored
/// and the default kept; settings that cannot be sent (a header with a
/// line break) or that are past their bound (more than
/// [`MAX_WORKERS`](crate::MAX_WORKERS) workers) fail the build.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use notifier::Client;
///
/// let client = Client::builder("http://127.0.0.1:8080/events?source=app")
///     .workers(4)
///     .queue_size(10_000)
///     .timeout(Duration::from_secs(5))
///     .content_type("application/json")
///     .header("Authorization", "Bearer token")
///     .error_handler(|e| eprintln!("{e}"))
///     .build()?;
/// # Ok::<(), notifier::BuildError>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct Builder {
    url: String,
    workers: usize,
    queue_size: usize,
    threads: Option<usize>,
    timeout: Duration,
    idle_timeout: Duration,
    max_connection_age: Option<Duration>,
    dns_refresh: Duration,
    preconnect: bool,
    shutdown_timeout: Option<Duration>,
    /// `None`: the batch framing's, else the default.
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    handler: Option<Handler>,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    retry: Option<RetryConfig>,
    circuit_breaker: Option<CircuitBreakerConfig>,
    spin: Duration,
    adaptive_spin: bool,
    pin_threads: bool,
    batch_scheduling: bool,
    batch: Option<BatchConfig>,
    compression: Compression,
    message_ttl: Option<Duration>,
    overflow: Overflow,
    idempotency_key: bool,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("url", &self.url)
            .field("workers", &self.workers)
            .field("queue_size", &self.queue_size)
            .field("threads", &self.threads)
            .field("timeout", &self.timeout)
            .field("dns_refresh", &self.dns_refresh)
            .field("preconnect", &self.preconnect)
            .field("content_type", &self.content_type)
            .field("batch", &self.batch)
            .field("compression", &self.compression)
            .field("message_ttl", &self.message_ttl)
            .field("overflow", &self.overflow)
            .field("idempotency_key", &self.idempotency_key)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Names the client writes itself, or that would contradict its framing.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "content-type",
];

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Header values and the content type: no control characters but HTAB
/// (RFC 9110 §5.5). CR, LF and NUL would inject or cut headers; the others
/// make strict servers answer 400.
fn check_value(what: &str, value: &str) -> Result<(), BuildError> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(BuildError::InvalidHeader(format!(
            "{what} {value:?} contains a control character (CR, LF, NUL or another)"
        )));
    }
    Ok(())
}

impl Builder {
    pub(crate) fn new(url: &str) -> Builder {
        Builder {
            url: url.to_owned(),
            workers: DEFAULT_WORKERS,
            queue_size: DEFAULT_QUEUE_SIZE,
            threads: None,
            timeout: DEFAULT_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connection_age: None,
            dns_refresh: DEFAULT_DNS_REFRESH,
            preconnect: false,
            shutdown_timeout: None,
            content_type: None,
            headers: Vec::new(),
            handler: None,
            tls_config: None,
            retry: None,
            circuit_breaker: None,
            spin: Duration::ZERO,
            adaptive_spin: true,
            pin_threads: false,
            batch_scheduling: true,
            batch: None,
            compression: Compression::None,
            message_ttl: None,
            overflow: Overflow::Reject,
            idempotency_key: false,
        }
    }

    /// The most simultaneous requests, each on its own keep-alive
    /// connection. Zero is ignored. Default 10; more than
    /// [`MAX_WORKERS`](crate::MAX_WORKERS) fails the build.
    ///
    /// Each worker holds a socket (a file descriptor, and an ephemeral
    /// port) while its connection is open. When one cannot be opened for a
    /// local reason (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, or
    /// `EADDRNOTAVAIL` when no port is left), the worker gives its message
    /// to another worker that has a connection, or can open one, without
    /// counting an attempt or telling the circuit breaker, and rests for a
    /// jittered 0–10 ms, doubling with each such failure in a row up to
    /// 0–1 s, before it tries again: concurrency narrows to what the
    /// machine allows. The message fails only when its
    /// [`timeout`](Builder::timeout) passes with no worker able to carry
    /// it, as [`FailureKind::Connect`](crate::FailureKind::Connect) with
    /// the operating system's error, and as no failure of the endpoint's
    /// for the breaker (the retry policy retries it). While no socket at
    /// all can be opened, one message at a time is tried this way; the
    /// others wait in the queue.
    pub fn workers(mut self, n: usize) -> Builder {
        if n >= 1 {
            self.workers = n;
        }
        self
    }

    /// How many messages may wait for a worker; more than
    /// [`MAX_QUEUE_SIZE`](crate::MAX_QUEUE_SIZE) fails the build.
    /// The client holds at most `queue_size + workers` messages (with
    /// [`Builder::batch`], also a batch in each connection); past that
    /// `notify` returns `QueueFull`. Zero is ignored. Default 1000.
    pub fn queue_size(mut self, n: usize) -> Builder {
        if n >= 1 {
            self.queue_size = n;
        }
        self
    }

    /// Deadline of one attempt, counted from when a connection slot takes
    /// the message. Zero is ignored. Default 30 s.
    ///
    /// It bounds every wait of the attempt: while the machine is out of
    /// sockets, for a worker that can carry it (see [`Builder::workers`]);
    /// for the host name's first
    /// addresses when the resolver has none yet (see
    /// [`Builder::dns_refresh`]), the TCP connect over every address tried
    /// (the families alternate; the next address starts beside the others
    /// after 250 ms without a connection, or at once when one fails; the
    /// first to connect is kept), the TLS handshake, writing the request,
    /// and reading the response up to its head; the rest of a body only
    /// decides whether the connection is kept, and is read within the same
    /// deadline (and a second at most). On a connection kept open from an
    /// earlier message only writing and reading remain.
    ///
    /// An attempt whose deadline passes while it waits for addresses fails
    /// as [`FailureKind::Connect`](crate::FailureKind), in any later phase
    /// as [`FailureKind::Timeout`](crate::FailureKind). The time a message
    /// spends queued or waiting for a retry is not part of it (see
    /// [`Builder::message_ttl`]). A connection opened ahead of messages
    /// ([`Builder::preconnect`]) must be connected and through its TLS
    /// handshake within the same time from its start.
    pub fn timeout(mut self, d: Duration) -> Builder {
        if !d.is_zero() {
            self.timeout = d;
        }
        self
    }

    /// The `Content-Type` of every request. Default
    /// `text/plain; charset=utf-8`, or with [`Builder::batch`] the
    /// framing's (`application/x-ndjson` for
    /// [`BatchConfig::ndjson`], `application/json` for
    /// [`BatchConfig::json_array`]); set here, it wins over both.
    pub fn content_type(mut self, content_type: &str) -> Builder {
        self.content_type = Some(content_type.to_owned());
        self
    }

    /// Adds a header to every request. The name must be an HTTP token and
    /// the value free of control characters (HTAB is allowed). `Host`, `Content-Length`,
    /// `Transfer-Encoding` and `Connection` are the client's own and
    /// rejected; set `Content-Type` with [`Builder::content_type`].
    pub fn header(mut self, name: &str, value: &str) -> Builder {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Called with every message that could not be delivered. It runs on
    /// an event-loop thread, so a slow handler delays that loop's other
    /// deliveries; a panic in it is caught
    /// and counted in [`Stats::handler_panics`](crate::Stats). Without a
    /// handler, failures are only counted.
    pub fn error_handler(
        mut self,
        handler: impl Fn(NotificationError) + Send + Sync + 'static,
    ) -> Builder {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// Number of event-loop threads; the workers are spread over them.
    /// Default: the smaller of `workers` and the available cores; never more
    /// than `workers`. Zero is ignored; more than
    /// [`MAX_THREADS`](crate::MAX_THREADS) fails the build.
    pub fn threads(mut self, n: usize) -> Builder {
        if n >= 1 {
            self.threads = Some(n);
        }
        self
    }

    /// Bounds [`Client::stop`](crate::Client::stop): what is not delivered
    /// by then, in flight included, goes to the error handler as
    /// [`FailureKind::Shutdown`](crate::FailureKind::Shutdown). Default:
    /// `stop` waits for everything.
    pub fn shutdown_timeout(mut self, d: Duration) -> Builder {
        self.shutdown_timeout = Some(d);
        self
    }

    /// How long an unused keep-alive connection stays open, at most.
    /// Default 30 s.
    ///
    /// The client also learns how long the server keeps them, so that it
    /// never writes a request into a connection as the server closes it
    /// (the request would be lost without retry, or refused): it reuses no
    /// connection idle for 0.75 × the server's idle timeout or more, and
    /// closes such a connection and opens a fresh one instead.
    ///
    /// - A server's `Keep-Alive: timeout=N` says it: the limit is set to
    ///   0.75 × N s (`timeout=1`: 750 ms; `timeout=0`: no reuse).
    /// - A server that ends a connection after it sat idle for t (the end of
    ///   stream, a reset or a goodbye `408` arriving while it is idle, or
    ///   with the first request written to it after t) lowers the limit to
    ///   0.75 × t. An end after less than 100 ms of idle is not taken for
    ///   an idle timeout, so what is learned this way is never below 75 ms.
    ///
    /// What is learned is the client's, shared by all its connections, and
    /// kept for its life (until a `Keep-Alive` hint replaces it): a server
    /// that once ends idle connections early for another reason (a
    /// restart, say) costs a fresh connection for messages after longer
    /// gaps, never a message. Never more than this setting.
    pub fn idle_timeout(mut self, d: Duration) -> Builder {
        self.idle_timeout = d;
        self
    }

    /// Closes a connection older than `d` (each drawn within ±10 % of it,
    /// so that they do not all go at once) after its current exchange,
    /// instead of keeping it: clients rebalance behind load balancers and
    /// follow DNS changes. The next message opens a fresh connection.
    /// Default: no limit. Zero is ignored.
    pub fn max_connection_age(mut self, d: Duration) -> Builder {
        if !d.is_zero() {
            self.max_connection_age = Some(d);
        }
        self
    }

    /// How often the endpoint's host name is looked up again, in the
    /// background, for the connections opened after. Default 60 s
    /// ([`DEFAULT_DNS_REFRESH`](crate::DEFAULT_DNS_REFRESH)); longer than
    /// [`MAX_DNS_REFRESH`](crate::MAX_DNS_REFRESH) (a day) fails the
    /// build. Zero: only after a connection failed.
    ///
    /// Name resolution never runs on an event-loop thread. For a host
    /// name (an IP literal needs none) the build spawns a resolver thread,
    /// which looks the name up (the system's resolver, `getaddrinfo`) when
    /// the client starts, keeps the address list, looks it up again `d`
    /// after the last lookup ended, and sooner, at most once a second,
    /// when a connection to the listed addresses failed. A lookup that
    /// fails keeps the list there was. An attempt that finds no list yet
    /// waits for the lookup under way within its [`timeout`](Builder::timeout);
    /// a lookup that fails while there is no list fails the attempts that
    /// waited for it as [`FailureKind::Connect`](crate::FailureKind). A
    /// resolver that hangs delays no message on an open connection.
    ///
    /// Connections already open keep their address: pair it with
    /// [`Builder::max_connection_age`] to move them when DNS changes. Cost:
    /// one lookup per period, on the resolver's thread. A lookup still
    /// under way when the client stops is left to finish on that thread,
    /// which then ends; `stop` does not wait for it.
    pub fn dns_refresh(mut self, d: Duration) -> Builder {
        self.dns_refresh = d;
        self
    }

    /// Opens every slot's connection (TCP, and TLS for `https`) when the
    /// client starts, before the first message, and re-opens at once a
    /// connection that the server closed while it was idle, so that the
    /// first message after a quiet period pays no handshake. Default off.
    ///
    /// An opening that fails (refused, not connected within
    /// [`timeout`](Builder::timeout), TLS refused) and a connection the
    /// server closes while idle within a second of its opening back off:
    /// the next opening waits up to 100 ms after the first such failure in
    /// a row, doubling up to 30 s, never less than half of that; a
    /// connection that carried a request or stayed open a second starts
    /// afresh. Nothing is opened ahead while the client stops, nor while
    /// the circuit breaker is open or half-open: only messages probe a
    /// sick server. Openings are not attempts: their failures reach no
    /// error handler and no breaker. A message that finds its slot still
    /// opening takes that connection over.
    ///
    /// Cost: `workers` connections open at all times, idle or not (a
    /// socket here and one on the server each, with their TLS state). A
    /// connection closed by [`Builder::idle_timeout`], a server's
    /// `Keep-Alive` hint or [`Builder::max_connection_age`] is replaced at
    /// once: one handshake per slot per such period. No effect with a zero
    /// [`Builder::idle_timeout`], which keeps no connection idle.
    pub fn preconnect(mut self, on: bool) -> Builder {
        self.preconnect = on;
        self
    }

    /// Retries failures that [`is_retryable`](NotificationError::is_retryable)
    ///, after a full-jitter backoff:
    /// `random(0, min(max_backoff, initial_backoff · multiplier^n))`, raised
    /// to a 5xx's `Retry-After` (capped at `max_backoff`). A message waiting
    /// for its retry sits on its event loop's timer, not in a connection
    /// slot, and still counts toward `queue_size + workers`. Default: no
    /// retry.
    ///
    /// With retry, delivery is at-least-once: a request whose connection
    /// failed after it was written may have reached the server, and is sent
    /// again. Without retry it is at-most-once.
    pub fn retry(mut self, config: RetryConfig) -> Builder {
        self.retry = Some(config);
        self
    }

    /// A circuit breaker shared by every connection: after
    /// `failure_threshold` consecutive failures (transport errors,
    /// timeouts, 5xx) every attempt, retries included,
    /// fails at once with
    /// [`FailureKind::CircuitOpen`](crate::FailureKind::CircuitOpen) until
    /// `reset_timeout` has passed; then one probe goes through, and its
    /// outcome closes or re-opens the circuit. 2xx resets the count; other
    /// statuses count neither way. Default: no breaker.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Builder {
        self.circuit_breaker = Some(config);
        self
    }

    /// How long an event loop with nothing to do keeps busy-polling the
    /// queue and its sockets before it parks, whatever the traffic.
    /// Default: zero (the adaptive rule of [`Builder::adaptive_spin`]
    /// decides alone).
    ///
    /// While a loop spins, `notify` never makes a syscall and the message
    /// is picked up within a microsecond or so, at the price of one core
    /// per spinning loop, fully busy for `d` after the last activity (a
    /// message taken or a socket event). Every loop within its window
    /// spins, not only one. It is for latency-sensitive senders who give
    /// a core to it; pair it with [`Builder::pin_threads`] and fewer
    /// threads than cores.
    pub fn spin(mut self, d: Duration) -> Builder {
        self.spin = d;
        self
    }

    /// Whether an idle event loop keeps watching the queue for a while,
    /// sized from the gaps between recent arrivals, before it parks.
    /// Default on.
    ///
    /// A parked loop costs nothing, but the `notify` that finds every loop
    /// parked pays for waking one: an `eventfd` write, 5 to 25 µs on a
    /// virtual machine. With this on, one loop at a time (never more)
    /// watches after it finds the queue empty: for eight times the
    /// average gap between the arrivals it saw, at most 10 ms. Arrivals
    /// closer than 100 µs on average are watched by spinning (a core busy
    /// while they last; the message is picked up within a microsecond or
    /// so); sparser ones by dozing, a 50 µs sleep between looks (on a
    /// virtual machine each sleep costs 15 to 25 µs of CPU: about a
    /// quarter of a core while messages keep coming, and 25 to 40 µs more
    /// on average on the message's way to the server). While a loop watches, `notify` makes
    /// no syscall; when the watching loop's slots are all busy, it wakes
    /// a parked loop itself for what is queued, off the caller's thread.
    /// No message for 10 ms and every loop parks: an idle client uses no
    /// CPU. Measured with `benches/compare` (see `BENCHMARKS.md`).
    ///
    /// Turn it off to spend no CPU between messages at any rate, at the
    /// price of a wake-up in the `notify` that finds the loops parked.
    pub fn adaptive_spin(mut self, on: bool) -> Builder {
        self.adaptive_spin = on;
        self
    }

    /// Pins event loop *i* to core *i* (modulo the cores this process may
    /// use). Default off. Pinning keeps a loop's caches warm and stops the
    /// scheduler from moving it, which steadies latency, mostly together
    /// with [`Builder::spin`]; it costs nothing by itself, but a pinned
    /// loop cannot escape a core that other busy threads share, so leave it
    /// off when the process does not control its machine's load. Where the
    /// platform does not allow pinning, loops run unpinned.
    pub fn pin_threads(mut self, on: bool) -> Builder {
        self.pin_threads = on;
        self
    }

    /// Runs the event loops under Linux's `SCHED_BATCH` policy. Default on.
    ///
    /// Under the default Linux policy a thread woken by `notify` may
    /// preempt the caller at once when the kernel puts it on the caller's
    /// core: that `notify` returns only after the loop has had its turn
    /// (tens of microseconds). A `SCHED_BATCH` loop never preempts on
    /// wake-up; it starts on an idle core, or when the running thread
    /// blocks or its time slice ends. Its share of CPU is unchanged (same
    /// nice value); only the wake-up preference goes. Measured with
    /// `benches/compare`, paced at 20,000 messages/s on 2 cores: `notify`
    /// p99 about 20 µs with it, about 55 µs without (see `BENCHMARKS.md`).
    ///
    /// Turn it off when the time from `notify` to the server matters more
    /// than the caller's time and every core is busy: a loop woken then
    /// may wait for the running thread's time slice (up to a few
    /// milliseconds) before it sends. With idle cores, or with
    /// [`Builder::spin`], the difference does not arise. No effect off
    /// Linux, or where the kernel refuses the policy.
    pub fn batch_scheduling(mut self, on: bool) -> Builder {
        self.batch_scheduling = on;
        self
    }

    /// The TLS configuration for an `https` endpoint: custom roots, client
    /// certificates, protocol versions. It is used as given, so set its
    /// `alpn_protocols` to `[b"http/1.1"]` yourself if the server wants
    /// ALPN. Ignored for `http` endpoints.
    ///
    /// Without it the client uses rustls with the ring provider, the
    /// Mozilla roots of `webpki-roots` (and, with the `native-roots`
    /// feature, the operating system's store too), ALPN `http/1.1` and an
    /// in-memory session cache. Certificate verification cannot be switched off
    /// except by a configuration you build yourself.
    pub fn tls_config(mut self, config: Arc<rustls::ClientConfig>) -> Builder {
        self.tls_config = Some(config);
        self
    }

    /// Carries many queued messages in one request body, framed as `b`
    /// says; off by default (one message per request).
    ///
    /// A free connection takes up to `max_messages` queued messages whose
    /// framed body fits `max_bytes`, in queue order, and sends them as one
    /// request; with the default linger of zero it never waits, so at low
    /// load a batch holds one message and adds no latency. The batch is
    /// the unit of attempt, retry, circuit-breaker accounting and timeout:
    /// a 2xx delivers every message of it; any failure hands every message
    /// of it to the error handler, each with its
    /// [`batch_index`](NotificationError::batch_index). A retried batch is
    /// sent again whole, the same bytes. The body is written straight from
    /// the messages' own buffers.
    ///
    /// The client then holds at most `queue_size + workers × max_messages`
    /// messages: the queue holds `queue_size + workers`, and each
    /// connection a batch; `notify` returns `QueueFull` past that. For full
    /// batches at high rates, give the queue room for them:
    /// `queue_size ≥ workers × max_messages`.
    pub fn batch(mut self, b: BatchConfig) -> Builder {
        self.batch = Some(b);
        self
    }

    /// Compresses every request body (each batch once, its retries
    /// sending the same compressed bytes) and says so in
    /// `Content-Encoding`; default [`Compression::None`]. The
    /// `Compression::Gzip` and `Compression::Zstd` variants exist with
    /// the `gzip` and `zstd` cargo features. A `Content-Encoding` header
    /// of the caller's is then refused.
    pub fn compression(mut self, c: Compression) -> Builder {
        self.compression = c;
        self
    }

    /// Gives each message `d` from its `notify` to be delivered; default
    /// none, at most [`MAX_MESSAGE_TTL`](crate::MAX_MESSAGE_TTL). A message
    /// past it is not sent, nor sent again, any more: it goes to the error
    /// handler as [`FailureKind::Expired`](crate::FailureKind::Expired),
    /// with the attempts made so far. It is checked when the message is
    /// taken from the queue, when its batch is formed, and before each
    /// retry; a retried batch leaves its expired messages out (the rest go
    /// as a new request, with a new idempotency key). A request already
    /// written when `d` passes is not cancelled: its outcome stands, so
    /// "delivered within `d`" means "written within `d`". Zero is ignored.
    /// A stale quote or metric is worse than none.
    pub fn message_ttl(mut self, d: Duration) -> Builder {
        if !d.is_zero() {
            self.message_ttl = Some(d);
        }
        self
    }

    /// What `notify` does when the queue is full; default
    /// [`Overflow::Reject`] (`QueueFull`, the message handed back).
    /// [`Overflow::DropOldest`] takes the new message and hands the oldest
    /// queued one to the error handler as
    /// [`FailureKind::Dropped`](crate::FailureKind::Dropped), on an event
    /// loop's thread: a bounded hand-off of
    /// [`DROP_HANDOFF`](crate::DROP_HANDOFF) places carries it there, and
    /// `notify` still refuses with `QueueFull` while that is full. It stays
    /// lock-free and allocation-free. The client then holds at most its
    /// queue (`queue_size + workers`), what its connections carry, and the
    /// hand-off.
    pub fn overflow(mut self, o: Overflow) -> Builder {
        self.overflow = o;
        self
    }

    /// Sends an `Idempotency-Key` header with every request, unique per
    /// request and the same on each of its retries and re-sends, so that a
    /// server that deduplicates turns at-least-once delivery into
    /// exactly-once. Default off. The value is a quoted string of 32 hex
    /// digits: 64 random bits drawn when the client is built, then the
    /// event loop's number and its count of requests formed, so keys never
    /// repeat within a client and collide across clients with odds of
    /// 2^-64. One key per batch; a batch re-formed after some of its
    /// messages expired is a new request with a new key. An
    /// `Idempotency-Key` header of the caller's is then refused.
    pub fn idempotency_key(mut self, on: bool) -> Builder {
        self.idempotency_key = on;
        self
    }

    /// Validates the settings into the client's immutable configuration.
    pub(crate) fn into_config(self) -> Result<Config, BuildError> {
        let endpoint = Endpoint::parse(&self.url)?;
        let content_type = match (&self.content_type, &self.batch) {
            (Some(set), _) => set.as_str(),
            (
                None,
                Some(BatchConfig {
                    content_type: Some(framing),
                    ..
                }),
            ) => framing,
            (None, _) => DEFAULT_CONTENT_TYPE,
        };
        check_value("content type", content_type)?;
        for (name, value) in &self.headers {
            if !is_token(name) {
                return Err(BuildError::InvalidHeader(format!(
                    "header name {name:?} is not an HTTP token"
                )));
            }
            let compressing = self.compression.content_encoding().is_some();
            if RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
                || (compressing && name.eq_ignore_ascii_case("content-encoding"))
                || (self.idempotency_key && name.eq_ignore_ascii_case("idempotency-key"))
            {
                return Err(BuildError::InvalidHeader(format!(
                    "header {name:?} is set by the client itself"
                )));
            }
            check_value("header value", value)?;
        }
        at_most("workers", self.workers, MAX_WORKERS)?;
        at_most("queue_size", self.queue_size, MAX_QUEUE_SIZE)?;
        if let Some(threads) = self.threads {
            at_most("threads", threads, MAX_THREADS)?;
        }
        if let Some(ttl) = self.message_ttl {
            if ttl > MAX_MESSAGE_TTL {
                return Err(BuildError::InvalidSetting(format!(
                    "message_ttl = {ttl:?} is longer than the longest allowed, {MAX_MESSAGE_TTL:?}"
                )));
            }
        }
        if self.dns_refresh > MAX_DNS_REFRESH {
            return Err(BuildError::InvalidSetting(format!(
                "dns_refresh = {:?} is longer than the longest allowed, {MAX_DNS_REFRESH:?}",
                self.dns_refresh
            )));
        }
        let batching = match &self.batch {
            None => Batching::off(),
            Some(b) => {
                at_most("max_messages", b.max_messages, MAX_BATCH_MESSAGES)?;
                at_most("max_bytes", b.max_bytes, MAX_BATCH_BYTES)?;
                if b.linger > MAX_LINGER {
                    return Err(BuildError::InvalidSetting(format!(
                        "linger = {:?} is longer than the longest allowed, {MAX_LINGER:?}",
                        b.linger
                    )));
                }
                Batching {
                    on: true,
                    framing: Framing {
                        prefix: b.prefix.clone(),
                        separator: b.separator.clone(),
                        suffix: b.suffix.clone(),
                    },
                    max_messages: b.max_messages,
                    max_bytes: b.max_bytes,
                    linger: b.linger,
                }
            }
        };
        let encoder = RequestEncoder::new(
            &endpoint.target,
            &endpoint.authority,
            content_type,
            self.compression.content_encoding(),
            &self.headers,
        );
        let tls = match endpoint.scheme {
            Scheme::Http => None,
            Scheme::Https => Some(TlsSetup::new(&endpoint, self.tls_config)?),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // `workers` is at least 1, so the range is not empty.
        let threads = self
            .threads
            .unwrap_or(cores)
            .clamp(1, self.workers.min(MAX_THREADS));
        Ok(Config {
            endpoint,
            encoder,
            tls,
            workers: self.workers,
            queue_size: self.queue_size,
            threads,
            batching,
            compression: self.compression,
            message_ttl: self.message_ttl,
            overflow: self.overflow,
            idempotency_key: self.idempotency_key.then(|| fastrand::Rng::new().u64(..)),
            timeout: self.timeout,
            idle_timeout: self.idle_timeout,
            max_connection_age: self.max_connection_age,
            dns_refresh: Some(self.dns_refresh).filter(|d| !d.is_zero()),
            // With no idle time, a connection opened ahead could not wait
            // for a message.
            preconnect: self.preconnect && !self.idle_timeout.is_zero(),
            shutdown_timeout: self.shutdown_timeout,
            handler: self.handler,
            retry: self.retry,
            breaker: self.circuit_breaker,
            spin: self.spin,
            adaptive_spin: self.adaptive_spin,
            pin_threads: self.pin_threads,
            batch_scheduling: self.batch_scheduling,
            #[cfg(test)]
            panic_at_message: None,
            #[cfg(test)]
            lookup: None,
        })
    }
}

/// A size setting past its bound is refused rather than clamped: a client
/// with a billion workers is a mistake to report, not to guess at.
fn at_most(setting: &str, value: usize, max: usize) -> Result<(), BuildError> {
    if value > max {
        return Err(BuildError::InvalidSetting(format!(
            "{setting} = {value} is more than the most allowed, {max}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(builder: Builder) -> Result<Config, BuildError> {
        builder.into_config()
    }

    fn builder() -> Builder {
        Builder::new("http://127.0.0.1:9/")
    }

    #[test]
    fn sizes_past_their_bound_are_refused_not_wrapped() {
        for (what, b) in [
            ("workers", builder().workers(MAX_WORKERS + 1)),
            ("workers", builder().workers(usize::MAX)),
            ("queue_size", builder().queue_size(MAX_QUEUE_SIZE + 1)),
            ("queue_size", builder().queue_size(usize::MAX)),
            ("threads", builder().threads(MAX_THREADS + 1)),
        ] {
            match config(b) {
                Err(BuildError::InvalidSetting(text)) => {
                    assert!(text.contains(what), "{text}");
                }
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_largest_sizes_build_and_their_sum_fits() {
        let c = config(
            builder()
                .workers(MAX_WORKERS)
                .queue_size(MAX_QUEUE_SIZE)
                .threads(MAX_THREADS),
        )
        .expect("at the bounds");
        assert_eq!(c.capacity(), MAX_WORKERS + MAX_QUEUE_SIZE);
        assert_eq!(c.threads, MAX_THREADS);
        let slots: usize = (0..c.threads).map(|id| c.slots_of(id)).sum();
        assert_eq!(slots, MAX_WORKERS, "every slot belongs to one loop");
    }

    #[test]
    fn threads_never_exceed_workers() {
        let c = config(builder().workers(3).threads(8)).expect("build");
        assert_eq!(c.threads, 3);
        assert!((0..3).all(|id| c.slots_of(id) == 1));
    }

    #[test]
    fn batch_settings_past_their_bound_are_refused() {
        for (what, b) in [
            (
                "max_messages",
                BatchConfig::ndjson().max_messages(MAX_BATCH_MESSAGES + 1),
            ),
            (
                "max_bytes",
                BatchConfig::ndjson().max_bytes(MAX_BATCH_BYTES + 1),
            ),
            (
                "linger",
                BatchConfig::ndjson().linger(MAX_LINGER + Duration::from_nanos(1)),
            ),
        ] {
            match config(builder().batch(b)) {
                Err(BuildError::InvalidSetting(text)) => assert!(text.contains(what), "{text}"),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_largest_batches_bound_what_the_client_holds() {
        let c = config(
            builder()
                .workers(MAX_WORKERS)
                .queue_size(MAX_QUEUE_SIZE)
                .batch(BatchConfig::ndjson().max_messages(MAX_BATCH_MESSAGES)),
        )
        .expect("at the bounds");
        assert_eq!(
            c.capacity(),
            MAX_QUEUE_SIZE + MAX_WORKERS * MAX_BATCH_MESSAGES
        );
        assert_eq!(
            c.queue_capacity(),
            MAX_QUEUE_SIZE + MAX_WORKERS,
            "the ring does not grow with the batches"
        );
        let zero = config(builder().batch(BatchConfig::ndjson().max_messages(0).max_bytes(0)))
            .expect("zero is ignored");
        assert_eq!(zero.batching.max_messages, 500);
        assert_eq!(zero.batching.max_bytes, 1 << 20);
    }

    #[test]
    fn the_framing_names_the_content_type_unless_the_caller_did() {
        let head = |b: Builder| {
            let c = config(b).expect("build");
            let mut out = Vec::new();
            c.encoder
                .head(0, None)
                .with_body(crate::proto::request::Body::Bytes(b""))
                .copy_from(&Default::default(), &mut out);
            String::from_utf8(out).expect("ascii")
        };
        let content_type = |b: Builder| {
            let h = head(b);
            let line = h
                .lines()
                .find(|l| l.starts_with("Content-Type: "))
                .expect("one");
            line["Content-Type: ".len()..].to_owned()
        };
        assert_eq!(content_type(builder()), DEFAULT_CONTENT_TYPE);
        assert_eq!(
            content_type(builder().batch(BatchConfig::ndjson())),
            "application/x-ndjson"
        );
        assert_eq!(
            content_type(builder().batch(BatchConfig::json_array())),
            "application/json"
        );
        assert_eq!(
            content_type(builder().batch(BatchConfig::concatenated())),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(
            content_type(builder().batch(BatchConfig::custom(b"{", b",", b"}"))),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(
            content_type(
                builder()
                    .content_type("text/csv")
                    .batch(BatchConfig::ndjson())
            ),
            "text/csv"
        );
        assert_eq!(
            content_type(
                builder()
                    .batch(BatchConfig::ndjson())
                    .content_type("text/csv")
            ),
            "text/csv",
            "whichever order the calls come in"
        );
    }

    #[test]
    fn connection_settings_are_bounded() {
        match config(builder().dns_refresh(MAX_DNS_REFRESH + Duration::from_nanos(1))) {
            Err(BuildError::InvalidSetting(text)) => {
                assert!(text.contains("dns_refresh"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        let c = config(builder()).expect("defaults");
        assert_eq!(c.dns_refresh, Some(DEFAULT_DNS_REFRESH));
        assert!(!c.preconnect);
        let c = config(builder().dns_refresh(MAX_DNS_REFRESH)).expect("at the bound");
        assert_eq!(c.dns_refresh, Some(MAX_DNS_REFRESH));
        let c = config(builder().dns_refresh(Duration::ZERO)).expect("zero");
        assert_eq!(c.dns_refresh, None, "zero: only after connect failures");
        assert!(
            config(builder().preconnect(true))
                .expect("build")
                .preconnect
        );
        let never_idle = builder().preconnect(true).idle_timeout(Duration::ZERO);
        assert!(
            !config(never_idle).expect("build").preconnect,
            "nothing can be kept open ahead without idle time"
        );
    }

    #[test]
    fn lifetime_settings_are_bounded_and_keys_reserve_their_header() {
        match config(builder().message_ttl(MAX_MESSAGE_TTL + Duration::from_nanos(1))) {
            Err(BuildError::InvalidSetting(text)) => {
                assert!(text.contains("message_ttl"), "{text}")
            }
            other => panic!("{other:?}"),
        }
        let c = config(builder().message_ttl(MAX_MESSAGE_TTL)).expect("at the bound");
        assert_eq!(c.message_ttl, Some(MAX_MESSAGE_TTL));
        let c = config(builder().message_ttl(Duration::ZERO)).expect("zero is ignored");
        assert_eq!(c.message_ttl, None);
        assert_eq!(config(builder()).expect("build").overflow, Overflow::Reject);

        let refused = config(
            builder()
                .idempotency_key(true)
                .header("idempotency-key", "x"),
        );
        assert!(
            matches!(refused, Err(BuildError::InvalidHeader(_))),
            "{refused:?}"
        );
        let c =
            config(builder().header("Idempotency-Key", "x")).expect("the caller's without keys");
        assert_eq!(c.idempotency_key, None);
        let a = config(builder().idempotency_key(true))
            .expect("build")
            .idempotency_key;
        let b = config(builder().idempotency_key(true))
            .expect("build")
            .idempotency_key;
        assert!(a.is_some() && b.is_some());
        assert_ne!(a, b, "each client draws its own half of the keys");
    }
}
