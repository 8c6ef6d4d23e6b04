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

use core::marker::PhantomData;
use kernel::{
    bindings,
    device::{
        self,
        Bound, //
    },
    error::to_result,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    str::CString,
    types::Opaque,
    ThisModule,
};

use super::raw_dev;

/// The `file_operations` of one file type: the Rust misc vtable of the type, with `owner` and
/// `llseek` set.
pub(crate) struct Fops(bindings::file_operations);

// SAFETY: a `Fops` is immutable once built; the VFS only reads it.
unsafe impl Sync for Fops {}

impl Fops {
    /// The operations of file type `T`, owned by `module` (open files pin the module).
    pub(crate) const fn new<T: MiscDevice>(module: &'static ThisModule) -> Self {
        Self(bindings::file_operations {
            owner: module.as_ptr(),
            llseek: Some(bindings::default_llseek),
            // SAFETY: `into_raw` returns a `miscdevice` whose `fops` points to the `'static`
            // vtable of `T`, valid for reads.
            ..unsafe { *MiscDeviceOptions { name: c"" }.into_raw::<T>().fops }
        })
    }
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
