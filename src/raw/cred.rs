// SPDX-License-Identifier: GPL-2.0

//! Capability checks of the current task.
//!
//! 7.2 gap: `kernel::cred` wraps credentials but has no `capable()`. Upstream home:
//! `kernel::cred` (or `kernel::task`), as `capable(Capability)`.

use kernel::{
    bindings,
    prelude::*, //
};

/// Whether the current task has `CAP_SYS_ADMIN` (in the initial user namespace).
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only reads the current task's credentials, which are valid for the
    // duration of the call; it may be called from any process context.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}
