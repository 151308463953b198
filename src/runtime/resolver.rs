//! Name resolution off the event loops: the endpoint's address list,
//! shared by the loops, and for a host name the thread that looks it up,
//! keeps the list and refreshes it when the schedule in
//! [`policy::refresh`](crate::policy::refresh) says so.
//!
//! A slot that opens a connection takes the list as it is (one lock, only
//! on new connections; none at all for an IP literal, whose one address
//! is fixed at build time). When there is no list yet it gets a
//! [`Ticket`] and waits in its own state: the thread publishes every
//! lookup's outcome, bumps [`Resolver::published`] and wakes the loops,
//! which then let their waiting slots look again. A lookup that fails
//! keeps the list there was; with no list, it answers the tickets that
//! waited for it with its error.
//!
//! The thread ends when the client stops. A lookup cannot be interrupted:
//! one under way then is left to finish (nothing waits for it) and the
//! thread ends after it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::config::Config;
use crate::endpoint::{Endpoint, Host};
use crate::policy::eyeballs::interleave;
use crate::policy::refresh::{Due, Refresh};
use crate::trace::{log_debug, log_warn};

/// The most addresses of a lookup that connections try; the rest are
/// dropped. It bounds the sockets one connection races.
pub(crate) const MAX_ADDRESSES: usize = 64;

/// What a lookup gives: the addresses, in the resolver's order.
type Found = io::Result<Vec<SocketAddr>>;

/// Where a slot's wait for an address stands: the number of the lookup
/// whose outcome answers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

/// The outcome a waiting slot finds.
#[derive(Debug)]
pub(crate) enum Answer {
    Ready(Arc<[SocketAddr]>),
    /// The lookup that answers the ticket failed, and there is no list.
    Failed(Arc<io::Error>),
    Pending,
}

/// The endpoint's addresses, as the loops see them.
#[derive(Debug)]
pub(crate) struct Resolver {
    /// An IP literal's address: no lookup, no lock.
    fixed: Option<Arc<[SocketAddr]>>,
    state: Mutex<State>,
    /// Wakes the thread: something asked, or the client started or stopped.
    asked: Condvar,
    /// Lookups whose outcome was published.
    published: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// The last list found, families interleaved; kept when later lookups
    /// fail.
    addrs: Option<Arc<[SocketAddr]>>,
    /// The last lookup's error, while there is no list: its number and
    /// the error.
    error: Option<(u64, Arc<io::Error>)>,
    /// Lookups begun; the one under way, if any, is the last.
    begun: u64,
    refresh: Refresh,
    started: bool,
    stopped: bool,
}

impl Resolver {
    /// The endpoint's resolver: fixed for an IP literal; for a host name
    /// it has no list until its thread ([`spawn`]) finds one.
    pub(crate) fn new(config: &Config) -> Resolver {
        let fixed = match config.endpoint.host {
            Host::Ip(ip) => Some(Arc::from([SocketAddr::new(ip, config.endpoint.port)])),
            Host::Name(_) => None,
        };
        Resolver {
            fixed,
            state: Mutex::new(State {
                addrs: None,
                error: None,
                begun: 0,
                refresh: Refresh::new(config.dns_refresh),
                started: false,
                stopped: false,
            }),
            asked: Condvar::new(),
            published: AtomicU64::new(0),
        }
    }

    /// Whether it needs a thread: the host is a name.
    pub(crate) fn needs_thread(&self) -> bool {
        self.fixed.is_none()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses to connect to, or, while there is none, the ticket
    /// to wait with (see [`Resolver::answer`]); the thread is asked for a
    /// lookup.
    pub(crate) fn addresses(&self) -> Result<Arc<[SocketAddr]>, Ticket> {
        if let Some(fixed) = &self.fixed {
            return Ok(Arc::clone(fixed));
        }
        let mut state = self.lock();
        if let Some(addrs) = &state.addrs {
            return Ok(Arc::clone(addrs));
        }
        state.refresh.want();
        let answering = if state.refresh.resolving() {
            state.begun
        } else {
            state.begun + 1
        };
        self.asked.notify_one();
        Err(Ticket(answering))
    }

    /// What a slot waiting with `ticket` finds now.
    pub(crate) fn answer(&self, ticket: Ticket) -> Answer {
        let state = self.lock();
        match (&state.addrs, &state.error) {
            (Some(addrs), _) => Answer::Ready(Arc::clone(addrs)),
            (None, Some((number, error))) if *number >= ticket.0 => {
                Answer::Failed(Arc::clone(error))
            }
            (None, _) => Answer::Pending,
        }
    }

    /// How many lookups' outcomes were published: when it changes, slots
    /// waiting for an address look again.
    pub(crate) fn published(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// A connection to the listed addresses failed: the list may be
    /// stale, and is looked up again soon.
    pub(crate) fn connect_failed(&self) {
        if self.fixed.is_some() {
            return;
        }
        self.lock().refresh.connect_failed();
        self.asked.notify_one();
    }

    /// The client started: the first lookup may begin.
    pub(crate) fn start(&self) {
        self.lock().started = true;
        self.asked.notify_one();
    }

    /// The client stopped: the thread ends (after the lookup under way,
    /// if any).
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.asked.notify_one();
    }

    /// The thread's work: waits for what the schedule says is due, looks
    /// the name up with `lookup`, publishes the outcome and calls
    /// `published`, until the client stops.
    fn run(&self, lookup: impl Fn() -> Found, published: impl Fn()) {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return;
            }
            let now = Instant::now();
            let due = if state.started {
                state.refresh.due(now)
            } else {
                Due::Idle
            };
            state = match due {
                Due::Idle => self.asked.wait(state).unwrap_or_else(|e| e.into_inner()),
                Due::At(at) => {
                    self.asked
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                Due::Now => {
                    state.refresh.began(now);
                    state.begun += 1;
                    let number = state.begun;
                    drop(state);
                    let found = lookup();
                    let mut state = self.lock();
                    if state.stopped {
                        return;
                    }
                    state.publish(number, found);
                    drop(state);
                    self.published.fetch_add(1, Ordering::Release);
                    published();
                    self.lock()
                }
            };
        }
    }
}

impl State {
    /// Books lookup `number`'s outcome.
    fn publish(&mut self, number: u64, found: Found) {
        let found = found.and_then(|addrs| {
            if addrs.is_empty() {
                Err(io::Error::new(io::ErrorKind::NotFound, "no address found"))
            } else {
                Ok(addrs)
            }
        });
        self.refresh.ended(Instant::now(), found.is_ok());
        match found {
            Ok(mut addrs) => {
                log_debug!(addresses = ?addrs, "host name looked up");
                addrs.truncate(MAX_ADDRESSES);
                self.addrs = Some(interleave(&addrs).into());
                self.error = None;
            }
            Err(e) => {
                log_warn!(error = %e, listed = self.addrs.is_some(), "host name lookup failed");
                if self.addrs.is_none() {
                    self.error = Some((number, Arc::new(e)));
                }
            }
        }
    }
}

/// Spawns the thread of `resolver`, which looks `endpoint`'s host name up
/// (with `config`'s test hook in place of the system when set) and calls
/// `published` after each outcome it publishes.
pub(crate) fn spawn(
    resolver: Arc<Resolver>,
    config: &Config,
    published: impl Fn() + Send + 'static,
) -> io::Result<()> {
    let endpoint: Endpoint = config.endpoint.clone();
    #[cfg(test)]
    let hook = config.lookup.clone();
    let lookup = move || -> Found {
        #[cfg(test)]
        if let (Some(hook), Host::Name(name)) = (&hook, &endpoint.host) {
            return hook(name, endpoint.port);
        }
        endpoint.resolve()
    };
    std::thread::Builder::new()
        .name("notifier/dns".into())
        .spawn(move || resolver.run(lookup, published))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::time::Duration;

    use super::*;
    use crate::Client;

    const LONG: Duration = Duration::from_secs(30);

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    /// A resolver for `url` whose lookups are answered by `lookup`, its
    /// thread running, started; `published` gets a message per outcome.
    fn resolver(
        url: &str,
        lookup: impl Fn() -> Found + Send + Sync + 'static,
    ) -> (Arc<Resolver>, mpsc::Receiver<()>) {
        let mut config = Client::builder(url).into_config().expect("config");
        config.lookup = Some(Arc::new(move |_: &str, _: u16| lookup()));
        let resolver = Arc::new(Resolver::new(&config));
        let (tx, rx) = mpsc::channel();
        spawn(Arc::clone(&resolver), &config, move || {
            let _ = tx.send(());
        })
        .expect("spawn");
        resolver.start();
        (resolver, rx)
    }

    fn ready(answer: Answer) -> Vec<SocketAddr> {
        match answer {
            Answer::Ready(addrs) => addrs.to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_ip_literal_needs_no_lookup_and_no_thread() {
        let config = Client::builder("http://[::1]:9/")
            .into_config()
            .expect("config");
        let resolver = Resolver::new(&config);
        assert!(!resolver.needs_thread());
        assert_eq!(
            resolver.addresses().expect("fixed").to_vec(),
            [addr("[::1]:9")]
        );
    }

    #[test]
    fn a_waiting_slot_gets_the_list_once_published_families_interleaved() {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let (resolver, published) = resolver("http://eyeballs.test:80/", move || {
            let _ = gate.lock().expect("gate").recv();
            Ok(vec![
                addr("[::1]:80"),
                addr("[::2]:80"),
                addr("127.0.0.1:80"),
            ])
        });
        let ticket = resolver.addresses().expect_err("nothing yet");
        assert!(matches!(resolver.answer(ticket), Answer::Pending));
        release.send(()).expect("release");
        published.recv_timeout(LONG).expect("published");
        assert_eq!(resolver.published(), 1);
        assert_eq!(
            ready(resolver.answer(ticket)),
            [addr("[::1]:80"), addr("127.0.0.1:80"), addr("[::2]:80")]
        );
        resolver.stop();
    }

    #[test]
    fn a_failed_lookup_answers_who_waited_and_keeps_an_earlier_list() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let (resolver, published) = resolver("http://flaky.test/", move || {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Err(io::Error::new(io::ErrorKind::NotFound, "no such host")),
                1 => Ok(vec![addr("127.0.0.1:80")]),
                _ => Err(io::Error::other("resolver down")),
            }
        });
        published.recv_timeout(LONG).expect("the first lookup");
        // It failed: a slot asking now waits for the next lookup, which
        // the gap after a failure holds back; its answer is the list.
        let ticket = resolver.addresses().expect_err("no list");
        assert!(matches!(resolver.answer(ticket), Answer::Pending));
        published.recv_timeout(LONG).expect("the second lookup");
        assert_eq!(ready(resolver.answer(ticket)), [addr("127.0.0.1:80")]);
        // A connect failure asks for a refresh, which fails: the list stays.
        resolver.connect_failed();
        published.recv_timeout(LONG).expect("the third lookup");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            resolver.addresses().expect("kept").to_vec(),
            [addr("127.0.0.1:80")]
        );
        resolver.stop();
    }

    #[test]
    fn a_lookup_failure_without_a_list_fails_the_tickets_it_answers() {
        let (release, gate) = mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let (resolver, published) = resolver("http://nowhere.test/", move || {
            let _ = gate.lock().expect("gate").recv();
            Err(io::Error::new(io::ErrorKind::NotFound, "no such host"))
        });
        let ticket = resolver.addresses().expect_err("nothing yet");
        release.send(()).expect("release");
        published.recv_timeout(LONG).expect("published");
        match resolver.answer(ticket) {
            Answer::Failed(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
            other => panic!("{other:?}"),
        }
        // A slot that asks after that waits for the next lookup, not for
        // the old error.
        let later = resolver.addresses().expect_err("no list");
        assert!(matches!(resolver.answer(later), Answer::Pending));
        resolver.stop();
        drop(release);
    }

    #[test]
    fn the_thread_ends_at_stop_even_after_a_lookup_that_hung() {
        let (entered, inside) = mpsc::channel::<()>();
        let (release, gate) = mpsc::channel::<()>();
        let hook = Mutex::new((entered, gate));
        let (resolver, published) = resolver("http://hung.test/", move || {
            let hook = hook.lock().expect("hook");
            let _ = hook.0.send(());
            let _ = hook.1.recv();
            Ok(vec![addr("127.0.0.1:80")])
        });
        inside.recv_timeout(LONG).expect("the lookup began");
        let alive = Arc::downgrade(&resolver);
        resolver.stop();
        drop(resolver);
        // Stuck in the lookup: the thread still holds the resolver.
        assert!(alive.upgrade().is_some());
        release.send(()).expect("release");
        let ended = (0..LONG.as_millis()).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            alive.upgrade().is_none()
        });
        assert!(ended, "the thread still runs after its lookup returned");
        assert!(
            published.try_recv().is_err(),
            "nothing published after stop"
        );
    }
}
