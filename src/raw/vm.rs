// SPDX-License-Identifier: GPL-2.0

//! Address-space helpers: VMAs that map pages on demand (a fault handler, with `open`/`close`
//! keeping the pages alive for every copy of the VMA), the file offset a VMA maps, and zapping
//! every user mapping of a file range.
//!
//! 7.2 gap: `mm::virt` has no `vm_operations_struct` (no fault handler, no `open`/`close`, no
//! `vm_private_data`) and `VmaNew` no `pgoff()` getter; `kernel::fs::File` has no access to its
//! inode's `address_space` (`unmap_mapping_range`), nor an inode reference type. Upstream home:
//! `kernel::mm::virt` (a `VmOperations` vtable trait, built per type like `MiscDevice`'s
//! `file_operations`) and a future `kernel::fs::AddressSpace`.

use core::marker::PhantomData;
use kernel::{
    bindings,
    fs::File,
    mm::virt::{
        VmaNew,
        VmaRef, //
    },
    page::Page,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
};

/// Pages that VMAs map on demand ([`map_on_fault`]): the page at each file page offset.
pub(crate) trait FaultPages: Send + Sync + 'static {
    /// The page mapped at file page offset `pgoff` (`vm_pgoff` plus the page index in the VMA);
    /// `None` makes the access fail with `SIGBUS`.
    fn page(&self, pgoff: usize) -> Option<&Page>;
}

/// Makes `vma`, being set up by `mmap`, map `pages` on demand: `VM_MIXEDMAP`, and a fault handler
/// that inserts `pages.page(pgoff)` at the faulting address. Whatever removes the page table
/// entries (`MADV_DONTNEED`, a zap of the range) leaves the VMA valid: the next access faults the
/// same page in again. The VMA and each of its copies (fork, split, mremap) hold a reference to
/// `pages` until they are unmapped, so the pages outlive every mapping of them.
///
/// Call it last in `mmap`: a VMA whose `mmap` fails is freed without `close`, which would leak
/// the reference taken here.
pub(crate) fn map_on_fault<T: FaultPages>(vma: &VmaNew, pages: Arc<T>) {
    // `vm_insert_page` in the fault handler needs `VM_MIXEDMAP` set beforehand (set there, under
    // the mmap read lock, it would be a bug).
    vma.set_mixedmap();
    let raw = vma.as_ptr();
    // SAFETY: `vma` is being set up by `mmap` and exclusively ours while borrowed (not yet linked
    // into the mm or the file mapping), so these writes race with nothing.
    unsafe {
        (*raw).vm_private_data = Arc::into_raw(pages).cast_mut().cast();
        (*raw).vm_ops = &FaultOps::<T>::OPS;
    }
    // INVARIANT (of `FaultOps`): the VMA now carries the reference given up by `into_raw`.
}

/// The `vm_operations_struct` of VMAs that map a `T` on demand.
///
/// # Invariants
///
/// Every VMA whose `vm_ops` are `Self::OPS` has a `vm_private_data` that carries one reference
/// of an `Arc<T>` (from [`Arc::into_raw`]): taken by [`map_on_fault`], or by `open` for a copy of
/// such a VMA, and given up by `close`.
struct FaultOps<T>(PhantomData<T>);

impl<T: FaultPages> FaultOps<T> {
    const OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        open: Some(Self::open),
        close: Some(Self::close),
        fault: Some(Self::fault),
        ..pin_init::zeroed()
    };

    /// The pages of `vma`, borrowed for `'a`.
    ///
    /// # Safety
    ///
    /// `vma` is valid, its `vm_ops` are `Self::OPS`, and it is not closed during `'a`.
    unsafe fn pages<'a>(vma: *const bindings::vm_area_struct) -> ArcBorrow<'a, T> {
        // SAFETY: `vma` is valid (this function's requirement); `vm_private_data` is written only
        // while a VMA is set up or copied, never while it can fault or be copied again.
        let data = unsafe { (*vma).vm_private_data };
        // SAFETY: by the type invariant `data` comes from `Arc::<T>::into_raw` and carries the
        // reference of `vma`, which stays open during `'a` (this function's requirement), so the
        // count stays non-zero; a shared `Arc` has no `UniqueArc`.
        unsafe { ArcBorrow::from_raw(data.cast::<T>().cast_const()) }
    }

    /// `vm_ops->open`: the mm core made `vma` as a copy of a VMA of ours (fork, split, mremap);
    /// the copy takes its own reference.
    ///
    /// # Safety
    ///
    /// Called by the mm core on a valid VMA copied (with its `vm_ops` and `vm_private_data`) from
    /// a VMA of ours that stays open during the call.
    unsafe extern "C" fn open(vma: *mut bindings::vm_area_struct) {
        // SAFETY: `vma` is valid and has our `vm_ops`; the reference it shares with the VMA it was
        // copied from stays alive during the call (that VMA stays open).
        let pages = unsafe { Self::pages(vma) };
        // INVARIANT: the copy carries the new reference, given up by `into_raw`.
        let _ = Arc::into_raw(Arc::from(pages));
    }

    /// `vm_ops->close`: `vma` is going away; its reference goes with it (and the pages with the
    /// last one).
    ///
    /// # Safety
    ///
    /// Called by the mm core on a valid VMA of ours, once, as the last operation on it.
    unsafe extern "C" fn close(vma: *mut bindings::vm_area_struct) {
        // SAFETY: `vma` is valid during the call; nothing else writes `vm_private_data`.
        let data = unsafe { (*vma).vm_private_data };
        // SAFETY: by the type invariant `data` comes from `Arc::<T>::into_raw` and carries this
        // VMA's reference, given back exactly once: `close` is the last call on the VMA.
        drop(unsafe { Arc::<T>::from_raw(data.cast::<T>().cast_const()) });
    }

    /// `vm_ops->fault`: inserts the page at `vmf->pgoff` at `vmf->address`.
    ///
    /// # Safety
    ///
    /// Called by the mm core with a valid `vmf` for a fault on a VMA of ours, holding that VMA's
    /// read lock or its mm's mmap read lock for the whole call.
    unsafe extern "C" fn fault(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        const NOPAGE: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_NOPAGE;
        const SIGBUS: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        const OOM: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_OOM;
        // SAFETY: `vmf` is valid during the call; the core set these fields before calling
        // `fault` and does not change them during it.
        let (raw, pgoff, address) = unsafe {
            let f = &(*vmf).__bindgen_anon_1;
            (f.vma, f.pgoff, f.address)
        };
        // SAFETY: `raw` is the faulting VMA, valid for the call, and the core holds its read
        // lock or the mmap read lock for the whole call (which `vma` does not outlive).
        let vma = unsafe { VmaRef::from_raw(raw) };
        // SAFETY: `raw` is valid and has our `vm_ops` (the core called `fault` through them); it
        // cannot be closed while the fault holds its lock, and `pages` ends with the call.
        let pages = unsafe { Self::pages(raw) };
        let (Some(page), Some(mixed)) = (pages.page(pgoff), vma.as_mixedmap_vma()) else {
            return SIGBUS;
        };
        // `address` is page-aligned by the core (`vmf->real_address` is the exact one).
        match mixed.vm_insert_page(address, page) {
            Ok(()) => NOPAGE,
            // A racing fault inserted it first: the entry is there, done.
            Err(e) if e == EBUSY => NOPAGE,
            Err(e) if e == ENOMEM => OOM,
            Err(_) => SIGBUS,
        }
    }
}

/// The page-cache mapping of a file: every VMA that maps the file is linked into it.
///
/// # Invariants
///
/// `inode` carries a reference (taken in [`FileMapping::of`], dropped in `Drop`), and `mapping`
/// is the `f_mapping` of a file open on that inode, which lives as long as the inode.
pub(crate) struct FileMapping {
    inode: *mut bindings::inode,
    mapping: *mut bindings::address_space,
}

// SAFETY: `unmap_mapping_range` and `iput` may be called from any thread.
unsafe impl Send for FileMapping {}
// SAFETY: `&FileMapping` offers nothing but `zap`, which is thread-safe.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// The mapping of `file`, kept alive (with its inode) as long as the returned value.
    pub(crate) fn of(file: &File) -> Self {
        let raw = file.as_ptr();
        // SAFETY: `file` is a valid open file; `f_inode` and `f_mapping` are set at open and stay
        // valid while the file is open, which covers this call.
        let (inode, mapping) = unsafe { ((*raw).f_inode, (*raw).f_mapping) };
        // SAFETY: `inode` is the inode of an open file, so its reference count is non-zero.
        unsafe { bindings::ihold(inode) };
        // INVARIANT: the inode reference was just taken; `mapping` belongs to it.
        Self { inode, mapping }
    }

    /// Removes every user PTE mapping file offsets `[offset, offset + len)`, in every VMA of
    /// the file (shared mappings and private copies alike).
    pub(crate) fn zap(&self, offset: u64, len: usize) {
        let (Ok(start), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: by the type invariant the mapping is alive (its inode is held); the range is
        // any pair of offsets.
        unsafe { bindings::unmap_mapping_range(self.mapping, start, len, 1) };
    }
}

impl Drop for FileMapping {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `inode` carries the reference taken in `of`, dropped
        // exactly once here.
        unsafe { bindings::iput(self.inode) };
    }
}

/// The page offset a mapping was requested at (`mmap`'s offset >> `PAGE_SHIFT`).
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `vma` is a VMA being set up by `mmap`, valid while borrowed; `vm_pgoff` is a plain
    // integer that nothing else writes during `mmap`.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}
