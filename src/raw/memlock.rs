// SPDX-License-Identifier: GPL-2.0

//! Long-term pinned memory charged to `RLIMIT_MEMLOCK`, the way RDMA does it (`ib_umem_get` in
//! `drivers/infiniband/core/umem.c`): the pages are added to the mm's `pinned_vm` (`VmPin` in
//! `/proc/<pid>/status`), and a total above the task's `RLIMIT_MEMLOCK` fails with `ENOMEM`
//! unless the task has `CAP_IPC_LOCK`. io_uring's fixed buffers charge the same counter (and the
//! user's `locked_vm`). `pinned_vm` is an `atomic64_t`: no mmap lock, so the charge can be
//! refunded from any context (unbind, a closing file's release), with the mm kept by `mmgrab`.
//! The counter and the limit are reached through the shim (static inlines in C).
//!
//! 7.2 gap: `kernel::mm::Mm` exposes no counters and `kernel::task` no `rlimit()` (static inline
//! in C). Upstream home: `kernel::mm` (a pinned-vm charge) and `kernel::task` (`rlimit`).

use kernel::{
    bindings,
    mm::Mm,
    page::PAGE_SHIFT,
    prelude::*,
    sync::aref::ARef, //
};

use super::cred;

// The shim (`shim.c`): `rlimit`, `atomic64_add_return` and `atomic64_sub` are static inline.
// `improper_ctypes`: bindgen gives `mm_struct` a zero-sized member, which only matters for
// by-value use; these take pointers.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_mm_pinned_vm_add_return(mm: *mut bindings::mm_struct, pages: i64) -> i64;
    fn edu_mm_pinned_vm_sub(mm: *mut bindings::mm_struct, pages: i64);
    fn edu_rlimit(limit: c_uint) -> c_ulong;
    fn edu_current_mm() -> *mut bindings::mm_struct;
}

/// `RLIMIT_MEMLOCK` of the current task, in pages.
fn memlock_limit_pages() -> u64 {
    // SAFETY: `rlimit` reads the current task's limits, valid in any process context.
    let bytes = unsafe { edu_rlimit(bindings::RLIMIT_MEMLOCK) };
    (bytes as u64) >> PAGE_SHIFT
}

/// Pages charged to an mm's `pinned_vm`; refunded on drop.
pub(crate) struct PinnedCharge {
    mm: ARef<Mm>,
    pages: i64,
}

impl PinnedCharge {
    /// Charges `pages` pages to the current task's mm. `ENOMEM`: the total would exceed the
    /// task's `RLIMIT_MEMLOCK` and it lacks `CAP_IPC_LOCK`; `EFAULT`: no mm (a kernel thread).
    pub(crate) fn charge(pages: usize) -> Result<Self> {
        // Through the shim, not `current!().mm()`: in this build bindgen's `task_struct` layout
        // puts `mm` 0x30 bytes before C's, so the kernel crate's `Task::mm` reads another field.
        // SAFETY: `current->mm` of the calling task, valid in any process context.
        let raw = unsafe { edu_current_mm() };
        if raw.is_null() {
            return Err(EFAULT);
        }
        // SAFETY: `raw` is the current task's mm, which lives (`mm_users` > 0) while the task runs
        // this call; `ARef::from` takes our own `mmgrab` reference before it returns.
        let mm: ARef<Mm> = ARef::from(unsafe { Mm::from_raw(raw) });
        let n = i64::try_from(pages).map_err(|_| ENOMEM)?;
        let limit = i64::try_from(memlock_limit_pages()).unwrap_or(i64::MAX);
        // SAFETY: `mm` is a valid mm (our `mmgrab` reference); the counter is atomic.
        let total = unsafe { edu_mm_pinned_vm_add_return(mm.as_raw(), n) };
        // As `ib_umem_get`: add first, check, undo.
        if total > limit && !cred::capable_ipc_lock() {
            // SAFETY: as above; takes back exactly what was added.
            unsafe { edu_mm_pinned_vm_sub(mm.as_raw(), n) };
            return Err(ENOMEM);
        }
        Ok(Self { mm, pages: n })
    }
}

impl Drop for PinnedCharge {
    fn drop(&mut self) {
        // SAFETY: `mm` is valid while `self.mm` holds its `mmgrab` reference; the charge is
        // refunded exactly once.
        unsafe { edu_mm_pinned_vm_sub(self.mm.as_raw(), self.pages) };
    }
}
