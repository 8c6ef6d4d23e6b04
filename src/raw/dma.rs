// SPDX-License-Identifier: GPL-2.0

//! The DMA API beyond `kernel::dma::Coherent`: page lists mapped for streaming DMA page by page
//! with explicit ownership syncs (the pages refcounted apart from their device mappings, which
//! may end first; a dma-buf export shares them too), scatter-gather tables over pinned user pages, and mmap of coherent
//! memory.
//!
//! 7.2 gap: the `kernel` crate has no streaming single-page mapping (`dma_map_page_attrs` plus
//! `dma_sync_single_for_{cpu,device}`, which are static inline: the C shim), its `SGTable` owns
//! its pages (it cannot map pages pinned by GUP) and has no `dma_mmap_attrs`. Upstream home:
//! `kernel::dma` (a `StreamingMapping` type and `Coherent::mmap`) and `kernel::scatterlist`
//! (an `SGTable` over borrowed pages).

use kernel::{
    bindings,
    device::{
        self,
        Bound, //
    },
    dma::{
        Coherent,
        DataDirection,
        DmaAddress, //
    },
    error::to_result,
    mm::virt::VmaNew,
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    scatterlist::SGTable,
    sync::{
        aref::ARef,
        Arc, //
    },
    types::Opaque,
};

use super::{
    gup::Pinned,
    raw_dev, //
};

// The shim (`shim.c`): these are static inline in `linux/dma-mapping.h`.
// `improper_ctypes`: bindgen gives some kernel structs zero-sized members, which only matters
// for by-value use; these take pointers.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_dma_mapping_error(dev: *mut bindings::device, addr: DmaAddress) -> c_int;
    fn edu_dev_is_dma_coherent(dev: *mut bindings::device) -> bool;
    fn edu_dma_sync_single_for_cpu(
        dev: *mut bindings::device,
        addr: DmaAddress,
        size: usize,
        dir: bindings::dma_data_direction,
    );
    fn edu_dma_sync_single_for_device(
        dev: *mut bindings::device,
        addr: DmaAddress,
        size: usize,
        dir: bindings::dma_data_direction,
    );
}

/// Whether `dev`'s DMA is cache-coherent (`dev_is_dma_coherent`): false where the kernel does
/// cache maintenance for it (its coherent buffers are uncached remaps, its streaming syncs clean
/// and invalidate caches), as on an arm64 PCIe host without `dma-coherent` in its device tree.
pub(crate) fn is_coherent(dev: &device::Device<Bound>) -> bool {
    // SAFETY: `dev` is a valid, bound device; the call only reads its `dma_coherent` flag.
    unsafe { edu_dev_is_dma_coherent(raw_dev(dev)) }
}

/// Who a synced range is handed to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The CPU may read what the device wrote (`dma_sync_single_for_cpu`).
    Cpu,
    /// The device may read what the CPU wrote (`dma_sync_single_for_device`).
    Device,
}

/// Ordinary zeroed pages, owned together: the memory of a streaming buffer, shared (`Arc`) by
/// the buffer, its device mappings ([`StreamMap`]), its user mappings and the dma-bufs exported
/// from it (`super::dmabuf`), so that each of them keeps the pages for as long as it needs them.
pub(crate) struct Pages(KVec<Page>);

impl Pages {
    /// Allocates `n` zeroed pages.
    pub(crate) fn alloc(n: usize) -> Result<Arc<Self>> {
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            pages.push(
                Page::alloc_page(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN)?,
                GFP_KERNEL,
            )?;
        }
        Ok(Arc::new(Self(pages), GFP_KERNEL)?)
    }

    /// Page `i`.
    pub(crate) fn get(&self, i: usize) -> Option<&Page> {
        self.0.get(i)
    }

    /// The number of pages.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no pages.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pages, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Page> {
        self.0.iter()
    }
}

/// Every page of a [`Pages`], each mapped for the device on its own with the streaming DMA API
/// (bidirectional).
///
/// # Invariants
///
/// `addrs[i]` is a live mapping of page `i` of `pages` for `dev`, one page long, for every `i`
/// below `addrs.len()`. `Drop` unmaps them all; only then do the fields drop and the `pages`
/// reference go: unmap comes before the pages can be freed.
pub(crate) struct StreamMap {
    dev: ARef<device::Device>,
    addrs: KVec<DmaAddress>,
    pages: Arc<Pages>,
}

impl StreamMap {
    /// Maps every page of `pages` for `dev`; the mappings hold a reference to the pages.
    pub(crate) fn new(dev: &device::Device<Bound>, pages: Arc<Pages>) -> Result<Self> {
        let raw = raw_dev(dev);
        let dir = DataDirection::Bidirectional.into();
        // INVARIANT: no mapping yet; each is pushed once made, and an early return unmaps those
        // made so far (`Drop`).
        let mut map = Self {
            dev: dev.into(),
            addrs: KVec::with_capacity(pages.len(), GFP_KERNEL)?,
            pages,
        };
        for page in map.pages.0.iter() {
            // SAFETY: `dev` is bound; `page` is a valid order-0 page, which `map` keeps (through
            // its `pages` reference) until it has unmapped it.
            let addr =
                unsafe { bindings::dma_map_page_attrs(raw, page.as_ptr(), 0, PAGE_SIZE, dir, 0) };
            // SAFETY: `addr` was just returned by `dma_map_page_attrs` for `raw`.
            if unsafe { edu_dma_mapping_error(raw, addr) } != 0 {
                return Err(ENOMEM);
            }
            // Cannot fail: the capacity is the number of pages.
            if map.addrs.push_within_capacity(addr).is_err() {
                // SAFETY: `addr` is the live mapping made above for `raw`, one page long, in this
                // direction; it is unmapped once, here, since it is not in `addrs`.
                unsafe { unmap_page(raw, addr) };
                return Err(ENOMEM);
            }
        }
        Ok(map)
    }

    /// The bus address of page `i`.
    pub(crate) fn addr(&self, i: usize) -> Option<DmaAddress> {
        self.addrs.get(i).copied()
    }

    /// Hands `[offset, offset + len)` of page `i` to `to`; the range is clamped to the page.
    /// `EINVAL` if there is no page `i`.
    pub(crate) fn sync(&self, i: usize, offset: usize, len: usize, to: Owner) -> Result {
        let &addr = self.addrs.get(i).ok_or(EINVAL)?;
        let offset = offset.min(PAGE_SIZE);
        let len = len.min(PAGE_SIZE - offset);
        let raw = raw_dev(&self.dev);
        let dir = DataDirection::Bidirectional.into();
        let addr = addr + offset as u64;
        match to {
            // SAFETY: `[addr, addr + len)` lies in a live mapping of this value (clamped above),
            // made for `raw` in the direction passed.
            Owner::Cpu => unsafe { edu_dma_sync_single_for_cpu(raw, addr, len, dir) },
            // SAFETY: `[addr, addr + len)` lies in a live mapping of this value (clamped above),
            // made for `raw` in the direction passed.
            Owner::Device => unsafe { edu_dma_sync_single_for_device(raw, addr, len, dir) },
        }
        Ok(())
    }
}

impl Drop for StreamMap {
    fn drop(&mut self) {
        let raw = raw_dev(&self.dev);
        for &addr in self.addrs.iter() {
            // SAFETY: by the type invariant `addr` is a live one-page bidirectional mapping made
            // for `raw`; each is unmapped exactly once, here, before `pages` is released.
            unsafe { unmap_page(raw, addr) };
        }
    }
}

/// Hands `[addr, addr + len)` of a streaming mapping of `dev` to `to` (`dma_sync_single_*`, a
/// partial sync of one bus-contiguous range), for the sibling leaves (`dmabuf_import`).
///
/// # Safety
///
/// `dev` is a valid device and `[addr, addr + len)` lies in one live streaming mapping made for
/// it in direction `dir`.
pub(super) unsafe fn sync_single(
    dev: *mut bindings::device,
    addr: DmaAddress,
    len: usize,
    dir: DataDirection,
    to: Owner,
) {
    let dir = dir.into();
    match to {
        // SAFETY: the range lies in a live mapping for `dev` in `dir` (this function's
        // requirement).
        Owner::Cpu => unsafe { edu_dma_sync_single_for_cpu(dev, addr, len, dir) },
        // SAFETY: as above.
        Owner::Device => unsafe { edu_dma_sync_single_for_device(dev, addr, len, dir) },
    }
}

/// Whether `[bus, bus + len)` is non-empty and lies in one of the mapped segments `segs`
/// (bus address, length): the range a partial [`sync_single`] may name.
pub(super) fn within_segment(
    mut segs: impl Iterator<Item = (DmaAddress, usize)>,
    bus: DmaAddress,
    len: usize,
) -> bool {
    let Some(end) = bus.checked_add(len as u64) else {
        return false;
    };
    len != 0 && segs.any(|(b, n)| b <= bus && b.checked_add(n as u64).is_some_and(|e| end <= e))
}

/// Unmaps one page mapped by [`StreamMap::new`].
///
/// No sync on unmap: ownership moves only through explicit syncs, and after the last
/// `Owner::Cpu` sync the CPU's view is the buffer's content (a bounce buffer copied back now
/// would overwrite what the CPU wrote since).
///
/// # Safety
///
/// `addr` is a live one-page bidirectional mapping made for `dev`, not used after this call.
unsafe fn unmap_page(dev: *mut bindings::device, addr: DmaAddress) {
    let dir = DataDirection::Bidirectional.into();
    let attrs = bindings::DMA_ATTR_SKIP_CPU_SYNC as c_ulong;
    // SAFETY: `addr` is a live mapping for `dev` of this size and direction, unmapped once (this
    // function's requirement).
    unsafe { bindings::dma_unmap_page_attrs(dev, addr, PAGE_SIZE, dir, attrs) };
}

/// Maps `buf` into `vma` from page `first_page` of the buffer (`dma_mmap_coherent`).
///
/// # Safety
///
/// The caller keeps `buf` alive as long as the mapping may exist, or removes the mapping's page
/// table entries (e.g. [`super::vm::FileMapping::zap`]) before it frees `buf`.
pub(crate) unsafe fn mmap_coherent(
    dev: &device::Device<Bound>,
    vma: &VmaNew,
    buf: &Coherent<[u8]>,
    first_page: usize,
) -> Result {
    let raw = vma.as_ptr();
    // SAFETY: `vma` is being set up by `mmap` and is exclusively ours while borrowed.
    let pgoff = unsafe { (*raw).vm_pgoff };
    // SAFETY: `vma` is being set up by `mmap` and is exclusively ours while borrowed.
    // `dma_mmap_attrs` reads `vm_pgoff` as the page offset into the buffer (and checks it
    // against the size).
    unsafe { (*raw).vm_pgoff = first_page };
    // SAFETY: `dev` is bound; `buf` was allocated for it by `dma_alloc_attrs` with these CPU and
    // bus addresses and this size; `raw` is a VMA being set up; the caller keeps `buf` alive as
    // long as the mapping, or zaps it first (this function's requirement).
    let ret = to_result(unsafe {
        bindings::dma_mmap_attrs(
            raw_dev(dev),
            raw,
            buf.as_mut_ptr().cast(),
            buf.dma_handle(),
            buf.size(),
            0,
        )
    });
    // SAFETY: `vma` is still being set up and ours; it is not linked into the file mapping yet.
    // Restoring the file offset keeps it where `unmap_mapping_range` on the buffer's file range
    // finds it.
    unsafe { (*raw).vm_pgoff = pgoff };
    ret
}

/// How an [`SgMap`] maps its pages.
enum SgMapping {
    /// Several pages: a scatter-gather table over them, held by value (no allocation of its own:
    /// a `struct sg_table` only points to its scatterlist, nothing points back into it, so it
    /// may move).
    Table(Opaque<bindings::sg_table>),
    /// One page (one 4 KiB command's page-aligned range): `len` bytes at `addr`, mapped with
    /// `dma_map_page_attrs`, without a table (no scatterlist to allocate and build).
    Page { addr: DmaAddress, len: usize },
}

/// [`Pinned`] pages, mapped for the device.
///
/// # Invariants
///
/// `map` maps the pages of `_pinned` for `dev` in direction `dir`: an allocated table over them,
/// mapped, or the one page's `len` bytes from its offset, mapped at `addr`. `Drop` unmaps it
/// (syncing bounce buffers back) and frees the table; only then do the fields drop and `_pinned`
/// releases the pages: unmap comes before unpin.
pub(crate) struct SgMap<'a> {
    map: SgMapping,
    dev: ARef<device::Device>,
    dir: DataDirection,
    /// Held until after the unmap in `Drop`, then released by its own `Drop`.
    _pinned: Pinned<'a>,
}

impl<'a> SgMap<'a> {
    /// Maps `pinned` (one page directly, more through a scatter-gather table); `max_segment`
    /// caps each segment. On error the pages are released.
    pub(crate) fn new(
        dev: &device::Device<Bound>,
        mut pinned: Pinned<'a>,
        dir: DataDirection,
        max_segment: u32,
    ) -> Result<Self> {
        let (pages, n_pages, offset, len) = pinned.parts();
        let raw = raw_dev(dev);
        let map = if n_pages == 1 && len as u64 <= u64::from(max_segment) {
            // SAFETY: `dev` is bound; `pages` holds one valid page, held by `pinned` (which the
            // returned value owns and releases only after the unmap), and `offset .. offset +
            // len` lies within it.
            let addr =
                unsafe { bindings::dma_map_page_attrs(raw, *pages, offset, len, dir.into(), 0) };
            // SAFETY: `addr` was just returned by `dma_map_page_attrs` for `raw`.
            if unsafe { edu_dma_mapping_error(raw, addr) } != 0 {
                return Err(ENOMEM);
            }
            SgMapping::Page { addr, len }
        } else {
            let n_pages = u32::try_from(n_pages).map_err(|_| E2BIG)?;
            let offset = u32::try_from(offset).map_err(|_| EINVAL)?;
            let sgt = Opaque::<bindings::sg_table>::zeroed();
            // SAFETY: `sgt` is a zeroed table; `pages` holds `n_pages` valid pages covering
            // `offset .. offset + len`, held by `pinned`, which the returned value owns and
            // releases only after freeing the table.
            to_result(unsafe {
                bindings::sg_alloc_table_from_pages_segment(
                    sgt.get(),
                    pages,
                    n_pages,
                    offset,
                    len,
                    max_segment,
                    bindings::GFP_KERNEL,
                )
            })?;
            // SAFETY: `dev` is bound and `sgt` is a valid, allocated table.
            let ret = unsafe { bindings::dma_map_sgtable(raw, sgt.get(), dir.into(), 0) };
            if ret != 0 {
                // SAFETY: the table was allocated above and is not mapped; it is freed once.
                unsafe { bindings::sg_free_table(sgt.get()) };
                return Err(Error::from_errno(ret));
            }
            SgMapping::Table(sgt)
        };
        // INVARIANT: `map` maps `pinned`'s pages for `dev` in `dir`.
        Ok(Self {
            map,
            dev: dev.into(),
            dir,
            _pinned: pinned,
        })
    }

    /// The mapped segments, as (bus address, length), in order.
    pub(crate) fn segments(&self) -> impl Iterator<Item = (DmaAddress, usize)> + '_ {
        let (table, page) = match &self.map {
            // SAFETY: the table is allocated and mapped, and not modified while `self` is
            // borrowed.
            SgMapping::Table(sgt) => (Some(unsafe { SGTable::from_raw(sgt.get()) }), None),
            SgMapping::Page { addr, len } => (None, Some((*addr, *len))),
        };
        let segs = table
            .into_iter()
            .flat_map(|t| t.iter().map(|sg| (sg.dma_address(), sg.dma_len() as usize)));
        Iterator::chain(segs, page)
    }

    /// Hands `[bus, bus + len)` of the mapping to `to` (a long-lived mapping used for several
    /// transfers). `EINVAL` unless the range lies in one mapped segment.
    pub(crate) fn sync(&self, bus: DmaAddress, len: usize, to: Owner) -> Result {
        if !within_segment(self.segments(), bus, len) {
            return Err(EINVAL);
        }
        // SAFETY: `[bus, bus + len)` lies in a segment of the table, mapped for `dev` in `dir`
        // (checked above, type invariant).
        unsafe { sync_single(raw_dev(&self.dev), bus, len, self.dir, to) };
        Ok(())
    }
}

// Nothing points into an `SgMap` (the table only points to its scatterlist): it may move, pinned
// or not, although `Opaque` opts out of `Unpin`.
impl Unpin for SgMap<'_> {}

// SAFETY: the mapping is owned by the value and only read through `&self`; unmapping it and
// freeing the table (`dma_unmap_sgtable`, `sg_free_table`, `dma_unmap_page_attrs`) may happen on
// any thread, and `Pinned` is `Send`.
unsafe impl Send for SgMap<'_> {}

impl Drop for SgMap<'_> {
    fn drop(&mut self) {
        let raw = raw_dev(&self.dev);
        match &self.map {
            SgMapping::Table(sgt) => {
                // SAFETY: by the type invariant the table is mapped for `dev` in `dir`; it is
                // unmapped exactly once, before it is freed and before `_pinned` releases the
                // pages.
                unsafe { bindings::dma_unmap_sgtable(raw, sgt.get(), self.dir.into(), 0) };
                // SAFETY: the table is allocated and no longer mapped; it is freed exactly once.
                unsafe { bindings::sg_free_table(sgt.get()) };
            }
            SgMapping::Page { addr, len } => {
                // SAFETY: by the type invariant `len` bytes at `addr` are mapped for `dev` in
                // `dir`; unmapped exactly once, before `_pinned` releases the page.
                unsafe { bindings::dma_unmap_page_attrs(raw, *addr, *len, self.dir.into(), 0) };
            }
        }
    }
}
