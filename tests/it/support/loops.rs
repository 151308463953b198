//! Client builds, one at a time, and a client's own event-loop threads.
//!
//! Every client names its loop threads `notifier-0`, `notifier-1`, and so
//! on, and spawns them when it is built: by name alone, a test cannot tell
//! its client's loops from those of the clients other tests build in the
//! same process at the same time. While every client is built through
//! [`build`] (as [`started`](super::started) does), no two builds overlap, so
//! the threads that appear during one build and take a loop's name are that
//! client's.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use notifier::{BuildError, Builder, Client};

use super::drive::wait_until;
use super::server::lock;

/// Held while a client is built.
static BUILDING: Mutex<()> = Mutex::new(());

/// How long a new thread may take to name itself.
const NAMING: Duration = Duration::from_secs(60);

/// Builds `builder`, never while another client is built through here.
pub(crate) fn build(builder: Builder) -> Result<Client, BuildError> {
    let _one_at_a_time = lock(&BUILDING);
    builder.build()
}

/// Builds `builder`, whose client has `loops` event loops, as [`build`]
/// does, and gives back the client and the procfs directory
/// (`/proc/self/task/TID`) of each of its loop threads, in loop order: the
/// threads that appeared during the build and named themselves
/// `notifier-{index}`. Linux only.
pub(crate) fn build_finding_loops(builder: Builder, loops: usize) -> (Client, Vec<PathBuf>) {
    let _one_at_a_time = lock(&BUILDING);
    let before = tasks();
    let client = builder.build().expect("build");
    let mut found = Vec::new();
    let named = wait_until(NAMING, || {
        found = new_loop_threads(&before, loops);
        found.iter().all(Option::is_some)
    });
    assert!(
        named,
        "the loop threads did not appear in /proc/self/task: {found:?}"
    );
    (client, found.into_iter().flatten().collect())
}

/// The thread ids in `/proc/self/task`.
fn tasks() -> HashSet<OsString> {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|task| Some(task.ok()?.file_name()))
        .collect()
}

/// For each of `loops` loop indexes, the task directory of the thread not
/// in `before` that is named for it, if one is yet. Panics on a second
/// thread of the same name, or on a loop name past `loops`: a client that
/// was built meanwhile, not through [`build`].
fn new_loop_threads(before: &HashSet<OsString>, loops: usize) -> Vec<Option<PathBuf>> {
    let mut found = vec![None; loops];
    for tid in tasks().difference(before) {
        let dir = PathBuf::from("/proc/self/task").join(tid);
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // it ended meanwhile
        };
        let Some(index) = comm.trim_end().strip_prefix("notifier-") else {
            continue;
        };
        let slot = index
            .parse::<usize>()
            .ok()
            .and_then(|i| found.get_mut(i))
            .unwrap_or_else(|| panic!("a new thread {comm:?} beside a client of {loops} loops"));
        assert!(
            slot.replace(dir).is_none(),
            "two new threads named {comm:?}: a client built beside this one"
        );
    }
    found
}
