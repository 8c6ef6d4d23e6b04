// SPDX-License-Identifier: GPL-2.0

//! Address-space helpers: the file offset a VMA maps, and zapping every user mapping of a file
//! range.
//!
//! 7.2 gap: `mm::virt::VmaNew` has no `pgoff()` getter, and `kernel::fs::File` has no access to
//! its `address_space` (`unmap_mapping_range`). Upstream home: `kernel::mm::virt` and a future
//! `kernel::fs::AddressSpace`.

use kernel::{
    bindings,
    fs::File,
    mm::virt::VmaNew, //
};

/// The page-cache mapping of an open file: every VMA that maps the file is linked into it.
///
/// # Invariants
///
/// The pointer is the `f_mapping` of a file that the owner of this value keeps open (the owner
/// lives no longer than the file it was created from), so the inode and its mapping stay alive.
pub(crate) struct FileMapping(*mut bindings::address_space);

// SAFETY: `unmap_mapping_range` may be called from any thread.
unsafe impl Send for FileMapping {}
// SAFETY: `&FileMapping` offers nothing but `zap`, which is thread-safe.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// The mapping of `file`; the caller keeps `file` open as long as the returned value.
    pub(crate) fn of(file: &File) -> Self {
        // SAFETY: `file` is a valid open file; `f_mapping` is set at open and stays valid while
        // the file is open.
        // INVARIANT: the caller keeps the file open while this value lives.
        Self(unsafe { (*file.as_ptr()).f_mapping })
    }

    /// Removes every user PTE mapping file offsets `[offset, offset + len)`, in every VMA of
    /// the file (shared mappings and private copies alike).
    pub(crate) fn zap(&self, offset: u64, len: usize) {
        let (Ok(start), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: by the type invariant the mapping is alive; the range is any pair of offsets.
        unsafe { bindings::unmap_mapping_range(self.0, start, len, 1) };
    }
}

/// The page offset a mapping was requested at (`mmap`'s offset >> `PAGE_SHIFT`).
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: `vma` is a VMA being set up by `mmap`, valid while borrowed; `vm_pgoff` is a plain
    // integer that nothing else writes during `mmap`.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}
