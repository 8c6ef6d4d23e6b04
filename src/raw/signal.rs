// SPDX-License-Identifier: GPL-2.0

//! Why an interruptible wait ended: a real signal, or only task work.
//!
//! `signal_pending()` (what `CondVar`'s interruptible waits and `Task::signal_pending` test) is
//! also true while only `TIF_NOTIFY_SIGNAL` is set: task work queued with `TWA_SIGNAL`, as
//! io_uring queues its completions, io-wq worker creation and ring teardown (from a kworker).
//! No signal was sent, so such a wait must not end in `EINTR`: the kernel's convention is
//! `-ERESTARTSYS`, and the return to user mode runs the task work, finds no signal to deliver and
//! restarts the system call from its arguments (`arch_do_signal_or_restart`).
//!
//! 7.2 gap: `kernel::task::Task` has `signal_pending()` but no `task_sigpending()` (static inline,
//! no `rust/helpers` wrapper: the shim forwards it). Upstream home: `kernel::task`
//! (`Task::sigpending`).

use kernel::{
    bindings,
    prelude::*, //
};

// The shim (`shim.c`): `task_sigpending` is static inline. `improper_ctypes`: bindgen gives some
// members of `task_struct` zero-sized types, which only matters for by-value use; this takes a
// pointer.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_task_sigpending(p: *mut bindings::task_struct) -> c_int;
}

/// Whether the current task has a real signal pending (`TIF_SIGPENDING`), not only task work.
pub(crate) fn real_signal_pending() -> bool {
    let task = kernel::current!().as_ptr();
    // SAFETY: `task` is the current task, valid for the duration of the call; `task_sigpending`
    // only tests one of its thread flags.
    unsafe { edu_task_sigpending(task) != 0 }
}

/// The error of an interruptible wait that `signal_pending()` ended, to be returned by the system
/// call (ioctl, read, write) that waited:
///
/// - `EINTR` for a real signal (the documented errno: the driver does not restart after a
///   handler, `SA_RESTART` or not);
/// - `ERESTARTSYS` when only task work broke the wait: the return to user mode runs the work and,
///   with no signal to deliver, restarts the call unconditionally (it re-runs from its arguments,
///   so the caller must not have made visible progress it would lose or repeat wrongly). If a
///   signal arrives in between, the kernel turns it into `EINTR` for a handler without
///   `SA_RESTART`, into a restart otherwise; io_uring and aio turn it into `EINTR` for their
///   requests. It never reaches userspace; never store it (e.g. as a completion status).
pub(crate) fn interrupted() -> Error {
    if real_signal_pending() {
        EINTR
    } else {
        ERESTARTSYS
    }
}
