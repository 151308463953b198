//! The validated, immutable settings of a client: what [`Builder`] produces
//! and every event loop reads. Nothing here changes after the build; live
//! state (the queue, the breaker's word, counters) lives in `runtime`.
//!
//! [`Builder`]: crate::Builder

use std::fmt;
#[cfg(test)]
use std::io;
#[cfg(test)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::tls::TlsSetup;
use crate::endpoint::Endpoint;
use crate::error::NotificationError;
use crate::policy::{CircuitBreakerConfig, RetryConfig};
use crate::proto::compress::Compression;
use crate::proto::request::{Framing, RequestEncoder};

/// Default number of workers: simultaneous requests, one connection each.
pub const DEFAULT_WORKERS: usize = 10;
/// Default queue size: messages waiting for a worker.
pub const DEFAULT_QUEUE_SIZE: usize = 1000;
/// Default whole-attempt deadline.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `Content-Type` of every request.
pub const DEFAULT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";
/// Default time an unused keep-alive connection stays open.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most workers (connection slots, one socket each) a client may have.
pub const MAX_WORKERS: usize = 1 << 16;
/// The largest queue a client may have. The queue's ring is allocated at
/// build time, a few dozen bytes per place, so this bounds it to well under
/// a gigabyte.
pub const MAX_QUEUE_SIZE: usize = 1 << 24;
/// The most event-loop threads a client may have.
pub const MAX_THREADS: usize = 1024;

/// Default period of the background lookups of the endpoint's host name;
/// see [`Builder::dns_refresh`](crate::Builder::dns_refresh).
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(60);
/// The longest [`Builder::dns_refresh`](crate::Builder::dns_refresh) may
/// be.
pub const MAX_DNS_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);

/// The longest [`Builder::message_ttl`](crate::Builder::message_ttl) may
/// be.
pub const MAX_MESSAGE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// How many messages dropped from a full queue ([`Overflow::DropOldest`])
/// may wait at once for an event loop to hand them to the error handler.
/// Past that `notify` refuses with `QueueFull`: the loops are not keeping
/// up even with the drops.
pub const DROP_HANDOFF: usize = 1024;

/// What `notify` does when the queue is full; see
/// [`Builder::overflow`](crate::Builder::overflow).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the new message: `notify` returns
    /// [`NotifyError::QueueFull`](crate::NotifyError::QueueFull) with it.
    #[default]
    Reject,
    /// Take the new message; the oldest queued one goes to the error
    /// handler as [`FailureKind::Dropped`](crate::FailureKind::Dropped), on
    /// an event-loop thread (never the caller's).
    DropOldest,
}

/// What a failed message is handed to.
pub(crate) type Handler = Arc<dyn Fn(NotificationError) + Send + Sync>;

/// Test-only: looks a host name and port up in place of the system's
/// resolver.
#[cfg(test)]
pub(crate) type Lookup = Arc<dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// How requests are formed from queued messages.
#[derive(Debug)]
pub(crate) struct Batching {
    /// Batching was asked for: failures say where in their batch they were.
    pub(crate) on: bool,
    pub(crate) framing: Framing,
    /// `1..=MAX_BATCH_MESSAGES`; 1 without batching.
    pub(crate) max_messages: usize,
    /// Body bytes before compression; a first message larger goes alone.
    pub(crate) max_bytes: usize,
    /// `..=MAX_LINGER`.
    pub(crate) linger: Duration,
}

impl Batching {
    /// One message per request, as it is.
    pub(crate) fn off() -> Batching {
        Batching {
            on: false,
            framing: Framing::default(),
            max_messages: 1,
            max_bytes: usize::MAX,
            linger: Duration::ZERO,
        }
    }
}

/// Everything an event loop needs to know, fixed at build time.
pub(crate) struct Config {
    pub(crate) endpoint: Endpoint,
    pub(crate) encoder: RequestEncoder,
    /// Set for `https` endpoints.
    pub(crate) tls: Option<TlsSetup>,
    /// `1..=MAX_WORKERS`.
    pub(crate) workers: usize,
    /// `1..=MAX_QUEUE_SIZE`: with `workers`, the in-system bound cannot
    /// overflow.
    pub(crate) queue_size: usize,
    /// `1..=workers.min(MAX_THREADS)`.
    pub(crate) threads: usize,
    pub(crate) batching: Batching,
    pub(crate) compression: Compression,
    pub(crate) timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// Connections older than this (±10 %) are closed after their exchange.
    pub(crate) max_connection_age: Option<Duration>,
    /// `..=MAX_DNS_REFRESH`: how often the host name is looked up again;
    /// `None`: only after connections failed.
    pub(crate) dns_refresh: Option<Duration>,
    /// Every slot keeps a connection open ahead of messages.
    pub(crate) preconnect: bool,
    pub(crate) shutdown_timeout: Option<Duration>,
    pub(crate) handler: Option<Handler>,
    pub(crate) retry: Option<RetryConfig>,
    pub(crate) breaker: Option<CircuitBreakerConfig>,
    pub(crate) spin: Duration,
    /// Whether an idle loop watches the queue for a while sized from the
    /// gaps between arrivals before it parks.
    pub(crate) adaptive_spin: bool,
    pub(crate) pin_threads: bool,
    /// `..=MAX_MESSAGE_TTL`.
    pub(crate) message_ttl: Option<Duration>,
    pub(crate) overflow: Overflow,
    /// With idempotency keys: the client's random half of every key.
    pub(crate) idempotency_key: Option<u64>,
    pub(crate) batch_scheduling: bool,
    /// Test-only fault injection: `(loop, n)` makes event loop `loop`
    /// panic when it takes its `n`-th message from the queue.
    #[cfg(test)]
    pub(crate) panic_at_message: Option<(usize, u64)>,
    /// Test-only: resolves the host name in place of the system's resolver
    /// (IP literals are never looked up).
    #[cfg(test)]
    pub(crate) lookup: Option<Lookup>,
}

impl Config {
    /// The most messages the client holds at once: queued, in flight and
    /// waiting for a retry. Within bounds by validation: at most
    /// `MAX_QUEUE_SIZE + MAX_WORKERS × MAX_BATCH_MESSAGES`, 2^24 + 2^32.
    pub(crate) fn capacity(&self) -> usize {
        self.queue_size + self.workers * self.batching.max_messages
    }

    /// The most messages the queue itself holds: its ring is allocated at
    /// build time, so it does not grow with the batches the connections
    /// hold outside it.
    pub(crate) fn queue_capacity(&self) -> usize {
        self.queue_size + self.workers
    }

    /// How many of the `workers` slots event loop `id` runs: an even share,
    /// the first loops taking one more when it does not divide.
    pub(crate) fn slots_of(&self, id: usize) -> usize {
        self.workers / self.threads + usize::from(id < self.workers % self.threads)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint)
            .field("workers", &self.workers)
            .field("queue_size", &self.queue_size)
            .field("threads", &self.threads)
            .field("batching", &self.batching)
            .field("timeout", &self.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_connection_age", &self.max_connection_age)
            .field("dns_refresh", &self.dns_refresh)
            .field("preconnect", &self.preconnect)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("handler", &self.handler.is_some())
            .field("retry", &self.retry)
            .field("breaker", &self.breaker)
            .field("message_ttl", &self.message_ttl)
            .field("overflow", &self.overflow)
            .field("idempotency_key", &self.idempotency_key)
            .finish_non_exhaustive()
    }
}
