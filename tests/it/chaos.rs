//! Chaos: many messages, with retry on, against a server that, drawing
//! from a seeded RNG for every request, answers normally or resets the
//! connection, stalls past the client's timeout, answers 5xx, truncates a
//! head or a 2xx body, closes idle connections, sends a stray `408` on an
//! idle connection, or closes without answering.
//!
//! At the end, every message ended exactly once (`accepted == delivered +
//! failed`), and the server's log agrees: each id the client counts as
//! delivered was answered with a 2xx the client took, exactly once, and
//! each id the error handler got, once, never was. An id reaches the server
//! more than once only because an earlier attempt failed: a failure the
//! server caused, or a 2xx that came after the client had timed out (the
//! server sees the client drop the connection without reading it). Counts
//! of each are printed.
//!
//! `chaos_with_batches` runs the same scenario with NDJSON batching on: a
//! request carries many messages, the server logs each id of its body, and
//! the server's actions hit whole batches (a batch reset, stalled, cut or
//! answered 5xx at once).
//!
//! `chaos_with_ttl` runs it batched with a [`message_ttl`] of 300 ms, longer
//! than the client's 200 ms timeout, and 5% more requests stalled (a batch
//! that stalls twice, or waits long enough behind stalled slots, outlives
//! its TTL): a message can then also end as
//! `Expired`, never after a 2xx the client took, never sent again once
//! expired, and never sent at all when it expired before its first
//! attempt. A retried batch that lost some of its messages to their TTL
//! goes as a new request, which the server logs like any other.
//!
//! `NOTIFIER_CHAOS_MESSAGES` sets the number of messages (default 200,000;
//! 50,000 with batches or the TTL) and `NOTIFIER_CHAOS_SEED` the
//! seed.
//!
//! [`message_ttl`]: notifier::Builder::message_ttl
//!
//! It runs alone (`support::alone`): for tens of seconds it keeps both
//! cores of a small machine busy, which would upset the tests that rely on
//! the client acting well within a window; and the server's account of
//! which 2xx answers the client took holds only while the server answers
//! well within the client's timeout, which starved server threads do not.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use notifier::{BatchConfig, Client, FailureKind, RetryConfig};

use crate::support;
use crate::support::{
    alone, assert_each_ended, id_of, lock, msg, notify_retrying, started, RawConn, Server,
    NO_CONTENT,
};

const DEFAULT_MESSAGES: usize = 200_000;
/// Fewer with batches: the server's log still holds every message.
const DEFAULT_BATCHED_MESSAGES: usize = 50_000;
/// Fewer with the TTL: it adds to the run only what it checks.
const DEFAULT_TTL_MESSAGES: usize = 50_000;
/// The TTL of `chaos_with_ttl`: longer than [`TIMEOUT`], so that one stall
/// and its retry fit in it, two do not.
const TTL: Duration = Duration::from_millis(300);
/// The most messages in a batch, with batches.
const BATCH_MESSAGES: usize = 25;
const DEFAULT_SEED: u64 = 0x6e6f_7469_6669_6572;
const MAX_ATTEMPTS: u32 = 4;
/// Short, so that stalls cost little; normal answers take microseconds.
const TIMEOUT: Duration = Duration::from_millis(200);
const WORKERS: usize = 8;

/// What the server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Chaos {
    /// `204`, keep-alive.
    NoContent,
    /// `200` with a small body, keep-alive.
    Ok,
    /// `500`, `502` or `503` with a body, keep-alive.
    ServerError,
    /// The beginning of a head (maybe nothing), then a reset.
    Reset,
    /// No answer; waits for the client to give up.
    Stall,
    /// The beginning of a head, then close.
    TruncatedHead,
    /// A `200` head and part of its body, then close: delivered.
    TruncatedBody,
    /// `204`, then close after 0–2 ms while the connection is idle.
    CloseIdle,
    /// `204`, then after 0–2 ms an unsolicited `408` and close.
    Stray408,
    /// Close without answering: an end of stream after the request, a
    /// retryable `Io` failure (the server may have acted on it).
    NoAnswer,
}

impl Chaos {
    /// Draws an action: in 10,000ths, 7,889 normal answers, 600 5xx, 300
    /// resets, 200 truncated heads, 200 closes without answer, 200
    /// truncated 2xx bodies, 600 closes when idle, 10 stray 408s, 1
    /// stall. (A stray 408 nearly always meets the next request, sent at
    /// once on the connection, and is its answer: a failure, not retried.
    /// Hence so few.)
    fn draw(rng: &mut fastrand::Rng) -> Chaos {
        match rng.u32(0..10_000) {
            0 => Chaos::Stall,
            1..=600 => Chaos::ServerError,
            601..=900 => Chaos::Reset,
            901..=1_100 => Chaos::TruncatedHead,
            1_101..=1_300 => Chaos::NoAnswer,
            1_301..=1_500 => Chaos::TruncatedBody,
            1_501..=2_100 => Chaos::CloseIdle,
            2_101..=2_110 => Chaos::Stray408,
            2_111..=2_610 => Chaos::Ok,
            _ => Chaos::NoContent,
        }
    }

    /// Whether the action answers with a 2xx head (complete).
    fn answers_2xx(self) -> bool {
        matches!(
            self,
            Chaos::NoContent
                | Chaos::Ok
                | Chaos::TruncatedBody
                | Chaos::CloseIdle
                | Chaos::Stray408
        )
    }
}

/// One message of one request as the server saw it.
#[derive(Debug, Clone, Copy)]
struct Sighting {
    id: u32,
    action: Chaos,
    /// A 2xx the client did not take: it had given up (timed out) first.
    late: bool,
}

/// The server's log, shared by its connection threads.
#[derive(Default)]
struct Ledger {
    log: Mutex<Vec<Sighting>>,
    /// Set once every message ended, before the client stops (and closes
    /// its idle connections).
    client_stopping: AtomicBool,
    connections: AtomicU64,
    /// Requests read (with batches, fewer than sightings).
    requests: AtomicU64,
}

impl Ledger {
    fn lock(&self) -> MutexGuard<'_, Vec<Sighting>> {
        lock(&self.log)
    }

    /// Logs a request carrying `ids`; gives back its sightings' indexes
    /// in the log.
    fn saw(&self, ids: &[usize], action: Chaos) -> Range<usize> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut log = self.lock();
        let start = log.len();
        log.extend(ids.iter().map(|&id| Sighting {
            id: u32::try_from(id).expect("id fits in u32"),
            action,
            late: false,
        }));
        start..log.len()
    }

    /// Marks the 2xx answer of the request logged at `i` as one the
    /// client never took.
    fn late(&self, i: Range<usize>) {
        for s in &mut self.lock()[i] {
            s.late = true;
        }
    }

    /// Settles a 2xx answer after the connection ended: the client took it
    /// unless the connection ended abnormally before the client stopped.
    fn settle(&self, i: Range<usize>, taken: bool) {
        if !taken && !self.client_stopping.load(Ordering::SeqCst) {
            self.late(i);
        }
    }
}

/// A prefix of `NO_CONTENT` that is not a complete head: at most all but
/// its last byte, at least `min` bytes.
fn partial_head(rng: &mut fastrand::Rng, min: usize) -> &'static [u8] {
    &NO_CONTENT[..rng.usize(min..NO_CONTENT.len())]
}

/// Answers `request` per `action`; false when the connection is done.
/// `i` is where the request is logged; `pending` is where a keep-alive
/// 2xx answer is, whose fate the next read decides.
fn answer(
    conn: &mut RawConn<'_>,
    rng: &mut fastrand::Rng,
    ledger: &Ledger,
    i: Range<usize>,
    action: Chaos,
    pending: &mut Option<Range<usize>>,
) -> bool {
    match action {
        Chaos::NoContent | Chaos::Ok => {
            let written = if action == Chaos::NoContent {
                conn.write(NO_CONTENT)
            } else {
                conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            };
            if !written {
                ledger.settle(i, false);
                return false;
            }
            *pending = Some(i);
            true
        }
        Chaos::ServerError => {
            let status = match rng.u8(0..3) {
                0 => "500 Internal Server Error",
                1 => "502 Bad Gateway",
                _ => "503 Service Unavailable",
            };
            conn.write(format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\nchaos").as_bytes())
        }
        Chaos::Reset => {
            // The request was only peeked: dropping the socket resets it.
            if conn.write(partial_head(rng, 0)) {
                conn.pause(Duration::from_micros(rng.u64(0..1_000)));
            }
            false
        }
        Chaos::Stall => {
            conn.wait_closed(None);
            false
        }
        Chaos::TruncatedHead => {
            if conn.write(partial_head(rng, 1)) {
                conn.close();
            }
            false
        }
        Chaos::NoAnswer => {
            conn.close();
            false
        }
        Chaos::TruncatedBody | Chaos::CloseIdle | Chaos::Stray408 => {
            // A client that closed its end before the answer was written had
            // given up on it (timed out). Its end of stream may then be read
            // before the reset our bytes cause, so it is looked for first.
            let given_up = conn.client_gone();
            let written = match action {
                Chaos::TruncatedBody => {
                    conn.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part")
                }
                _ => conn.write(NO_CONTENT),
            };
            let written = written
                && match action {
                    Chaos::TruncatedBody => true,
                    _ => {
                        conn.pause(Duration::from_micros(rng.u64(0..2_000)));
                        action == Chaos::CloseIdle
                            || conn.write(
                                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\
                                  Content-Length: 0\r\n\r\n",
                            )
                    }
                };
            // A client that took the answer reads all we sent and closes
            // cleanly; one that gave up while it was on its way closes with
            // it unread, which resets the connection.
            let taken = !given_up && written && conn.close() != support::Ending::Reset;
            ledger.settle(i, taken);
            false
        }
    }
}

/// The ids a request's body carries.
type IdsOf = fn(&[u8]) -> Vec<usize>;

/// The one id of an unbatched body.
fn single_id(body: &[u8]) -> Vec<usize> {
    vec![id_of(body)]
}

/// The ids of an NDJSON body, one per line.
fn ndjson_ids(body: &[u8]) -> Vec<usize> {
    let lines = body
        .strip_suffix(b"\n")
        .unwrap_or_else(|| panic!("not NDJSON: {:?}", body.escape_ascii().to_string()));
    lines.split(|&b| b == b'\n').map(id_of).collect()
}

/// The scripted chaos server. `extra_stalls`, in 10,000ths, stalls that
/// many requests more than [`Chaos::draw`] does; with none, no draw is
/// added, and a seed gives the same actions as it always did.
fn chaos_server(seed: u64, ledger: Arc<Ledger>, ids_of: IdsOf, extra_stalls: u32) -> Server {
    Server::start_raw(move |mut conn: RawConn<'_>| {
        ledger.connections.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(
            seed ^ (conn.index() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut pending = None;
        loop {
            let action = if extra_stalls > 0 && rng.u32(0..10_000) < extra_stalls {
                Chaos::Stall
            } else {
                Chaos::draw(&mut rng)
            };
            let next = if action == Chaos::Reset {
                conn.peek_request()
            } else {
                conn.next_request()
            };
            let Some((request, _)) = next else {
                // The connection ended before another request: a
                // keep-alive 2xx before it was not taken, unless the
                // client was stopping (or the server).
                if let Some(i) = pending {
                    ledger.settle(i, conn.stopping());
                }
                return;
            };
            pending = None;
            let i = ledger.saw(&ids_of(&request.body), action);
            if !answer(&mut conn, &mut rng, &ledger, i, action, &mut pending) {
                return;
            }
        }
    })
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} does not parse")),
        Err(_) => default,
    }
}

#[test]
fn chaos() {
    let _alone = alone();
    run("chaos", DEFAULT_MESSAGES, None, None);
}

#[test]
fn chaos_with_batches() {
    let _alone = alone();
    // Batches of at most 25, so that the server's draws still number
    // thousands: unbounded, they hold hundreds each under this load.
    run(
        "chaos with batches",
        DEFAULT_BATCHED_MESSAGES,
        Some(BatchConfig::ndjson().max_messages(BATCH_MESSAGES)),
        None,
    );
}

#[test]
fn chaos_with_ttl() {
    let _alone = alone();
    run(
        "chaos with a TTL",
        DEFAULT_TTL_MESSAGES,
        Some(BatchConfig::ndjson().max_messages(BATCH_MESSAGES)),
        Some(TTL),
    );
}

/// Runs the scenario: `default` messages unless the environment says
/// otherwise, batched as `batch` says, each with `ttl` to be delivered.
fn run(name: &str, default: usize, batch: Option<BatchConfig>, ttl: Option<Duration>) {
    let n: usize = env_or("NOTIFIER_CHAOS_MESSAGES", default);
    let seed: u64 = env_or("NOTIFIER_CHAOS_SEED", DEFAULT_SEED);
    let ledger = Arc::new(Ledger::default());
    let ids_of: IdsOf = if batch.is_some() {
        ndjson_ids
    } else {
        single_id
    };
    // With a TTL, stalls are what makes messages expire: a stalled
    // request waits out the timeout (two thirds of the TTL), and holds its
    // slot while the queue waits behind it. 5% of requests stall.
    let extra_stalls = if ttl.is_some() { 500 } else { 0 };
    let server = chaos_server(seed, Arc::clone(&ledger), ids_of, extra_stalls);
    let retry = RetryConfig::default()
        .max_attempts(MAX_ATTEMPTS)
        .initial_backoff(Duration::from_millis(1))
        .max_backoff(Duration::from_millis(20));
    let mut builder = Client::builder(&server.url())
        .workers(WORKERS)
        .timeout(TIMEOUT)
        .idle_timeout(Duration::from_secs(3_600))
        .retry(retry);
    if let Some(batch) = batch {
        builder = builder.batch(batch);
    }
    if let Some(ttl) = ttl {
        builder = builder.message_ttl(ttl);
    }
    let (client, failures) = started(builder);

    let begun = Instant::now();
    for i in 0..n {
        notify_retrying(&client, msg(i));
    }
    let flushed = client.flush(Duration::from_secs(120));
    ledger.client_stopping.store(true, Ordering::SeqCst);
    client.stop();
    let elapsed = begun.elapsed();
    drop(server);
    assert!(flushed, "not done within 120 s: {:?}", client.stats());

    let stats = client.stats();
    let failed = failures.take();
    let log = std::mem::take(&mut *ledger.lock());

    // What the server did, and what the handler got.
    let mut actions: HashMap<Chaos, usize> = HashMap::new();
    for s in &log {
        *actions.entry(s.action).or_default() += 1;
    }
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for f in &failed {
        let key = match f.error.status_code() {
            Some(status) => format!("{:?} {status}", f.error.kind()),
            None => format!("{:?}", f.error.kind()),
        };
        *kinds.entry(key).or_default() += 1;
    }

    // Per id: sightings, 2xx answers taken, 2xx answers given too late.
    let mut seen = vec![0u32; n];
    let mut taken = vec![0u32; n];
    let mut late = vec![0u32; n];
    for s in &log {
        let id = s.id as usize;
        assert!(id < n, "unexpected id {id}");
        seen[id] += 1;
        if s.action.answers_2xx() {
            if s.late {
                late[id] += 1;
            } else {
                taken[id] += 1;
            }
        }
    }
    let mut in_handler = vec![0u32; n];
    for f in &failed {
        in_handler[id_of(f.error.message())] += 1;
    }
    let duplicates: u64 = seen.iter().map(|&s| u64::from(s.saturating_sub(1))).sum();
    let ids_seen_twice = seen.iter().filter(|&&s| s > 1).count();
    let late_total: u32 = late.iter().sum();
    let expired: Vec<&support::Failure> = failed
        .iter()
        .filter(|f| f.error.kind() == FailureKind::Expired)
        .collect();
    let expired_unsent = expired.iter().filter(|f| f.error.attempts() == 0).count();

    let mut actions: Vec<_> = actions.into_iter().collect();
    actions.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    let requests = ledger.requests.load(Ordering::Relaxed);
    eprintln!(
        "{name}: {n} messages, seed {seed:#x}, {elapsed:.1?} ({:.0} msgs/s)\n  \
         server actions (per message): {actions:?}\n  \
         delivered {}, failed {} {kinds:?}, retried {}\n  \
         requests {requests} ({:.1} messages each; the client wrote {}), \
         duplicates {duplicates} ({ids_seen_twice} ids seen more than once), \
         2xx answers the client had given up on {late_total}, connections {}\n  \
         expired {} ({expired_unsent} before their first attempt)",
        n as f64 / elapsed.as_secs_f64(),
        stats.delivered,
        stats.failed,
        stats.retried,
        log.len() as f64 / requests.max(1) as f64,
        stats.requests,
        ledger.connections.load(Ordering::Relaxed),
        stats.expired,
    );

    // Every message ended exactly once.
    assert_each_ended(&stats, n, failed.len());

    // Each id either was answered with a 2xx the client took, once, or
    // went to the handler, once: never both, never neither.
    let mut wrong = Vec::new();
    for id in 0..n {
        let ok = match in_handler[id] {
            0 => taken[id] == 1,
            1 => taken[id] == 0,
            _ => false,
        };
        if !ok || seen[id] > MAX_ATTEMPTS {
            let sightings: Vec<_> = log.iter().filter(|s| s.id as usize == id).collect();
            wrong.push(format!(
                "id {id}: handler {}, sightings {sightings:?}",
                in_handler[id]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} ids ended wrongly, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        stats.delivered,
        taken.iter().map(|&t| u64::from(t)).sum::<u64>(),
        "{stats:?}"
    );
    // Every repeat at the server is a retry the client counted.
    assert!(
        duplicates <= stats.retried,
        "{duplicates} duplicates, {stats:?}"
    );

    // Expired messages: counted, and only with a TTL. One that expired
    // before its first attempt never reached the server; one that expired
    // waiting for a retry had attempts left.
    assert_eq!(stats.expired, expired.len() as u64, "{stats:?}");
    assert!(ttl.is_some() || expired.is_empty(), "{stats:?}");
    for f in &expired {
        let error = &f.error;
        let id = id_of(error.message());
        assert!(error.attempts() < MAX_ATTEMPTS, "{error}");
        if error.attempts() == 0 {
            assert_eq!(seen[id], 0, "id {id} expired unsent, yet the server saw it");
            assert_eq!(error.batch_index(), None, "{error}");
        }
    }

    // Failures: retryable ones used up every attempt; the only others are
    // the server's stray 408 read as the answer to a request sent just
    // before, and (with a TTL) the expired.
    for f in &failed {
        let error = &f.error;
        match error.kind() {
            FailureKind::Expired => continue,
            FailureKind::Io | FailureKind::Timeout | FailureKind::Protocol => {}
            FailureKind::Status => assert!(
                matches!(error.status_code(), Some(408 | 500 | 502 | 503)),
                "{error}"
            ),
            _ => panic!("unexpected failure: {error}"),
        }
        if error.is_retryable() {
            assert_eq!(error.attempts(), MAX_ATTEMPTS, "{error}");
        } else {
            assert_eq!(error.status_code(), Some(408), "{error}");
        }
    }
}
