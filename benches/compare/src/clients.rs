//! The clients under test, each set up as its users would, for the same
//! job: POST each message to the sink, `workers` requests at a time, with a
//! bounded queue of `queue` messages in front.
//!
//! - **notifier**: this crate, defaults but `workers` and `queue_size`.
//!   The spinning variant adds `spin` and runs one event loop
//!   (`threads(1)`), as `Builder::spin` advises: a spinning loop keeps a
//!   core busy, and the machine has to keep one for the sink.
//! - **reqwest + tokio**: a bounded `tokio::sync::mpsc` fed by `try_send`,
//!   `workers` tasks sharing its receiver, one shared `reqwest::Client`;
//!   the multi-thread runtime with its default thread count (the cores).
//! - **ureq**: `workers` threads on a bounded `std::sync::mpsc::sync_channel`,
//!   one `ureq::Agent` each.
//! - **raw sockets**: no queue, no client library: `workers` threads, each
//!   with its own blocking keep-alive connection, write a prebuilt request
//!   (only the send time in the body changes) and read the `204`. The
//!   syscall floor.
//!
//! The queue-fed clients are [`Pipe`]s: the harness's producer hands them
//! messages and backs off when they are full. Parsing the URL is done once
//! up front for every client, as a careful user would.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self as std_mpsc, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use notifier::{Client, NotifyError, DEFAULT_CONTENT_TYPE};

/// What every client is given.
pub(crate) struct Settings {
    pub(crate) url: String,
    pub(crate) addr: SocketAddr,
    pub(crate) workers: usize,
    pub(crate) queue: usize,
    /// Body size, for the raw client's prebuilt request.
    pub(crate) size: usize,
    /// Notifications that failed, for every client (none are expected).
    pub(crate) failures: Arc<AtomicU64>,
}

impl Settings {
    fn failed(&self) -> impl Fn(&dyn std::fmt::Display) + Send + Sync + Clone + 'static {
        let failures = Arc::clone(&self.failures);
        move |why| {
            if failures.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("compare: a notification failed: {why}");
            }
        }
    }
}

/// A client with a bounded queue in front of it.
pub(crate) trait Pipe: Send + Sync {
    /// Hands a message over, or gives it back when the queue is full.
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>>;

    /// Delivers what it holds and ends its threads.
    fn shutdown(self: Box<Self>);
}

// ---------------------------------------------------------------------------
// notifier
// ---------------------------------------------------------------------------

/// This crate.
pub(crate) struct Notifier(Client);

impl Notifier {
    pub(crate) fn start(s: &Settings, spin: Option<Duration>) -> Result<Notifier, String> {
        let failed = s.failed();
        let mut builder = Client::builder(&s.url)
            .workers(s.workers)
            .queue_size(s.queue)
            .error_handler(move |e| failed(&e));
        if let Some(spin) = spin {
            builder = builder.spin(spin).threads(1);
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        client.start();
        Ok(Notifier(client))
    }
}

impl Pipe for Notifier {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.0.notify(body) {
            Ok(()) => Ok(()),
            Err(NotifyError::QueueFull(msg)) => Err(msg.into_vec()),
            Err(e) => panic!("notifier refused a message: {e}"),
        }
    }

    fn shutdown(self: Box<Self>) {
        self.0.stop();
    }
}

// ---------------------------------------------------------------------------
// reqwest + tokio
// ---------------------------------------------------------------------------

/// `workers` tokio tasks on a bounded mpsc, one shared `reqwest::Client`.
pub(crate) struct Reqwest {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
}

impl Reqwest {
    pub(crate) fn start(s: &Settings) -> Result<Reqwest, String> {
        use reqwest::header::{HeaderValue, CONTENT_TYPE};

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| e.to_string())?;
        let url = reqwest::Url::parse(&s.url).map_err(|e| e.to_string())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(s.queue);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let tasks = (0..s.workers)
            .map(|_| {
                let (client, url, rx, failed) =
                    (client.clone(), url.clone(), Arc::clone(&rx), s.failed());
                runtime.spawn(async move {
                    loop {
                        let Some(body) = rx.lock().await.recv().await else {
                            return;
                        };
                        let sent = client
                            .post(url.clone())
                            .header(CONTENT_TYPE, HeaderValue::from_static(DEFAULT_CONTENT_TYPE))
                            .body(body)
                            .send()
                            .await;
                        match sent {
                            Ok(response) if response.status().is_success() => {
                                // Read the (empty) body so the connection is reused.
                                if let Err(e) = response.bytes().await {
                                    failed(&e);
                                }
                            }
                            Ok(response) => failed(&response.status()),
                            Err(e) => failed(&e),
                        }
                    }
                })
            })
            .collect();
        Ok(Reqwest { tx, tasks, runtime })
    }
}

impl Pipe for Reqwest {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        use tokio::sync::mpsc::error::TrySendError;
        match self.tx.try_send(body) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(body)) => Err(body),
            Err(TrySendError::Closed(_)) => panic!("the reqwest tasks are gone"),
        }
    }

    fn shutdown(self: Box<Self>) {
        let Reqwest { tx, tasks, runtime } = *self;
        drop(tx);
        runtime.block_on(async {
            for task in tasks {
                let _ = task.await;
            }
        });
    }
}

// ---------------------------------------------------------------------------
// ureq
// ---------------------------------------------------------------------------

/// `workers` threads on a bounded `sync_channel`, one `ureq::Agent` each.
pub(crate) struct Ureq {
    tx: SyncSender<Vec<u8>>,
    threads: Vec<JoinHandle<()>>,
}

impl Ureq {
    pub(crate) fn start(s: &Settings) -> Result<Ureq, String> {
        let uri: ureq::http::Uri = s.url.parse().map_err(|e| format!("{e}"))?;
        let (tx, rx) = std_mpsc::sync_channel::<Vec<u8>>(s.queue);
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..s.workers)
            .map(|i| {
                let (uri, rx, failed) = (uri.clone(), Arc::clone(&rx), s.failed());
                thread::Builder::new()
                    .name(format!("ureq-{i}"))
                    .spawn(move || {
                        let agent = ureq::Agent::new_with_defaults();
                        loop {
                            let received = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                            let Ok(body) = received else {
                                return; // The sender is gone: shut down.
                            };
                            let sent = agent
                                .post(uri.clone())
                                .header("Content-Type", DEFAULT_CONTENT_TYPE)
                                .send(&body[..]);
                            match sent {
                                Ok(mut response) => {
                                    // Read the (empty) body so the connection is reused.
                                    let mut reader = response.body_mut().as_reader();
                                    if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
                                        failed(&e);
                                    }
                                }
                                Err(e) => failed(&e),
                            }
                        }
                    })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(Ureq { tx, threads })
    }
}

impl Pipe for Ureq {
    fn send(&self, body: Vec<u8>) -> Result<(), Vec<u8>> {
        match self.tx.try_send(body) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(body)) => Err(body),
            Err(TrySendError::Disconnected(_)) => panic!("the ureq threads are gone"),
        }
    }

    fn shutdown(self: Box<Self>) {
        let Ureq { tx, threads } = *self;
        drop(tx);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------
// raw sockets
// ---------------------------------------------------------------------------

/// `workers` blocking keep-alive connections and one prebuilt request.
pub(crate) struct Raw {
    pub(crate) conns: Vec<TcpStream>,
    /// Head and body; only the send time at the start of the body changes.
    pub(crate) request: Vec<u8>,
    /// Where the body starts in `request`.
    pub(crate) body_at: usize,
}

/// The sink's whole answer.
const RESPONSE_204: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

impl Raw {
    pub(crate) fn start(s: &Settings) -> Result<Raw, String> {
        let conns = (0..s.workers)
            .map(|_| {
                let conn = TcpStream::connect(s.addr)?;
                conn.set_nodelay(true)?;
                Ok(conn)
            })
            .collect::<io::Result<_>>()
            .map_err(|e: io::Error| e.to_string())?;
        let mut request = format!(
            "POST /notify HTTP/1.1\r\nHost: {}\r\nContent-Type: {DEFAULT_CONTENT_TYPE}\r\nContent-Length: {}\r\n\r\n",
            s.addr, s.size
        )
        .into_bytes();
        let body_at = request.len();
        request.resize(body_at + s.size, b'.');
        Ok(Raw {
            conns,
            request,
            body_at,
        })
    }
}

/// Sends one request on `conn` and reads its `204`.
pub(crate) fn raw_exchange(
    conn: &mut TcpStream,
    request: &[u8],
    buf: &mut [u8; 256],
) -> io::Result<()> {
    conn.write_all(request)?;
    let mut have = 0;
    loop {
        let n = conn.read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if have >= RESPONSE_204.len() {
            return if &buf[..have] == RESPONSE_204 {
                Ok(())
            } else {
                Err(io::Error::other("unexpected response"))
            };
        }
    }
}
