// SPDX-License-Identifier: GPL-2.0

//! A counted reference to an eventfd's context, signalled from any context (the queue's
//! completions, in the hard interrupt handler).
//!
//! 7.2 gap: `kernel::` has no eventfd. `eventfd_ctx_fdget`, `eventfd_signal_mask` and
//! `eventfd_ctx_put` are exported functions in the bindings; `eventfd_signal` is static inline,
//! but it is only `eventfd_signal_mask(ctx, 0)`, which this calls itself (no shim). Upstream
//! home: `kernel::eventfd::EventFdCtx`.

use core::ptr::NonNull;
use kernel::{
    bindings,
    error::from_err_ptr,
    prelude::*, //
};

/// A reference to an eventfd context, taken by [`EventFd::from_fd`] and released on drop.
///
/// # Invariants
///
/// `self.0` points to a live `struct eventfd_ctx` of which this value owns one reference.
pub(crate) struct EventFd(NonNull<bindings::eventfd_ctx>);

// SAFETY: an eventfd context is refcounted (`kref`) and its counter and wait queue are protected
// by its own lock, so the reference may be used and released on any thread.
unsafe impl Send for EventFd {}

// SAFETY: the only operation through a shared reference, `signal`, locks the context internally.
unsafe impl Sync for EventFd {}

impl EventFd {
    /// The eventfd open as `fd` in the current process: `EBADF` if no file is open there,
    /// `EINVAL` if the file is not an eventfd.
    pub(crate) fn from_fd(fd: i32) -> Result<Self> {
        // SAFETY: `eventfd_ctx_fdget` accepts any integer: it looks the number up in the current
        // task's file table and returns a new reference or an error pointer.
        let ctx = from_err_ptr(unsafe { bindings::eventfd_ctx_fdget(fd) })?;
        // INVARIANT: not an error pointer, so a context with a reference we now own.
        NonNull::new(ctx).map(Self).ok_or(EINVAL)
    }

    /// Adds 1 to the counter and wakes its readers and pollers. Callable in any context,
    /// including hard interrupt context with a spinlock held (it takes only the context's own
    /// irq-safe lock); not from one of the eventfd's own wakeup callbacks (the kernel warns and
    /// skips the increment then).
    pub(crate) fn signal(&self) {
        // SAFETY: `self.0` is a live context (type invariant); `eventfd_signal_mask` does not
        // sleep.
        unsafe { bindings::eventfd_signal_mask(self.0.as_ptr(), 0) }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: this value owns one reference to the context (type invariant), released once.
        unsafe { bindings::eventfd_ctx_put(self.0.as_ptr()) }
    }
}
