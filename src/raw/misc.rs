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

use super::raw_dev;

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
/// `llseek` and `poll` set.
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
    // SAFETY: `file` is an open file (the caller's requirement): its private data may be read.
    let private = unsafe { (*file).private_data };
    // SAFETY: the misc vtable's `open` stored a `T::Ptr` there with `into_foreign`, and `release`
    // (which takes it back) cannot run while a file operation is in progress.
    let me = unsafe { <T::Ptr as ForeignOwnable>::borrow(private) };
    // SAFETY:
    // * `file` is valid for the duration of this call (the caller's requirement).
    // * `poll` runs with no `fdget_pos` region of this file on this thread.
    let file = unsafe { File::from_raw_file(file) };
    // SAFETY: `table` is null or valid for the duration of this call (the caller's requirement),
    // which the returned value does not outlive.
    let table = unsafe { PollTable::from_raw(table) };
    T::poll(me, file, &table)
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
