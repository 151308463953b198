//! The knobs for latency: `notify` wakes a loop only when one is parked
//! and none watches the queue, `adaptive_spin` keeps one loop watching
//! while messages keep coming, `spin` keeps loops from parking,
//! `pin_threads` pins them to cores, `batch_scheduling` keeps woken loops
//! from preempting their callers.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use notifier::{Builder, Client};

use crate::support::{
    assert_all_delivered, build_finding_loops, msg, notify_all, recording, started, wait_until,
    Action, Server,
};

const LONG: Duration = Duration::from_secs(60);

/// Sends `n` messages one at a time, each after the previous one was
/// delivered and a short pause, so a loop that parks when idle is parked
/// at every `notify`.
fn send_paced(client: &Client, n: usize) {
    for i in 0..n {
        client.notify(msg(i)).expect("notify");
        assert!(client.flush(LONG), "flush timed out");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn busy_loops_are_not_woken() {
    const N: usize = 20_000;
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()));
    notify_all(&client, 0..N);
    client.stop();
    let wakeups = client.stats().wakeups;
    assert_all_delivered(&client, &failures, &server, N);
    assert!(
        wakeups <= (N / 10) as u64,
        "{wakeups} wake-ups for {N} back-to-back messages: notify woke busy loops"
    );
}

#[test]
fn parked_loops_are_woken_once_per_idle_notify() {
    const N: usize = 50;
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .threads(1)
            .adaptive_spin(false),
    );
    send_paced(&client, N);
    client.stop();
    let wakeups = client.stats().wakeups;
    assert_all_delivered(&client, &failures, &server, N);
    assert!(
        wakeups >= (N / 2) as u64 && wakeups <= N as u64,
        "{wakeups} wake-ups for {N} messages sent to an idle loop"
    );
}

#[test]
fn a_loop_that_saw_recent_arrivals_watches_so_notify_needs_no_wake_up() {
    const N: usize = 50;
    let server = Server::no_content();
    let (client, failures) = started(Client::builder(&server.url()).threads(2));
    send_paced(&client, N);
    client.stop();
    let wakeups = client.stats().wakeups;
    assert_all_delivered(&client, &failures, &server, N);
    // The first notify finds every loop parked; after it one loop watches
    // through gaps of a millisecond or so (a loaded machine may stretch a
    // few past the watch).
    assert!(
        wakeups <= (N / 5) as u64,
        "{wakeups} wake-ups for {N} messages a millisecond apart"
    );
}

#[test]
fn a_watching_loop_that_turns_busy_leaves_what_is_queued_to_a_parked_one() {
    // One slot per loop; the second request is answered only once the
    // third arrived, which takes the other loop. The producer, seeing a
    // loop watch, may not wake it: the watcher must, once its only slot
    // is busy.
    let arrived = Arc::new(AtomicUsize::new(0));
    let server = {
        let arrived = Arc::clone(&arrived);
        Server::start(move |_, _| {
            if arrived.fetch_add(1, Ordering::SeqCst) == 1 {
                wait_until(LONG, || arrived.load(Ordering::SeqCst) >= 3);
            }
            Action::no_content()
        })
    };
    let (client, failures) = started(Client::builder(&server.url()).workers(2).threads(2));
    client.notify(msg(0)).expect("notify");
    assert!(client.flush(LONG), "the first message was not delivered");
    client.notify(msg(1)).expect("notify");
    client.notify(msg(2)).expect("notify");
    assert!(
        client.flush(Duration::from_secs(20)),
        "the message queued behind the watcher's was left waiting"
    );
    client.stop();
    assert_all_delivered(&client, &failures, &server, 3);
}

#[test]
fn spinning_loops_need_no_wake_ups() {
    const N: usize = 50;
    let server = Server::no_content();
    let (client, failures) = started(
        Client::builder(&server.url())
            .threads(1)
            .adaptive_spin(false)
            .spin(Duration::from_secs(30)),
    );
    send_paced(&client, N);
    client.stop();
    let wakeups = client.stats().wakeups;
    assert_all_delivered(&client, &failures, &server, N);
    // Only the first notify can find the loop parked (before its first
    // message it has never been busy).
    assert!(wakeups <= 1, "{wakeups} wake-ups while the loop spins");
}

/// The CPUs the thread whose procfs directory is `task` may run on.
fn cpus_allowed(task: &Path) -> Option<String> {
    std::fs::read_to_string(task.join("status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
}

/// The scheduling policy of the thread whose procfs directory is `task`:
/// field 41 of its `stat`, counted after the parenthesised command name
/// (which may hold spaces) as field 2.
fn policy(task: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(41 - 3)?.parse().ok()
}

/// Runs `builder`'s client with `loops` event loops and one slot each,
/// reads `what` of its last loop's thread with `read` while the client
/// runs, then checks that 100 messages were delivered. The thread is found
/// as the one its build added (see [`build_finding_loops`]): other tests'
/// clients name their loops alike.
fn read_last_loop<T>(
    builder: Builder,
    server: &Server,
    loops: usize,
    what: &str,
    read: impl Fn(&Path) -> Option<T>,
) -> T {
    let (builder, failures) = recording(builder.workers(loops).threads(loops));
    let (client, threads) = build_finding_loops(builder, loops);
    client.start();
    notify_all(&client, 0..100);
    assert!(client.flush(LONG));
    let last = &threads[loops - 1];
    let value = read(last).unwrap_or_else(|| {
        panic!(
            "no {what} for loop thread notifier-{} in {}",
            loops - 1,
            last.display()
        )
    });
    client.stop();
    assert_all_delivered(&client, &failures, server, 100);
    value
}

#[test]
fn pinned_loops_run_on_one_core_each() {
    if !cfg!(target_os = "linux") {
        return;
    }
    let server = Server::no_content();
    let builder = Client::builder(&server.url()).pin_threads(true);
    let allowed = read_last_loop(builder, &server, 3, "allowed CPUs", cpus_allowed);
    assert!(
        allowed.parse::<usize>().is_ok(),
        "a pinned loop may run on {allowed:?}, not on one core"
    );
}

#[test]
fn loops_run_under_sched_batch_unless_turned_off() {
    if !cfg!(target_os = "linux") {
        return;
    }
    const SCHED_OTHER: u32 = 0;
    const SCHED_BATCH: u32 = 3;
    for (on, expected) in [(None, SCHED_BATCH), (Some(false), SCHED_OTHER)] {
        let server = Server::no_content();
        let mut builder = Client::builder(&server.url());
        if let Some(on) = on {
            builder = builder.batch_scheduling(on);
        }
        let policy = read_last_loop(builder, &server, 4, "policy", policy);
        assert_eq!(
            policy, expected,
            "batch_scheduling {on:?}: policy {policy}, expected {expected}"
        );
    }
}
