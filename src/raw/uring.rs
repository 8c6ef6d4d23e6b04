// SPDX-License-Identifier: GPL-2.0

//! io_uring commands (`IORING_OP_URING_CMD`) issued to a file: the issue ([`Issue`], valid during
//! `file_operations.uring_cmd`), and the command a driver keeps until it ends ([`UringCmd`]),
//! completed through task work.
//!
//! The protocol (io_uring's, as nvme and ublk follow it): the issue either completes the command
//! or returns `-EIOCBQUEUED` and completes it later with `io_uring_cmd_done`, which must not run
//! in hard-IRQ context, so a driver that learns of the end in its interrupt handler queues task
//! work (`io_uring_cmd_complete_in_task`, callable from hard IRQ), whose callback (in the
//! submitter's task, or a kworker if it is exiting) computes the CQE's result and completes.
//! A cancelable command (every one taken with [`Issue::take`]) is offered to the driver again
//! with `IO_URING_F_CANCEL` when its ring is torn down or its task exits, until it completes: the
//! driver must end it (soon; this layer only reports the offer, [`Issue::is_cancel`]), and a
//! cancel may come again for the same command, or race with its normal end.
//!
//! 7.2 gap: `kernel::` has no io_uring command API, the Rust misc vtable no `uring_cmd`, and the
//! bindings do not include `<linux/io_uring/cmd.h>` (`struct io_uring_cmd` is opaque): every
//! access goes through the shim (`shim.c`), including the task-work callback (a C trampoline,
//! its type takes structs by value). Upstream home: `kernel::io_uring::Cmd`, and a `uring_cmd`
//! method of the `MiscDevice` vtable.

use core::{
    ffi::c_void,
    marker::PhantomData,
    mem::MaybeUninit,
    ptr::NonNull, //
};
use kernel::{
    bindings,
    error::to_result,
    prelude::*,
    transmute::FromBytes, //
};

/// The driver's task-work function: returns the CQE's result of the command (`-errno` or a
/// count) and stores its second result word at `res2` (posted in `big_cqe[0]` when the ring has
/// 32-byte CQEs, `IORING_SETUP_CQE32`; dropped otherwise).
pub(crate) type TaskFn =
    unsafe extern "C" fn(cmd: *mut bindings::io_uring_cmd, res2: *mut u64) -> c_int;

/// What a command's CQE reports.
pub(crate) struct Completion {
    /// `res`: `-errno` or a count.
    pub(crate) res: i32,
    /// `big_cqe[0]` of a 32-byte CQE.
    pub(crate) res2: u64,
}

// The shim (`shim.c`); see the module comment. `improper_ctypes`: bindgen gives some members of
// `struct file` zero-sized types, which only matters for by-value use; these take pointers.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_uring_cmd_op(cmd: *const bindings::io_uring_cmd) -> c_uint;
    fn edu_uring_cmd_file(cmd: *const bindings::io_uring_cmd) -> *mut bindings::file;
    fn edu_uring_cmd_read_sqe128(
        cmd: *const bindings::io_uring_cmd,
        dst: *mut c_void,
        len: usize,
        issue_flags: c_uint,
    ) -> c_int;
    fn edu_uring_cmd_set_tag(cmd: *mut bindings::io_uring_cmd, tag: u64);
    fn edu_uring_cmd_tag(cmd: *mut bindings::io_uring_cmd) -> u64;
    fn edu_uring_cmd_mark_cancelable(cmd: *mut bindings::io_uring_cmd, issue_flags: c_uint);
    fn edu_uring_cmd_done(cmd: *mut bindings::io_uring_cmd, ret: c_int, issue_flags: c_uint);
    fn edu_uring_cmd_complete_in_task(cmd: *mut bindings::io_uring_cmd, task: TaskFn);
}

/// `IO_URING_F_CANCEL` (checked against the kernel's enum in `shim.c`).
const F_CANCEL: u32 = 1 << 11;

/// `-EIOCBQUEUED`: the issue's return value for a command the driver completes itself.
pub(crate) const QUEUED: c_int = -(bindings::EIOCBQUEUED as c_int);

/// One call of `file_operations.uring_cmd`.
///
/// # Invariants
///
/// `cmd` is the command being issued, with the issue flags `flags`, for the lifetime `'a` (the
/// call).
pub(crate) struct Issue<'a> {
    cmd: NonNull<bindings::io_uring_cmd>,
    flags: u32,
    _call: PhantomData<&'a ()>,
}

impl Issue<'_> {
    /// # Safety
    ///
    /// `cmd` is a command io_uring is issuing to the caller with `flags`, valid until the issue
    /// returns, which the returned value must not outlive.
    pub(crate) unsafe fn new(cmd: *mut bindings::io_uring_cmd, flags: c_uint) -> Option<Self> {
        // INVARIANT: the caller's requirement.
        NonNull::new(cmd).map(|cmd| Self {
            cmd,
            flags,
            _call: PhantomData,
        })
    }

    /// The file the command was issued to (held by the command until it completes).
    pub(crate) fn file(&self) -> *mut bindings::file {
        // SAFETY: `cmd` is valid during the issue (type invariant).
        unsafe { edu_uring_cmd_file(self.cmd.as_ptr()) }
    }

    /// The SQE's `cmd_op`.
    pub(crate) fn op(&self) -> u32 {
        // SAFETY: `cmd` is valid during the issue (type invariant).
        unsafe { edu_uring_cmd_op(self.cmd.as_ptr()) }
    }

    /// Whether this is io_uring's cancellation of a command the driver took ([`Issue::take`])
    /// and has not completed, not an issue.
    pub(crate) fn is_cancel(&self) -> bool {
        self.flags & F_CANCEL != 0
    }

    /// The tag the driver gave the command ([`UringCmd::set_tag`]; 0 until then).
    pub(crate) fn tag(&self) -> u64 {
        // SAFETY: `cmd` is valid during the issue (type invariant).
        unsafe { edu_uring_cmd_tag(self.cmd.as_ptr()) }
    }

    /// The SQE's command area as a `T`, copied once: `EINVAL` unless the SQE is a 128-byte one
    /// (`IORING_SETUP_SQE128` or `IORING_OP_URING_CMD128`) and `T` fits its 80 bytes.
    pub(crate) fn read_sqe128<T: FromBytes>(&self) -> Result<T> {
        let mut v = MaybeUninit::<T>::uninit();
        // SAFETY: `cmd` is valid during the issue (type invariant); `v` is writable for
        // `size_of::<T>()` bytes.
        to_result(unsafe {
            edu_uring_cmd_read_sqe128(
                self.cmd.as_ptr(),
                v.as_mut_ptr().cast(),
                size_of::<T>(),
                self.flags,
            )
        })?;
        // SAFETY: the shim wrote all `size_of::<T>()` bytes, and every bit pattern is a valid
        // `T` (`FromBytes`).
        Ok(unsafe { v.assume_init() })
    }

    /// The driver takes the command: tag 0, cancelable from now on; `task` is the task-work
    /// function [`UringCmd::complete_in_task`] will run. Call it at most once per issue, and
    /// complete what it returns exactly once: [`Issue::fail`] or [`UringCmd::complete_in_task`].
    ///
    /// # Safety
    ///
    /// `task` may be called with this command from task work until the command completes.
    pub(crate) unsafe fn take(&self, task: TaskFn) -> UringCmd {
        let cmd = self.cmd.as_ptr();
        // SAFETY: `cmd` is valid during the issue (type invariant); the tag is set before the
        // command can be offered for cancellation, and the issue flags are this issue's.
        unsafe {
            edu_uring_cmd_set_tag(cmd, 0);
            edu_uring_cmd_mark_cancelable(cmd, self.flags);
        }
        // INVARIANT: taken once, during the issue.
        UringCmd {
            cmd: self.cmd,
            task,
        }
    }

    /// Completes the command taken from this issue now, with `err` as its CQE result.
    pub(crate) fn fail(&self, taken: UringCmd, err: Error) {
        // SAFETY: `taken` is this issue's command (`take`'s contract), not completed yet (it is
        // consumed here); the issue flags are this issue's.
        unsafe { edu_uring_cmd_done(taken.cmd.as_ptr(), err.to_errno(), self.flags) };
    }
}

/// A command the driver took and has not completed.
///
/// # Invariants
///
/// `cmd` is a command io_uring issued and that is not completed; its task-work function is
/// `task`; exactly one `UringCmd` exists for it.
pub(crate) struct UringCmd {
    cmd: NonNull<bindings::io_uring_cmd>,
    task: TaskFn,
}

// SAFETY: a command may be completed from any thread (task work is queued from any context), and
// `set_tag` writes its own word with `WRITE_ONCE`.
unsafe impl Send for UringCmd {}

impl UringCmd {
    /// Gives the command the tag the driver finds it by (cancellation, task work). Call it
    /// before anything can end the command.
    pub(crate) fn set_tag(&self, tag: u64) {
        // SAFETY: `cmd` is not completed (type invariant).
        unsafe { edu_uring_cmd_set_tag(self.cmd.as_ptr(), tag) }
    }

    /// Ends the command: queues task work that runs the driver's task function, whose result is
    /// the CQE's. Callable in any context, hard IRQ and spinlocks included.
    pub(crate) fn complete_in_task(self) {
        // SAFETY: `cmd` is not completed and is consumed here, so completed once (type
        // invariant); `task` is its task function.
        unsafe { edu_uring_cmd_complete_in_task(self.cmd.as_ptr(), self.task) }
    }
}

/// In the driver's task function: the file the command was issued to and the tag it was given.
///
/// # Safety
///
/// `cmd` is a command passed to a [`TaskFn`] by the task work of [`UringCmd::complete_in_task`].
pub(crate) unsafe fn task_args(cmd: *mut bindings::io_uring_cmd) -> (*mut bindings::file, u64) {
    // SAFETY: the caller's requirement: the command is valid until the trampoline completes it,
    // after the task function returned.
    unsafe { (edu_uring_cmd_file(cmd), edu_uring_cmd_tag(cmd)) }
}
