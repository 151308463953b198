//! Deliver notifications to one HTTP endpoint without making the caller wait.
//!
//! ```text
//! caller threads ──notify()──► ArrayQueue<Message> (bounded) ──► event-loop thread 1 (mio Poll)
//!                   │  atomic in-system counter                  ├─ connection slot 1 ─ keep-alive TCP/TLS
//!                   │  (backpressure: QueueFull)                 ├─ connection slot 2
//!                   └─ wakes a parked loop (mio::Waker) only     └─ timers: request deadlines, idle expiry
//!                      when one is parked                     ► event-loop thread 2 …
//! ```
//!
//! [`Client::notify`] puts a message in a bounded lock-free queue and
//! returns. Event-loop threads, each with its own `mio` poll and a share of
//! the `workers` connection slots, take messages from the queue and POST
//! each one over a kept-alive HTTP/1.1 connection. The HTTP/1.1 code is
//! sans-IO (bytes in, bytes out), so it is tested split by split.
//!
//! # Semantics
//!
//! - **Delivery**: every accepted message ends exactly once, delivered
//!   (2xx) or handed to the error handler; after [`Client::stop`],
//!   `accepted == delivered + failed`. A request is sent at most once: it
//!   is re-sent automatically only when a reused connection turned out
//!   closed before it took any byte of the request, or answered it with a
//!   `408` (the server's goodbye to a connection it found idle).
//! - **Connections**: kept alive and reused while they have been idle for
//!   less than what the client learned of the server's idle timeout (see
//!   [`Builder::idle_timeout`]). When the machine runs out of sockets
//!   (file descriptors, ports), fewer connections carry the messages: no
//!   message fails for it while a connection can carry it within its
//!   `timeout` (see [`Builder::workers`]).
//! - **Ordering**: messages leave the queue in order but travel over up to
//!   `workers` connections at once; with `workers(1)` they arrive in order.
//! - **Backpressure**: the client holds at most `queue_size + workers`
//!   messages (`queue_size + workers × max_messages` with batching); past
//!   that `notify` returns [`NotifyError::QueueFull`] with the message.
//!   Memory stays bounded whatever the server does.
//! - **Batching** ([`Builder::batch`]): a free connection takes what is
//!   queued, up to [`BatchConfig::max_messages`], and sends it as one
//!   request body (NDJSON, a JSON array, or any framing), written straight
//!   from the messages' buffers. The batch is the unit of attempt, retry
//!   and timeout; a failed batch hands each of its messages to the error
//!   handler with its [`NotificationError::batch_index`].
//! - **Compression** ([`Builder::compression`], cargo features `gzip` and
//!   `zstd`): each body compressed once, its retries resending the same
//!   bytes.
//! - **Diagnostics**: with the `tracing` feature, connection, failure,
//!   retry and circuit-breaker events go to the `tracing` crate (target
//!   `notifier`); without it there is no such code at all.
//! - **Lifetime**: [`Builder::message_ttl`] ends a message not sent in
//!   time as [`FailureKind::Expired`]; [`Overflow::DropOldest`] lets a
//!   full queue take the newest message and end the oldest as
//!   [`FailureKind::Dropped`]; [`Builder::idempotency_key`] gives every
//!   request a key its retries repeat, for servers that deduplicate.
//! - **Connections**: a host name is looked up on a resolver thread of
//!   the client, never on an event loop (an IP literal needs none); the
//!   address list is kept and refreshed in the background
//!   ([`Builder::dns_refresh`]). A connect races the addresses, families
//!   alternating, a new one every 250 ms while none has connected, and
//!   keeps the first to connect. [`Builder::preconnect`] keeps every
//!   slot's connection open ahead of messages, so that the first after a
//!   quiet period pays no handshake; [`Builder::max_connection_age`]
//!   retires old ones.
//! - **Threads**: the event loops' threads (and, for a host name, the
//!   resolver's) are spawned by the build and wait for [`Client::start`]. The error handler runs on an event-loop
//!   thread; a slow handler delays that loop. A panic in it is caught and
//!   counted. A loop that panics itself (a bug) fails the messages it held
//!   as [`FailureKind::Internal`]; the others carry on, and `stop` returns.
//! - **Status**: the status decides: 2xx is delivered whatever happens to
//!   the body; any other status (redirects included, never followed) goes
//!   to the handler.
//!
//! # In scope / out of scope
//!
//! In: HTTP/1.1 POST to one `http://` or `https://` endpoint (rustls),
//! keep-alive, per-attempt deadlines, bounded memory, batching and
//! compression. Out: HTTP/2,
//! streaming bodies, many URLs, cookies, redirects, proxies.
//!
//! # TLS
//!
//! `https://` endpoints use rustls with the ring provider and the Mozilla
//! roots of `webpki-roots`, SNI from the host, ALPN `http/1.1`, and a
//! session cache shared by the client's connections so reconnects resume.
//! IP-address hosts are verified against the certificate's IP SANs. A
//! certificate or handshake failure is [`FailureKind::Tls`] and not
//! retried. [`Builder::tls_config`] replaces the whole configuration
//! (custom roots, client certificates); there is no switch that turns
//! verification off.
//!
//! The cargo feature `native-roots` adds the operating system's trusted
//! certificates to the `webpki-roots` ones in the default configuration,
//! through `rustls-native-certs` (on Linux the distribution's bundle, or the
//! files named by `SSL_CERT_FILE` / `SSL_CERT_DIR`; the keychain on macOS;
//! the system store on Windows), as reqwest and ureq offer. The store is
//! read when the client is built. A certificate in it that does not parse,
//! or a part of the store that cannot be read, is skipped: the other roots
//! still apply, and the build neither fails nor panics because of it. For
//! roots of your own (a private CA), build a `rustls::ClientConfig` and
//! pass it to [`Builder::tls_config`], with ALPN `http/1.1`:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let my_ca = rcgen::generate_simple_self_signed(vec!["ca.example".into()])?.cert.der().clone();
//! let mut roots = rustls::RootCertStore {
//!     roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
//! };
//! roots.add(my_ca)?; // a rustls::pki_types::CertificateDer of your CA
//! let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
//! let mut config = rustls::ClientConfig::builder_with_provider(provider)
//!     .with_safe_default_protocol_versions()?
//!     .with_root_certificates(roots)
//!     .with_no_client_auth();
//! config.alpn_protocols = vec![b"http/1.1".to_vec()];
//! let client = notifier::Client::builder("https://hooks.internal:8443/in")
//!     .tls_config(std::sync::Arc::new(config))
//!     .build()?;
//! # drop(client);
//! # Ok(())
//! # }
//! ```

mod batch;
#[cfg(feature = "internals")]
mod bench;
mod builder;
mod client;
mod config;
mod conn;
mod endpoint;
mod error;
#[cfg(any(test, feature = "internals"))]
mod fuzzing;
mod message;
mod policy;
mod proto;
mod runtime;
mod stats;
mod sync;
mod trace;

pub use batch::{
    BatchConfig, DEFAULT_BATCH_BYTES, DEFAULT_BATCH_MESSAGES, MAX_BATCH_BYTES, MAX_BATCH_MESSAGES,
    MAX_LINGER,
};
pub use builder::Builder;
pub use client::Client;
pub use config::{
    Overflow, DEFAULT_CONTENT_TYPE, DEFAULT_DNS_REFRESH, DEFAULT_IDLE_TIMEOUT, DEFAULT_QUEUE_SIZE,
    DEFAULT_TIMEOUT, DEFAULT_WORKERS, DROP_HANDOFF, MAX_DNS_REFRESH, MAX_MESSAGE_TTL,
    MAX_QUEUE_SIZE, MAX_THREADS, MAX_WORKERS,
};
pub use error::{BuildError, FailureKind, NotificationError, NotifyError, ProtocolError};
pub use message::Message;
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod __bench {
    //! Internals for `benches/`, with the `internals` feature; not public
    //! API.
    pub use crate::bench::*;
}
// Built for the crate's own tests too: the proptests and the corpus
// replay drive the same entry points.
#[cfg(any(test, feature = "internals"))]
#[doc(hidden)]
pub mod __fuzz {
    //! Internals for `fuzz/`, with the `internals` feature; not public API.
    pub use crate::fuzzing::*;
}
pub use policy::{CircuitBreakerConfig, CircuitState, RetryConfig};
pub use proto::compress::Compression;
pub use stats::Stats;
