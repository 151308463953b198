//! Counters kept by the event loops and the snapshot users read.

use crate::policy::CircuitState;

/// A snapshot of a client's counters, from [`Client::stats`](crate::Client::stats).
///
/// Counters only grow. Each is exact on its own; read while the client
/// runs, they may be from slightly different instants. After
/// [`Client::stop`](crate::Client::stop) returns,
/// `accepted == delivered + failed` and both gauges are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Messages `notify` accepted.
    pub accepted: u64,
    /// Messages the server answered with a 2xx status.
    pub delivered: u64,
    /// Messages handed to the error handler (or dropped when there is none).
    /// A message an event loop was holding in hand when it panicked is
    /// counted here as `Internal` without a handler call: the unwinding
    /// dropped it.
    pub failed: u64,
    /// Messages sent again by a retry (not counting first attempts): a
    /// retried batch of 100 messages counts 100.
    pub retried: u64,
    /// Requests written (every byte handed to the connection), whatever
    /// their outcome; an automatic re-send counts again. With batching,
    /// `delivered / requests` is the messages carried per request.
    pub requests: u64,
    /// Reads that left a response incomplete (its head, or its body, still
    /// to come), after each of which the client acknowledged what had come
    /// at once (Linux `TCP_QUICKACK`, one `setsockopt` each), so that a
    /// server holding the rest back for that ACK (Nagle's algorithm) sends
    /// it without waiting out the delayed-ACK timer. Zero while responses
    /// arrive whole, and off Linux. A count near `requests` says the server
    /// writes its responses in pieces: one syscall more per response.
    pub quick_acks: u64,
    /// Messages past their [`message_ttl`](crate::Builder::message_ttl),
    /// not sent (again): counted in `failed` too.
    pub expired: u64,
    /// Messages a full queue dropped for newer ones
    /// ([`Overflow::DropOldest`](crate::Overflow)): counted in `failed` too.
    pub dropped: u64,
    /// `notify` calls refused with `QueueFull`.
    pub rejected: u64,
    /// `notify` calls that had to wake a parked event loop, one `eventfd`
    /// write each: the only syscall `notify` makes. Far below `accepted`
    /// while the client is busy; with [`Builder::spin`](crate::Builder::spin)
    /// it stays low under light load too.
    pub wakeups: u64,
    /// Error-handler calls that panicked (caught; the loop went on).
    pub handler_panics: u64,
    /// Messages waiting in the queue. The bound is on queued plus in
    /// flight (`queue_size + workers`, or `queue_size + workers ×
    /// max_messages` with batching), so while connections are being
    /// opened this may exceed `queue_size` by up to `workers`.
    pub queued: usize,
    /// Messages accepted and not yet finished, beyond those queued: being
    /// sent, awaiting their response, waiting for a retry, or gathered into
    /// a batch that lingers.
    pub in_flight: usize,
    /// The circuit breaker's state; `Closed` without a breaker. An open
    /// circuit whose reset timeout has passed reads `HalfOpen`: the next
    /// attempt is its probe.
    pub circuit: CircuitState,
}
