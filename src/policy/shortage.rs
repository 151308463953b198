//! When the machine, not the server, is short of something: a socket that
//! cannot be opened because the process is out of file descriptors
//! (`EMFILE`), the system is (`ENFILE`), the kernel is out of buffers or
//! memory (`ENOBUFS`, `ENOMEM`), or no ephemeral port is left for the
//! connection (`EADDRNOTAVAIL`).
//!
//! None of these says anything of the endpoint, and a connection already
//! open can still carry the message. So the slot that met one gives its
//! message back to its event loop, for a slot with a connection, without
//! counting an attempt or telling the circuit breaker, and rests for a
//! while before it tries to open a socket again: the client's concurrency
//! narrows to what the machine allows. The rest is a full-jitter backoff,
//! growing with the slot's consecutive shortages from [`FIRST_REST`] up to
//! [`LONGEST_REST`], so that slots that failed together do not all try
//! again together, and a slot that keeps failing costs one failed syscall
//! a second at most.

use std::io;
use std::time::Duration;

use crate::policy::RetryConfig;

/// The cap on a slot's first rest after a shortage.
pub(crate) const FIRST_REST: Duration = Duration::from_millis(10);

/// The cap on any rest, however many shortages in a row.
pub(crate) const LONGEST_REST: Duration = Duration::from_secs(1);

/// Whether opening a socket failed for a local reason (see the module's
/// documentation) rather than because of the endpoint or the network.
pub(crate) fn is_local(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    if let Some(errno) = e.raw_os_error() {
        return matches!(
            errno,
            libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL
        );
    }
    matches!(
        e.kind(),
        io::ErrorKind::OutOfMemory | io::ErrorKind::AddrNotAvailable
    )
}

/// How long a slot rests after its `shortages`-th local failure in a row
/// (from 1): a draw from `rng` in `0..=min(LONGEST_REST, FIRST_REST ·
/// 2^(shortages − 1))`.
pub(crate) fn rest(shortages: u32, rng: &mut fastrand::Rng) -> Duration {
    RetryConfig::default()
        .max_attempts(u32::MAX)
        .initial_backoff(FIRST_REST)
        .max_backoff(LONGEST_REST)
        .next_delay(shortages.clamp(1, u32::MAX - 1), None, rng)
        .unwrap_or(LONGEST_REST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_shortages_are_told_from_the_endpoints_failures() {
        let os = io::Error::from_raw_os_error;
        #[cfg(target_os = "linux")]
        for errno in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            assert!(is_local(&os(errno)), "{}", os(errno));
        }
        #[cfg(target_os = "linux")]
        for errno in [
            libc::ECONNREFUSED,
            libc::ENETUNREACH,
            libc::EHOSTUNREACH,
            libc::ETIMEDOUT,
            libc::EACCES,
        ] {
            assert!(!is_local(&os(errno)), "{}", os(errno));
        }
        assert!(is_local(&io::ErrorKind::AddrNotAvailable.into()));
        assert!(!is_local(&io::ErrorKind::ConnectionRefused.into()));
    }

    #[test]
    fn rests_grow_with_the_shortages_in_a_row_up_to_the_longest() {
        let mut rng = fastrand::Rng::with_seed(3);
        let caps = [
            (1, 10),
            (2, 20),
            (3, 40),
            (7, 640),
            (8, 1_000),
            (u32::MAX, 1_000),
        ];
        for (shortages, cap_ms) in caps {
            let cap = Duration::from_millis(cap_ms);
            let draws: Vec<Duration> = (0..2_000).map(|_| rest(shortages, &mut rng)).collect();
            let most = draws.iter().max().copied().unwrap_or_default();
            assert!(most <= cap, "{shortages}: {most:?} > {cap:?}");
            assert!(
                most > cap * 9 / 10,
                "{shortages}: jittered up to the cap, {most:?}"
            );
            let least = draws.iter().min().copied().unwrap_or_default();
            assert!(
                least < cap / 10,
                "{shortages}: jittered down to zero, {least:?}"
            );
        }
        // Zero is taken as the first.
        assert!(rest(0, &mut rng) <= FIRST_REST);
    }
}
