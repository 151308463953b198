//! What a producer does when the client under test answers "queue full":
//! the same for every client measured, and for
//! `benches/loopback.rs`, which includes this file.

use std::thread;
use std::time::Duration;

/// Waits before retrying a full queue: spins briefly, then yields, then
/// sleeps.
///
/// The sleep matters on a small machine: a producer that only spins or
/// yields keeps a whole core busy while the queue is full, a core the
/// client and the sink need. A queue of a thousand messages is milliseconds
/// of work, so a 50 µs nap never lets it run dry.
pub(crate) fn back_off(attempt: u32) {
    match attempt {
        0..=5 => {
            for _ in 0..1u32 << attempt {
                std::hint::spin_loop();
            }
        }
        6..=9 => thread::yield_now(),
        _ => thread::sleep(Duration::from_micros(50)),
    }
}
