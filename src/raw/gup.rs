// SPDX-License-Identifier: GPL-2.0

//! Pinning user memory for DMA: a user address range (`pin_user_pages_fast`) or the memory
//! behind a read/write call's I/O iterator (`iov_iter_extract_pages`).
//!
//! 7.2 gap: the `kernel` crate has no GUP wrapper (`kernel::mm` only wraps VMAs and `Mm`), and
//! `kernel::iov` can copy through an iterator but not extract its pages. Upstream home:
//! `kernel::mm` (`pin_user_pages`) and `kernel::iov` (`extract_pages`).

use core::{
    marker::PhantomData,
    ptr, //
};
use kernel::{
    bindings,
    dma::DataDirection,
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    page::PAGE_SIZE,
    prelude::*,
};

// The shim (`shim.c`): `iov_iter_extract_will_pin` is static inline.
extern "C" {
    fn edu_iov_iter_extract_will_pin(iter: *const bindings::iov_iter) -> bool;
}

/// Page arrays of up to this many pages (one 4 KiB command's range, page-aligned or not) are kept
/// inline: no allocation per command.
const INLINE_PAGES: usize = 2;

/// The page pointers of a [`Pinned`]: inline for up to [`INLINE_PAGES`], else a vector.
enum PageArray {
    Inline([*mut bindings::page; INLINE_PAGES], usize),
    Heap(KVec<*mut bindings::page>),
}

impl PageArray {
    /// `n` null entries.
    fn new(n: usize) -> Result<Self> {
        Ok(if n <= INLINE_PAGES {
            Self::Inline([ptr::null_mut(); INLINE_PAGES], n)
        } else {
            Self::Heap(KVec::from_elem(ptr::null_mut(), n, GFP_KERNEL)?)
        })
    }

    fn len(&self) -> usize {
        match self {
            Self::Inline(_, n) => *n,
            Self::Heap(v) => v.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps the first `n` entries (`n` at most the length).
    fn truncate(&mut self, n: usize) {
        match self {
            Self::Inline(_, len) => *len = n.min(*len),
            Self::Heap(v) => v.truncate(n),
        }
    }

    /// The first entry; `len()` entries follow it.
    fn as_mut_ptr(&mut self) -> *mut *mut bindings::page {
        match self {
            Self::Inline(a, _) => a.as_mut_ptr(),
            Self::Heap(v) => v.as_mut_ptr(),
        }
    }
}

/// Pages of a user range (or of an I/O iterator), held for DMA while this lives.
///
/// # Invariants
///
/// `pages[..]` are `pages.len()` valid page pointers covering `offset .. offset + len` (from the
/// first page's start); when `pinned`, each carries a `FOLL_PIN` reference that `Drop` releases
/// (marking the pages dirty first when `dirty`); otherwise the pages belong to a kernel iterator
/// whose memory is valid for `'a` (the lifetime of the iterator's data).
pub(crate) struct Pinned<'a> {
    pages: PageArray,
    offset: usize,
    len: usize,
    pinned: bool,
    dirty: bool,
    _data: PhantomData<&'a [u8]>,
}

impl Pinned<'static> {
    /// Pins `[addr, addr + len)` of the current process for DMA in direction `dir` (the memory
    /// is written for `FromDevice` and `Bidirectional`).
    ///
    /// A range that is not fully pinnable (unmapped, read-only when written, `VM_PFNMAP` or
    /// `VM_IO`, past the end of the address space) gives `EFAULT`; nothing stays pinned.
    pub(crate) fn from_user(addr: usize, len: usize, dir: DataDirection) -> Result<Self> {
        let write = dir != DataDirection::ToDevice;
        Self::pin(addr, len, if write { bindings::FOLL_WRITE } else { 0 })
    }

    /// Pins `[addr, addr + len)` of the current process long-term (`FOLL_LONGTERM`: GUP first
    /// migrates the pages out of `ZONE_MOVABLE`/CMA and refuses fs-dax and other memory whose
    /// owner may need it back), writable, for a mapping that lives until unregistered. Errors
    /// as [`Pinned::from_user`]'s. Charging the pages to `RLIMIT_MEMLOCK` is the caller's
    /// (`raw::memlock`).
    pub(crate) fn from_user_longterm(addr: usize, len: usize) -> Result<Self> {
        Self::pin(addr, len, bindings::FOLL_WRITE | bindings::FOLL_LONGTERM)
    }

    /// Pins the range with GUP `flags` (`FOLL_WRITE`: the pages are marked dirty on release).
    fn pin(addr: usize, len: usize, flags: u32) -> Result<Self> {
        let offset = addr % PAGE_SIZE;
        let n = offset.checked_add(len).ok_or(EFAULT)?.div_ceil(PAGE_SIZE);
        let write = flags & bindings::FOLL_WRITE != 0;
        let n_int = c_int::try_from(n).map_err(|_| EFAULT)?;
        let mut pages = PageArray::new(n)?;
        // The fast path walks the page tables without the mmap lock; whatever it cannot pin
        // (a special PTE, as `remap_pfn_range` makes for a coherent buffer's `VM_IO`/`VM_PFNMAP`
        // mapping, a page not present, or, with `FOLL_LONGTERM`, a page to migrate first) it
        // hands to the slow path, which takes the mmap lock, checks each VMA and refuses
        // `VM_IO` and `VM_PFNMAP` mappings: such memory is refused alike, whatever the DMA
        // backend.
        // SAFETY: `pages` has room for `n` entries, which is what GUP may write; GUP validates
        // the user range itself and takes the current mm's mmap lock when it needs it.
        let got = unsafe {
            bindings::pin_user_pages_fast(addr - offset, n_int, flags, pages.as_mut_ptr())
        } as isize;
        if got < 0 {
            // GUP's EOVERFLOW means "range runs past the end of the address space": unpinnable
            // user memory like any other, so EFAULT.
            let err = Error::from_errno(got as c_int);
            return Err(if err == EOVERFLOW { EFAULT } else { err });
        }
        // INVARIANT: the first `got` entries are pinned.
        pages.truncate(got as usize);
        let this = Self {
            pages,
            offset,
            len,
            pinned: true,
            dirty: write,
            _data: PhantomData,
        };
        if this.pages.len() != n {
            // A partial pin: dropping `this` unpins what was pinned.
            return Err(EFAULT);
        }
        Ok(this)
    }
}

impl<'a> Pinned<'a> {
    /// Takes up to `max_len` bytes (at most `max_pages` pages) from the front of the memory a
    /// `read` fills, and advances the iterator. The device writes these pages.
    pub(crate) fn from_dest(
        iter: &mut IovIterDest<'a>,
        max_len: usize,
        max_pages: usize,
    ) -> Result<Self> {
        // SAFETY: `as_raw` of a borrowed `IovIterDest` is a valid iterator while borrowed, which
        // covers the call; the memory it describes is valid for writes for `'a`, the lifetime of
        // the returned value.
        unsafe { Self::from_iter(iter.as_raw(), max_len, max_pages, true) }
    }

    /// Takes up to `max_len` bytes (at most `max_pages` pages) from the front of the memory a
    /// `write` reads, and advances the iterator. The device reads these pages.
    pub(crate) fn from_source(
        iter: &mut IovIterSource<'a>,
        max_len: usize,
        max_pages: usize,
    ) -> Result<Self> {
        // SAFETY: `as_raw` of a borrowed `IovIterSource` is a valid iterator while borrowed, which
        // covers the call; the memory it describes is valid for reads for `'a`, the lifetime of
        // the returned value.
        unsafe { Self::from_iter(iter.as_raw(), max_len, max_pages, false) }
    }

    /// # Safety
    ///
    /// `iter` is a valid iterator for the duration of this call, and the memory it describes
    /// stays valid for `'a`.
    unsafe fn from_iter(
        iter: *mut bindings::iov_iter,
        max_len: usize,
        max_pages: usize,
        dest: bool,
    ) -> Result<Self> {
        let max_pages_u32 = u32::try_from(max_pages).map_err(|_| EINVAL)?;
        let mut pages = PageArray::new(max_pages)?;
        let mut array = pages.as_mut_ptr();
        let mut offset = 0usize;
        // SAFETY: `iter` is valid (the caller's requirement).
        let will_pin = unsafe { edu_iov_iter_extract_will_pin(iter) };
        // SAFETY: `iter` is valid; `array` points to `max_pages` entries, so the callee fills
        // them and does not allocate an array of its own.
        let got = unsafe {
            bindings::iov_iter_extract_pages(
                iter,
                &mut array,
                max_len,
                max_pages_u32,
                0,
                &mut offset,
            )
        };
        if got < 0 {
            return Err(Error::from_errno(got as c_int));
        }
        let len = got as usize;
        // INVARIANT: the extraction filled (and, for user memory, pinned) this many pages; kernel
        // iterators' pages stay valid by the caller's requirement.
        pages.truncate((offset + len).div_ceil(PAGE_SIZE));
        Ok(Self {
            pages,
            offset,
            len,
            pinned: will_pin,
            dirty: dest,
            _data: PhantomData,
        })
    }

    /// Bytes covered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The page array, the offset into the first page, and the length, for building a
    /// scatter-gather table; the pages stay held while `self` is borrowed.
    pub(super) fn parts(&mut self) -> (*mut *mut bindings::page, usize, usize, usize) {
        (
            self.pages.as_mut_ptr(),
            self.pages.len(),
            self.offset,
            self.len,
        )
    }
}

// SAFETY: the page pointers are references the value owns (pins) or borrows for `'a` (inline or in
// a vector the value owns); releasing
// pins (`unpin_user_pages_dirty_lock`) may happen on any thread.
unsafe impl Send for Pinned<'_> {}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        if self.pinned && !self.pages.is_empty() {
            // SAFETY: by the type invariant these `pages.len()` pages carry our pins, released
            // exactly once here.
            unsafe {
                bindings::unpin_user_pages_dirty_lock(
                    self.pages.as_mut_ptr(),
                    self.pages.len(),
                    self.dirty,
                )
            };
        }
    }
}
