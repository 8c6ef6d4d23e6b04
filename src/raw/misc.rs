// SPDX-License-Identifier: GPL-2.0

//! A `/dev` node (misc device) with module-owned `file_operations`, generic over its file type.
//!
//! 7.2 gap: `kernel::miscdevice::MiscDeviceRegistration` builds `file_operations` with `owner`
//! NULL (so `misc_open` takes no module reference: `rmmod` with an open file would unload code
//! that the file still points to) and `llseek` NULL (while the misc core's own fops set
//! `FMODE_LSEEK`, so `lseek(2)` on the node would call a NULL pointer), takes no parent device
//! and no mode, and cannot hand per-node data to `open`. Upstream home: those fields of
//! `kernel::miscdevice::MiscDeviceOptions`, and the vtable's `owner`/`llseek`.
//!
//! Like `kernel::miscdevice`, the `file_operations` are built per file type ([`Fops::new`]);
//! each node carries a value of the type's [`NodeFile::Data`], which `open` reads back with
//! [`MiscNode::data_of`].
//!
//! 7.2 gap: `MiscDevice` has no `poll` hook (`kernel::sync::poll::PollTable` exists, but nothing
//! hands one to a driver); [`Fops::new`] adds `.poll`, calling [`NodeFile::poll`]. Upstream home:
//! a `poll` method of the `MiscDevice` vtable.
//!
//! 7.2 gap: nor a `uring_cmd` hook; [`Fops::new`] adds `.uring_cmd`, calling
//! [`NodeFile::uring_cmd`] (an issue), [`NodeFile::uring_cancel`] (io_uring's cancellation) and,
//! from task work, [`NodeFile::uring_task`] (see `uring.rs`). Upstream home: a `uring_cmd` method
//! of the `MiscDevice` vtable.

use core::marker::PhantomData;
use kernel::{
    bindings,
    device::{
        self,
        Bound, //
    },
    error::to_result,
    fs::File,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    str::CString,
    sync::poll::PollTable,
    types::{
        ForeignOwnable,
        Opaque, //
    },
    ThisModule,
};

use super::{
    raw_dev,
    uring::{
        self,
        Issue,
        UringCmd, //
    },
};

/// `poll` readiness bits (`linux/poll.h`), for [`NodeFile::poll`].
pub(crate) mod poll_mask {
    /// Readable (with `RDNORM`).
    pub(crate) const IN: u32 = kernel::bindings::POLLIN | kernel::bindings::POLLRDNORM;
    /// Writable (with `WRNORM`).
    pub(crate) const OUT: u32 = kernel::bindings::POLLOUT | kernel::bindings::POLLWRNORM;
    /// Hung up.
    pub(crate) const HUP: u32 = kernel::bindings::POLLHUP;
}

/// The `file_operations` of one file type: the Rust misc vtable of the type, with `owner`,
/// `llseek`, `poll` and `uring_cmd` set.
pub(crate) struct Fops(bindings::file_operations);

// SAFETY: a `Fops` is immutable once built; the VFS only reads it.
unsafe impl Sync for Fops {}

impl Fops {
    /// The operations of file type `T`, owned by `module` (open files pin the module).
    pub(crate) const fn new<T: NodeFile>(module: &'static ThisModule) -> Self {
        Self(bindings::file_operations {
            owner: module.as_ptr(),
            llseek: Some(bindings::default_llseek),
            poll: Some(poll::<T>),
            uring_cmd: Some(uring_cmd::<T>),
            // SAFETY: `into_raw` returns a `miscdevice` whose `fops` points to the `'static`
            // vtable of `T`, valid for reads.
            ..unsafe { *MiscDeviceOptions { name: c"" }.into_raw::<T>().fops }
        })
    }
}

/// `file_operations.poll` of `T`.
///
/// # Safety
///
/// `file` is an open file of type `T` (its operations are `T::fops()`), and `table` is null or a
/// valid poll table, for the duration of the call.
unsafe extern "C" fn poll<T: NodeFile>(
    file: *mut bindings::file,
    table: *mut bindings::poll_table,
) -> bindings::__poll_t {
    // SAFETY: `file` is an open file of type `T` (the caller's requirement), whose release
    // cannot run while a file operation is in progress.
    let me = unsafe { borrow_file::<T>(file) };
    // SAFETY:
    // * `file` is valid for the duration of this call (the caller's requirement).
    // * `poll` runs with no `fdget_pos` region of this file on this thread.
    let file = unsafe { File::from_raw_file(file) };
    // SAFETY: `table` is null or valid for the duration of this call (the caller's requirement),
    // which the returned value does not outlive.
    let table = unsafe { PollTable::from_raw(table) };
    T::poll(me, file, &table)
}

/// The open file `file` of type `T`, borrowed.
///
/// # Safety
///
/// `file` is an open file of type `T` (its operations are `T::fops()`) whose release cannot run
/// while the returned value is used.
unsafe fn borrow_file<'a, T: NodeFile>(
    file: *mut bindings::file,
) -> <T::Ptr as ForeignOwnable>::Borrowed<'a> {
    // SAFETY: `file` is an open file (the caller's requirement): its private data may be read.
    let private = unsafe { (*file).private_data };
    // SAFETY: the misc vtable's `open` stored a `T::Ptr` there with `into_foreign`, and `release`
    // (which takes it back) cannot run while the value is used (the caller's requirement).
    unsafe { <T::Ptr as ForeignOwnable>::borrow(private) }
}

/// `file_operations.uring_cmd` of `T`: an issue, or io_uring's cancellation of a command `T`
/// took. A command `T` refuses is completed here with its error; every command ends with
/// `-EIOCBQUEUED` returned, so io_uring never retries an issue (no `-EAGAIN` reaches it).
///
/// # Safety
///
/// `cmd` is a command io_uring issues (or cancels) with `issue_flags` on an open file of type
/// `T`, valid for the duration of the call.
unsafe extern "C" fn uring_cmd<T: NodeFile>(
    cmd: *mut bindings::io_uring_cmd,
    issue_flags: c_uint,
) -> c_int {
    // SAFETY: the caller's requirement; `issue` does not outlive this call.
    let Some(issue) = (unsafe { Issue::new(cmd, issue_flags) }) else {
        return EINVAL.to_errno();
    };
    // SAFETY: the command holds a reference to its file, which is of type `T` (the caller's
    // requirement), so its release cannot run during this call.
    let me = unsafe { borrow_file::<T>(issue.file()) };
    if issue.is_cancel() {
        T::uring_cancel(me, issue.tag());
        return 0;
    }
    // SAFETY: `uring_task::<T>` may run with this command: its file is of type `T`.
    let taken = unsafe { issue.take(uring_task::<T>) };
    if let Err((e, taken)) = T::uring_cmd(me, &issue, taken) {
        issue.fail(taken, e);
    }
    uring::QUEUED
}

/// The task-work function of the commands `T` took: the CQE's result.
///
/// # Safety
///
/// Called by the task work of `UringCmd::complete_in_task` with a command issued to a file of
/// type `T` (as `uring_cmd::<T>` takes them), and `res2` valid for a write.
unsafe extern "C" fn uring_task<T: NodeFile>(
    cmd: *mut bindings::io_uring_cmd,
    res2: *mut u64,
) -> c_int {
    // SAFETY: the caller's requirement.
    let (file, tag) = unsafe { uring::task_args(cmd) };
    // SAFETY: the command holds a reference to its file, of type `T`, until the trampoline
    // completes it after this returns: its release cannot run meanwhile.
    let me = unsafe { borrow_file::<T>(file) };
    let done = T::uring_task(me, tag);
    // SAFETY: `res2` is valid for a write (the caller's requirement).
    unsafe { res2.write(done.res2) };
    done.res
}

/// A file type served through [`MiscNode`]s.
///
/// # Safety
///
/// `fops()` returns operations built by `Fops::new::<Self>()`, and files of this type are opened
/// only through nodes registered by [`MiscNode::<Self>::register`] (never through
/// `kernel::miscdevice::MiscDeviceRegistration`): [`MiscNode::data_of`] relies on both.
pub(crate) unsafe trait NodeFile: MiscDevice + 'static {
    /// What a node of this type serves, handed to `open` through [`MiscNode::data_of`].
    type Data: Send + Sync + 'static;

    /// The type's operations: a `static` built with [`Fops::new::<Self>`].
    fn fops() -> &'static Fops;

    /// `poll(2)`: registers the file's wait queues with `table` and returns its readiness
    /// ([`poll_mask`] bits).
    fn poll(
        me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        file: &File,
        table: &PollTable<'_>,
    ) -> u32;

    /// An `IORING_OP_URING_CMD` issue. `Ok`: the file keeps `cmd` and ends it later
    /// ([`UringCmd::complete_in_task`], after giving it a tag with [`UringCmd::set_tag`]);
    /// `Err`: the command completes now with the error, as its CQE result.
    fn uring_cmd(
        me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        issue: &Issue<'_>,
        cmd: UringCmd,
    ) -> core::result::Result<(), (Error, UringCmd)>;

    /// io_uring cancels the command with tag `tag` (0: not tagged yet; io_uring offers it again
    /// until it completes), which the file kept and has not ended yet, or is ending: end it soon.
    fn uring_cancel(me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, tag: u64);

    /// Task work of the command with tag `tag`, which the file ended: returns its CQE's results.
    fn uring_task(me: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, tag: u64) -> uring::Completion;
}

/// A registered `/dev/<name>` with `T`'s [`Fops`], mode 0600, a parent device, and `data`.
///
/// # Invariants
///
/// `inner` is a registered `miscdevice` whose `fops` is `T::fops()` and whose `name` points into
/// `name`, until `Drop` deregisters it.
#[pin_data(PinnedDrop)]
pub(crate) struct MiscNode<T: NodeFile> {
    #[pin]
    inner: Opaque<bindings::miscdevice>,
    name: CString,
    data: T::Data,
    _t: PhantomData<T>,
}

impl<T: NodeFile> MiscNode<T> {
    /// Registers `/dev/<name>` (mode 0600) under `parent`, serving `data`.
    pub(crate) fn register(
        name: CString,
        parent: &device::Device<Bound>,
        data: T::Data,
    ) -> impl PinInit<Self, Error> + '_ {
        let name_ptr = name.as_char_ptr();
        try_pin_init!(Self {
            name,
            data,
            _t: PhantomData,
            inner <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut misc = MiscDeviceOptions { name: c"" }.into_raw::<T>();
                misc.name = name_ptr;
                misc.fops = &T::fops().0;
                misc.parent = raw_dev(parent);
                misc.mode = 0o600;
                // SAFETY: `slot` is valid for writes; it is pinned and deregistered in `Drop`
                // before it is freed.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a fully initialised `miscdevice`; its `name` points into
                // the heap buffer of `name`, which `Self` owns (moving a `CString` does not move
                // its buffer), and `parent` is a bound device.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }

    /// The data of the node that `misc` was opened through; valid during `open`.
    pub(crate) fn data_of(misc: &MiscDeviceRegistration<T>) -> &T::Data {
        let inner = misc.as_raw().cast::<Opaque<bindings::miscdevice>>();
        // SAFETY: by `NodeFile`'s contract, a `T` file is opened only through a node that
        // `MiscNode::<T>::register` registered with `T`'s own operations, so `inner` is the
        // `inner` field of a `MiscNode<T>`. `misc_open` holds `misc_mtx`, which `misc_deregister` (in `Drop`) takes,
        // so that node is alive while `misc` is borrowed.
        let node = unsafe { &*kernel::container_of!(inner, MiscNode<T>, inner) };
        &node.data
    }
}

// SAFETY: the raw `miscdevice` is only touched by `misc_register`/`misc_deregister`, which may
// run on any thread; `name` is `Send` and `T::Data: Send`.
unsafe impl<T: NodeFile> Send for MiscNode<T> {}
// SAFETY: `&MiscNode` gives no access to the raw `miscdevice`; `T::Data: Sync`.
unsafe impl<T: NodeFile> Sync for MiscNode<T> {}

#[pinned_drop]
impl<T: NodeFile> PinnedDrop for MiscNode<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: by the type invariant `inner` is registered; it is deregistered exactly once.
        unsafe { bindings::misc_deregister(self.inner.get()) };
    }
}
