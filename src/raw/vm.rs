// SPDX-License-Identifier: GPL-2.0

//! Address-space helpers: the file offset a VMA maps, and zapping every user mapping of a file
//! range.
//!
//! 7.2 gap: `mm::virt::VmaNew` has no `pgoff()` getter, and `kernel::fs::File` has no access to
//! its inode's `address_space` (`unmap_mapping_range`), nor an inode reference type. Upstream home: `kernel::mm::virt` and a future
//! `kernel::fs::AddressSpace`.

use kernel::{
    bindings,
    fs::File,
    mm::virt::VmaNew, //
};

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
