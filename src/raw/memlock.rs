// SPDX-License-Identifier: GPL-2.0

//! Long-term pinned memory charged to `RLIMIT_MEMLOCK`, the way RDMA does it (`ib_umem_get` in
//! `drivers/infiniband/core/umem.c`): the pages are added to the mm's `pinned_vm` (`VmPin` in
//! `/proc/<pid>/status`), and a total above the task's `RLIMIT_MEMLOCK` fails with `ENOMEM`
//! unless the task has `CAP_IPC_LOCK`. io_uring's fixed buffers charge the same counter (and the
//! user's `locked_vm`). `pinned_vm` is an `atomic64_t`: no mmap lock, so the charge can be
//! refunded from any context (unbind, a closing file's release), with the mm kept by `mmgrab`.
//!
//! 7.2 gap: `kernel::mm::Mm` exposes no counters and `kernel::task` no `rlimit()` (static inline
//! in C). Upstream home: `kernel::mm` (a pinned-vm charge) and `kernel::task` (`rlimit`).

use kernel::{
    bindings,
    mm::Mm,
    page::PAGE_SHIFT,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
    },
};

use super::cred;

/// `RLIMIT_MEMLOCK` of the current task, in pages (`rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT`).
fn memlock_limit_pages() -> usize {
    let task = kernel::current!().as_ptr();
    // SAFETY: `current`'s `signal` is valid and never changes while the task runs; the limit is
    // read with a relaxed atomic load, which is what `rlimit()`'s `READ_ONCE` does (writers,
    // `setrlimit`, store it under the task lock; a racing reader sees the old or the new value).
    let limit = unsafe {
        let rlim = &raw mut (*(*task).signal).rlim[bindings::RLIMIT_MEMLOCK as usize].rlim_cur;
        Atomic::<usize>::from_ptr(rlim).load(Relaxed)
    };
    limit >> PAGE_SHIFT
}

/// `mm->pinned_vm`.
fn pinned_vm(mm: &Mm) -> &Atomic<i64> {
    // SAFETY: `mm` is a valid `mm_struct` for the borrow; `pinned_vm` is an `atomic64_t` (whose
    // only field is its counter) that the kernel only accesses atomically.
    unsafe { Atomic::from_ptr(&raw mut (*mm.as_raw()).__bindgen_anon_1.pinned_vm.counter) }
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
        let task = kernel::current!();
        let mm: ARef<Mm> = ARef::from(&**task.mm().ok_or(EFAULT)?);
        let n = i64::try_from(pages).map_err(|_| ENOMEM)?;
        let limit = i64::try_from(memlock_limit_pages()).unwrap_or(i64::MAX);
        let counter = pinned_vm(&mm);
        let total = counter.fetch_add(n, Full).saturating_add(n);
        // As `ib_umem_get`: add first, check, undo.
        if total > limit && !cred::capable_ipc_lock() {
            counter.fetch_sub(n, Full);
            return Err(ENOMEM);
        }
        Ok(Self { mm, pages: n })
    }
}

impl Drop for PinnedCharge {
    fn drop(&mut self) {
        pinned_vm(&self.mm).fetch_sub(self.pages, Full);
    }
}
