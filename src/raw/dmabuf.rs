// SPDX-License-Identifier: GPL-2.0

//! dma-buf export of page-backed memory: a dma-buf whose backing store is a [`Pages`] list
//! (ordinary pages, refcounted as a whole: the dma-buf holds one reference to the list for as
//! long as it lives, the list's other holders keep theirs), plus an exporter value of the driver's
//! choosing (dropped when the dma-buf is released).
//!
//! 7.2 gap: the `kernel` crate has no dma-buf abstraction at all (only DRM's C GEM helpers
//! export); `dma_buf_export`, `struct dma_buf_ops` and friends are in the generated bindings and
//! their symbols in the `DMA_BUF` namespace, which the module imports (`imports_ns`). Upstream
//! home: a `kernel::dma_buf` module (an [`Exporter`] trait whose `dma_buf_ops` are built per type,
//! as `kernel::miscdevice` builds `file_operations`).
//!
//! What the ops do, for every exporter type (the C model is `drivers/dma-buf/udmabuf.c` and the
//! system heap):
//! - `attach`/`detach`: per-attachment state (the tables mapped for it), listed in the buffer so
//!   that CPU-access syncs reach every importer's mapping.
//! - `map_dma_buf`/`unmap_dma_buf`: an SG table over the pages (segments capped at the
//!   importer's `max_segment_size`) mapped with the importer's device (`dma_map_sgtable`; map and
//!   unmap sync, as the DMA API's ownership rules want for a mapping the importer owns).
//! - `begin_cpu_access`/`end_cpu_access` (`DMA_BUF_IOCTL_SYNC`): every importer table is synced
//!   for the CPU / for its device, then the exporter's own hook runs (its own device mappings).
//! - `mmap`: the pages themselves, faulted in on access by [`super::vm::map_on_fault`] (normal
//!   pages in a `VM_MIXEDMAP` VMA: GUP works, and a zapped range, e.g. after `MADV_DONTNEED`, gets
//!   the same pages back on its next access); each VMA holds a reference to the dma-buf's shared
//!   state, so to the page list; `MAP_SHARED` only (`EINVAL`), never executable (`EPERM`, and
//!   `VM_MAYEXEC` cleared).
//! - `release`: drops the exporter value, then the dma-buf's reference to the page list.
//!
//! Lock order: the dma-buf's reservation lock (held by the core around map/unmap), then
//! `Shared::attached`, then `Attached::tables`. CPU-access syncs take the last two only; map and
//! unmap take only the last one.

use core::{
    any::TypeId,
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::NonNull, //
};
use kernel::{
    bindings, device,
    dma::DataDirection,
    error::{
        from_result,
        to_result, //
    },
    fs::{
        file::FileDescriptorReservation,
        File, //
    },
    mm::virt::{
        flags as vm,
        VmaNew, //
    },
    new_mutex,
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        ArcBorrow,
        Mutex, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
    ThisModule,
};

use super::{
    dma::Pages,
    raw_dev,
    vm::{
        self as vmops,
        FaultPages, //
    },
};

// The shim (`shim.c`): static inline in `linux/dma-mapping.h`.
// `improper_ctypes`: bindgen gives some kernel structs zero-sized members, which only matters
// for by-value use; these take pointers.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_dma_get_max_seg_size(dev: *mut bindings::device) -> c_uint;
    fn edu_dma_sync_sgtable_for_cpu(
        dev: *mut bindings::device,
        sgt: *mut bindings::sg_table,
        dir: bindings::dma_data_direction,
    );
    fn edu_dma_sync_sgtable_for_device(
        dev: *mut bindings::device,
        sgt: *mut bindings::sg_table,
        dir: bindings::dma_data_direction,
    );
}

/// What a driver adds to a page-backed dma-buf: its own device mappings of the pages, kept
/// coherent with the CPU by `DMA_BUF_IOCTL_SYNC`. Dropped when the dma-buf is released.
pub(crate) trait Exporter: Send + Sync + 'static {
    /// CPU access begins (`DMA_BUF_SYNC_START`, `dir` as the core passes it): hand the
    /// exporter's own mappings of the pages to the CPU.
    fn begin_cpu_access(&self, dir: DataDirection) -> Result;

    /// CPU access ends (`DMA_BUF_SYNC_END`): hand the exporter's own mappings back to its device.
    fn end_cpu_access(&self, dir: DataDirection) -> Result;
}

/// The DMA direction the core passed.
fn direction(dir: bindings::dma_data_direction) -> DataDirection {
    match dir {
        bindings::dma_data_direction_DMA_TO_DEVICE => DataDirection::ToDevice,
        bindings::dma_data_direction_DMA_FROM_DEVICE => DataDirection::FromDevice,
        bindings::dma_data_direction_DMA_NONE => DataDirection::None,
        _ => DataDirection::Bidirectional,
    }
}

/// An SG table over the pages, mapped for one importer's device.
///
/// # Invariants
///
/// `sgt` is allocated over pages that outlive the table (the dma-buf's [`Pages`], which its shared
/// state holds while any attachment, and so any table, exists) and mapped for `dev` in `dir`,
/// until `Drop`.
struct Table {
    sgt: KBox<Opaque<bindings::sg_table>>,
    dev: ARef<device::Device>,
    dir: bindings::dma_data_direction,
}

// SAFETY: the table is only touched through `&mut` (drop) or under `Attached::tables`.
unsafe impl Send for Table {}

impl Table {
    /// Builds and maps a table over `pages` for `dev`.
    ///
    /// # Safety
    ///
    /// `dev` is a valid device with a non-zero reference count, and `pages` outlive the table.
    unsafe fn new(
        dev: *mut bindings::device,
        pages: &Pages,
        dir: bindings::dma_data_direction,
    ) -> Result<Self> {
        let n = u32::try_from(pages.len()).map_err(|_| E2BIG)?;
        let size = pages.len().checked_mul(PAGE_SIZE).ok_or(E2BIG)?;
        let size = c_ulong::try_from(size).map_err(|_| E2BIG)?;
        // SAFETY: `dev` is valid (this function's requirement).
        let max_seg = unsafe { edu_dma_get_max_seg_size(dev) }.max(PAGE_SIZE as c_uint);
        // SAFETY: `dev` is valid with a non-zero reference count (this function's requirement).
        let dev = unsafe { device::Device::get_device(dev) };
        // The callee reads an array of page pointers; it is only needed during the call.
        let mut list = KVec::with_capacity(pages.len(), GFP_KERNEL)?;
        for page in pages.iter() {
            list.push(page.as_ptr(), GFP_KERNEL)?;
        }
        let sgt = KBox::new(Opaque::<bindings::sg_table>::zeroed(), GFP_KERNEL)?;
        // SAFETY: `sgt` is a zeroed table; `list` holds `n` valid pages covering `size` bytes
        // from offset 0, which outlive the table (this function's requirement).
        to_result(unsafe {
            bindings::sg_alloc_table_from_pages_segment(
                sgt.get(),
                list.as_mut_ptr(),
                n,
                0,
                size,
                max_seg,
                bindings::GFP_KERNEL,
            )
        })?;
        let raw_dev = raw_dev(&dev);
        // SAFETY: `raw_dev` is a valid device (its reference is held in `dev`) and `sgt` an
        // allocated table.
        let ret = unsafe { bindings::dma_map_sgtable(raw_dev, sgt.get(), dir, 0) };
        if ret != 0 {
            // SAFETY: the table was allocated above and is not mapped; it is freed once.
            unsafe { bindings::sg_free_table(sgt.get()) };
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: allocated over `pages` and mapped for `dev` in `dir`.
        Ok(Self { sgt, dev, dir })
    }

    /// Hands the mapping to the CPU or back to the device, in its own direction (which is
    /// what the DMA API checks a sync against).
    fn sync(&self, for_cpu: bool) {
        let raw_dev = raw_dev(&self.dev);
        if for_cpu {
            // SAFETY: by the type invariant the table is mapped for `dev` in `dir`.
            unsafe { edu_dma_sync_sgtable_for_cpu(raw_dev, self.sgt.get(), self.dir) };
        } else {
            // SAFETY: by the type invariant the table is mapped for `dev` in `dir`.
            unsafe { edu_dma_sync_sgtable_for_device(raw_dev, self.sgt.get(), self.dir) };
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the table is mapped for `dev` in `dir`; it is unmapped
        // exactly once, before it is freed.
        unsafe { bindings::dma_unmap_sgtable(raw_dev(&self.dev), self.sgt.get(), self.dir, 0) };
        // SAFETY: the table is allocated and no longer mapped; it is freed exactly once.
        unsafe { bindings::sg_free_table(self.sgt.get()) };
    }
}

/// One importer's attachment: the tables mapped for it and not unmapped yet.
#[pin_data]
struct Attached {
    #[pin]
    tables: Mutex<KVec<Table>>,
}

/// The dma-buf's private data.
#[pin_data]
struct Shared<T: Exporter> {
    data: T,
    /// Dropped after `data`: the exporter may still use the pages in its `Drop`.
    pages: Arc<Pages>,
    /// Every attachment, for CPU-access syncs.
    #[pin]
    attached: Mutex<KVec<Arc<Attached>>>,
}

impl<T: Exporter> Shared<T> {
    /// Syncs every importer table, then the exporter's own mappings.
    fn cpu_access(&self, begin: bool, dir: DataDirection) -> Result {
        for a in self.attached.lock().iter() {
            for t in a.tables.lock().iter() {
                t.sync(begin);
            }
        }
        if begin {
            self.data.begin_cpu_access(dir)
        } else {
            self.data.end_cpu_access(dir)
        }
    }

    fn mmap(&self, vma: &VmaNew) -> Result {
        // `MAYSHARE`: a shared mapping of a read-only dma-buf has `SHARED` cleared by mmap.
        if vma.flags() & (vm::SHARED | vm::MAYSHARE) == 0 {
            return Err(EINVAL);
        }
        if vma.flags() & vm::EXEC != 0 {
            return Err(EPERM);
        }
        vma.try_clear_mayexec()?;
        vma.set_dontexpand();
        Ok(())
    }
}

/// A dma-buf's mappings fault its pages in by page offset in the dma-buf (the core checked at
/// `mmap` that the range lies in it; `DONTEXPAND` keeps it there).
impl<T: Exporter> FaultPages for Shared<T> {
    fn page(&self, pgoff: usize) -> Option<&Page> {
        self.pages.get(pgoff)
    }
}

/// A dma-buf's `priv`: its exporter type's tag, first (`repr(C)`), so that [`exporter_of`] can
/// tell the type of any dma-buf this module exported before it looks at the rest.
#[repr(C)]
struct Header<T: Exporter> {
    /// `TypeId::of::<T>()`.
    tag: TypeId,
    shared: Arc<Shared<T>>,
}

/// The `dma_buf_ops` of exporter type `T`.
struct Vtable<T>(PhantomData<T>);

impl<T: Exporter> Vtable<T> {
    const OPS: bindings::dma_buf_ops = bindings::dma_buf_ops {
        attach: Some(Self::attach),
        detach: Some(Self::detach),
        pin: None,
        unpin: None,
        map_dma_buf: Some(Self::map_dma_buf),
        unmap_dma_buf: Some(Self::unmap_dma_buf),
        release: Some(Self::release),
        begin_cpu_access: Some(Self::begin_cpu_access),
        end_cpu_access: Some(Self::end_cpu_access),
        mmap: Some(Self::mmap),
        vmap: None,
        vunmap: None,
    };

    /// The private data of `dmabuf`.
    ///
    /// # Safety
    ///
    /// `dmabuf` is a live dma-buf exported by [`DmaBuf::export::<T>`] (so its `priv` is a
    /// `KBox<Header<T>>` until `release`), and `release` has not run.
    unsafe fn shared<'a>(dmabuf: *mut bindings::dma_buf) -> ArcBorrow<'a, Shared<T>> {
        // SAFETY: `dmabuf` is live (the caller's requirement).
        let p = unsafe { (*dmabuf).priv_ };
        // SAFETY: `p` came from `KBox::into_foreign` in `export` and is released only in
        // `release`, which has not run (the caller's requirement).
        let header = unsafe { <KBox<Header<T>> as ForeignOwnable>::borrow(p) };
        header.shared.as_arc_borrow()
    }

    /// The state of `attach`.
    ///
    /// # Safety
    ///
    /// `attach` is a live attachment whose `attach` callback succeeded and whose `detach` has
    /// not run.
    unsafe fn attached<'a>(attach: *mut bindings::dma_buf_attachment) -> ArcBorrow<'a, Attached> {
        // SAFETY: `attach` is live (the caller's requirement).
        let p = unsafe { (*attach).priv_ };
        // SAFETY: `p` came from `Arc::into_foreign` in `attach` and is released only in
        // `detach`, which has not run (the caller's requirement).
        unsafe { <Arc<Attached> as ForeignOwnable>::borrow(p) }
    }

    /// `dma_buf_ops.attach`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn attach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        from_result(|| {
            // SAFETY: the core calls `attach` on a live dma-buf of ours.
            let shared = unsafe { Self::shared(dmabuf) };
            let a = Arc::pin_init(
                try_pin_init!(Attached {
                    tables <- new_mutex!(KVec::new(), "dma_buf::Attached::tables"),
                }),
                GFP_KERNEL,
            )?;
            shared.attached.lock().push(a.clone(), GFP_KERNEL)?;
            // SAFETY: `attach` is the attachment being set up, exclusively ours until the core
            // lists it (after this returns); `detach` takes the reference back.
            unsafe { (*attach).priv_ = a.into_foreign() };
            Ok(0)
        })
    }

    /// `dma_buf_ops.detach`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn detach(
        dmabuf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: the core calls `detach` on a live dma-buf of ours.
        let shared = unsafe { Self::shared(dmabuf) };
        // SAFETY: `attach` succeeded (the core detaches only attachments it made), so `priv_`
        // holds the reference `attach` stored; it is taken back exactly once, here.
        let a = unsafe { <Arc<Attached> as ForeignOwnable>::from_foreign((*attach).priv_) };
        let me = Arc::as_ptr(&a);
        shared
            .attached
            .lock()
            .retain(|x| !core::ptr::eq(Arc::as_ptr(x), me));
        // Tables an importer failed to unmap are unmapped and freed with `a`.
    }

    /// `dma_buf_ops.map_dma_buf`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        let r = (|| -> Result<*mut bindings::sg_table> {
            // SAFETY: the core maps only live attachments of live dma-bufs of ours.
            let (dmabuf, dev) = unsafe { ((*attach).dmabuf, (*attach).dev) };
            // SAFETY: as above, `dmabuf` is ours and live.
            let shared = unsafe { Self::shared(dmabuf) };
            // SAFETY: `attach` is live and attached (the core maps only attached attachments).
            let a = unsafe { Self::attached(attach) };
            // SAFETY: `dev`, the importer's device, is valid while its attachment exists; the
            // pages are `shared`'s, which outlive every attachment (each holds the dma-buf).
            let t = unsafe { Table::new(dev, &shared.pages, dir) }?;
            let raw = t.sgt.get();
            a.tables.lock().push(t, GFP_KERNEL)?;
            Ok(raw)
        })();
        match r {
            Ok(p) => p,
            Err(e) => e.to_ptr(),
        }
    }

    /// `dma_buf_ops.unmap_dma_buf`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn unmap_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        sgt: *mut bindings::sg_table,
        _dir: bindings::dma_data_direction,
    ) {
        // SAFETY: the core unmaps only tables of live attachments that `map_dma_buf` returned.
        let a = unsafe { Self::attached(attach) };
        let mut tables = a.tables.lock();
        if let Some(i) = tables.iter().position(|t| core::ptr::eq(t.sgt.get(), sgt)) {
            // Unmapped and freed by its `Drop`.
            drop(tables.remove(i));
        }
    }

    /// `dma_buf_ops.release`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn release(dmabuf: *mut bindings::dma_buf) {
        // SAFETY: the core releases a dma-buf of ours once, after its last reference; `priv_`
        // holds the reference `export` stored, taken back exactly once, here.
        drop(unsafe { <KBox<Header<T>> as ForeignOwnable>::from_foreign((*dmabuf).priv_) });
    }

    /// `dma_buf_ops.begin_cpu_access`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn begin_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: the core calls this on a live dma-buf of ours (an fd of it is held).
        let shared = unsafe { Self::shared(dmabuf) };
        from_result(|| shared.cpu_access(true, direction(dir)).map(|()| 0))
    }

    /// `dma_buf_ops.end_cpu_access`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn end_cpu_access(
        dmabuf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        // SAFETY: the core calls this on a live dma-buf of ours (an fd of it is held).
        let shared = unsafe { Self::shared(dmabuf) };
        from_result(|| shared.cpu_access(false, direction(dir)).map(|()| 0))
    }

    /// `dma_buf_ops.mmap`.
    ///
    /// # Safety
    ///
    /// Called by the dma-buf core only, on a dma-buf exported with these ops, as
    /// `include/linux/dma-buf.h` documents the callback.
    unsafe extern "C" fn mmap(
        dmabuf: *mut bindings::dma_buf,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: the core calls this on a live dma-buf of ours (its file is being mapped).
        let shared = unsafe { Self::shared(dmabuf) };
        // SAFETY: `vma` is being set up by `mmap(2)` (or `dma_buf_mmap`) for the duration of
        // this call.
        let vma = unsafe { VmaNew::from_raw(vma) };
        from_result(|| {
            shared.mmap(vma)?;
            // The last step, nothing fails after it (see `map_on_fault`): the VMA and its copies
            // hold the shared state (so the pages) until unmapped.
            vmops::map_on_fault(vma, shared.into());
            Ok(0)
        })
    }
}

/// Runs `f` with the exporter value of the dma-buf of `fd` if `module` exported it, through
/// [`DmaBuf::export`], with exporter type `T`; `Ok(None)` for any other dma-buf (another
/// exporter's, or another exporter type's). `EBADF`: no such fd; `EINVAL`: not a dma-buf. A
/// built-in driver (no module) never matches: the dma-bufs of built-in exporters all have no
/// owner.
pub(crate) fn exporter_of<T: Exporter, R>(
    module: &'static ThisModule,
    fd: i32,
    f: impl FnOnce(&T) -> R,
) -> Result<Option<R>> {
    // SAFETY: `dma_buf_get` takes any fd number: it returns a dma-buf on whose file it took a
    // reference, or an error pointer.
    let dmabuf = kernel::error::from_err_ptr(unsafe { bindings::dma_buf_get(fd) })?;
    // SAFETY: we hold a reference to `dmabuf`, so it is live; `owner` and `priv` are set at
    // export and never change.
    let (owner, p) = unsafe { ((*dmabuf).owner, (*dmabuf).priv_) };
    let ours = !owner.is_null() && owner == module.as_ptr() && !p.is_null();
    // SAFETY: if `ours`, `module` exported `dmabuf`, and a module exports dma-bufs only through
    // `DmaBuf::export` (this file makes the module's only `dma_buf_export` calls), whose `priv`
    // is a `KBox<Header<U>>` for some exporter type `U` until `release`, which has not run (we
    // hold a reference): the `tag` that `Header` starts with (`repr(C)`) can be read whatever
    // `U` is.
    let same_type = ours && unsafe { *p.cast::<TypeId>() } == TypeId::of::<T>();
    let ret = if same_type {
        // SAFETY: `U` is `T` (their tags are equal): `dmabuf` is a live dma-buf exported by
        // `DmaBuf::export::<T>`, not released (we hold a reference).
        let shared = unsafe { Vtable::<T>::shared(dmabuf) };
        Some(f(&shared.data))
    } else {
        None
    };
    // SAFETY: the reference `dma_buf_get` took, put once.
    unsafe { bindings::dma_buf_put(dmabuf) };
    Ok(ret)
}

/// A new dma-buf, holding one reference to its file until [`DmaBuf::install`] moves it into an
/// fd (or `Drop` puts it, which releases the dma-buf).
///
/// # Invariants
///
/// The pointer is a live dma-buf on whose file this value holds one reference.
pub(crate) struct DmaBuf(NonNull<bindings::dma_buf>);

impl DmaBuf {
    /// Exports `pages` (in order; the dma-buf's size is theirs) with `data`, owned by `module`,
    /// named `exp_name` in `/proc/<pid>/fdinfo`; `writable`: `O_RDWR`, else `O_RDONLY`. On error
    /// `data` and the reference to `pages` are dropped.
    pub(crate) fn export<T: Exporter>(
        module: &'static ThisModule,
        exp_name: &'static CStr,
        data: T,
        pages: Arc<Pages>,
        writable: bool,
    ) -> Result<Self> {
        if pages.is_empty() {
            return Err(EINVAL);
        }
        let size = pages.len().checked_mul(PAGE_SIZE).ok_or(E2BIG)?;
        let shared = Arc::pin_init(
            try_pin_init!(Shared {
                data,
                pages,
                attached <- new_mutex!(KVec::new(), "dma_buf::Shared::attached"),
            }),
            GFP_KERNEL,
        )?;
        let flags = if writable {
            bindings::O_RDWR
        } else {
            bindings::O_RDONLY
        };
        let header = KBox::new(
            Header {
                tag: TypeId::of::<T>(),
                shared,
            },
            GFP_KERNEL,
        )?;
        let priv_ = header.into_foreign();
        let info = bindings::dma_buf_export_info {
            exp_name: exp_name.as_char_ptr(),
            owner: module.as_ptr(),
            ops: &Vtable::<T>::OPS,
            size,
            flags: flags as c_int,
            resv: core::ptr::null_mut(),
            priv_,
        };
        // SAFETY: `info` is fully initialised: a `'static` name and ops table with the mandatory
        // callbacks, a live module, a page-multiple size, and `priv_`, which `release` takes back.
        let raw = unsafe { bindings::dma_buf_export(&info) };
        match kernel::error::from_err_ptr(raw) {
            // INVARIANT: `dma_buf_export` returns a live dma-buf holding one file reference,
            // now ours.
            Ok(p) => Ok(Self(NonNull::new(p).ok_or(ENOMEM)?)),
            Err(e) => {
                // SAFETY: the export failed, so `release` will never run: `priv_` is still the
                // reference `into_foreign` made, taken back exactly once, here.
                drop(unsafe { <KBox<Header<T>> as ForeignOwnable>::from_foreign(priv_) });
                Err(e)
            }
        }
    }

    /// Installs the dma-buf's file at the reserved fd: the fd owns it from now on.
    pub(crate) fn install(self, fd: FileDescriptorReservation) {
        let me = ManuallyDrop::new(self);
        // SAFETY: by the type invariant the dma-buf is live; `file` is set at export and never
        // changes.
        let file = unsafe { (*me.0.as_ptr()).file };
        let Some(file) = NonNull::new(file.cast::<File>()) else {
            return;
        };
        // SAFETY: `File` is `#[repr(transparent)]` over `struct file`; by the type invariant we
        // own one reference to it, which moves into the `ARef` (`me` is never dropped).
        let file = unsafe { ARef::from_raw(file) };
        fd.fd_install(file);
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we hold one reference to the dma-buf's file, put exactly
        // once, here (the last put releases the dma-buf).
        unsafe { bindings::dma_buf_put(self.0.as_ptr()) };
    }
}
