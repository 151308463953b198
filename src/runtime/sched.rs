//! How an event-loop thread asks the operating system to schedule it.

/// Puts the calling thread under Linux's `SCHED_BATCH` policy: same share
/// of CPU as before, but no preemption of the running thread when it is
/// woken. Returns whether the kernel accepted; elsewhere than Linux it
/// does nothing and returns `false`.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn batch_current_thread() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is an initialised `sched_param` that outlives the
    // call, which only reads it. Pid 0 names the calling thread (Linux
    // schedules threads, not processes); the call changes that thread's
    // policy and no memory of this process. Priority 0 is the only one
    // SCHED_BATCH takes, and leaving SCHED_OTHER for it needs no privilege.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) == 0 }
}

/// Puts the calling thread under `SCHED_BATCH`: a no-op off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn batch_current_thread() -> bool {
    false
}

/// Sets the calling thread's timer slack to 1 ns (Linux), so its short
/// sleeps end when asked rather than up to 50 µs later; elsewhere nothing.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument and changes
    // only the calling thread's timer slack; no memory is passed.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// Sets the calling thread's timer slack: a no-op off Linux.
#[cfg(not(target_os = "linux"))]
pub(crate) fn fine_timer_slack() {}
