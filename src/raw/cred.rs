// SPDX-License-Identifier: GPL-2.0

//! Capability checks of the current task.
//!
//! 7.2 gap: `kernel::cred` wraps credentials but has no `capable()`. Upstream home:
//! `kernel::cred` (or `kernel::task`), as `capable(Capability)`.

use kernel::{
    bindings,
    prelude::*, //
};

/// Whether the current task has capability `cap` (in the initial user namespace).
fn capable(cap: u32) -> bool {
    // SAFETY: `capable` only reads the current task's credentials, which are valid for the
    // duration of the call; it may be called from any process context.
    unsafe { bindings::capable(cap as c_int) }
}

/// Whether the current task has `CAP_SYS_ADMIN` (in the initial user namespace).
pub(crate) fn capable_sys_admin() -> bool {
    capable(bindings::CAP_SYS_ADMIN)
}

/// Whether the current task has `CAP_IPC_LOCK`: it may lock (and pin) memory beyond its
/// `RLIMIT_MEMLOCK`.
pub(crate) fn capable_ipc_lock() -> bool {
    capable(bindings::CAP_IPC_LOCK)
}
