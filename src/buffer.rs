// SPDX-License-Identifier: GPL-2.0

//! DMA buffers owned by an open file: coherent (`dma_alloc_coherent`, mapped into userspace as
//! device memory) and streaming (ordinary zeroed pages, each mapped for the device with the
//! streaming DMA API and faulted into userspace VMAs as normal pages, so GUP users work on them
//! and a zapped mapping, e.g. after `MADV_DONTNEED`, gets the same pages back on its next access).
//!
//! A buffer's memory is charged to the device's budget (`buf_cap_kib`) for as long as the buffer
//! lives; the caller checks its own cap (`file_cap_kib`) through `room`.
//!
//! Unbind revokes every buffer ([`Revoke`]), so no DMA allocation or mapping outlives the binding:
//! user mappings of coherent memory are zapped first (later accesses get `SIGBUS`), then the
//! memory is freed; streaming pages only lose their device mappings and stay valid memory for
//! whoever maps them (the pages are refcounted apart from their device mappings: every VMA holds
//! a reference to them, see `raw::vm::map_on_fault`).

use kernel::{
    device::{
        self,
        Bound, //
    },
    dma::Coherent,
    fs::File,
    mm::{
        virt::VmaNew,
        Mm, //
    },
    new_mutex,
    page::{
        Page,
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
};

use crate::{
    device::{
        Charge,
        Live,
        Revoke, //
    },
    import::Import,
    raw::{
        dma::{
            self,
            Owner,
            Pages,
            StreamMap, //
        },
        vm::{
            self,
            FaultPages,
            FileMapping, //
        },
    },
    split::{
        self,
        Backing,
        Piece, //
    },
};

/// The kind of memory of a buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `dma_alloc_coherent` memory: no syncs, mapped into userspace as device memory.
    Coherent,
    /// Ordinary pages with streaming mappings: explicit ownership syncs, GUP-able user mappings.
    Streaming,
    /// An imported dma-buf (`import.rs`): another exporter's memory, mapped for the device with
    /// explicit ownership syncs; not mapped into userspace through the node, not exported again.
    Imported,
}

/// The part of a buffer that unbind revokes.
struct Inner {
    /// Coherent memory (coherent buffers, until revoked).
    coherent: Option<Coherent<[u8]>>,
    /// The device mappings of streaming memory, one per page (streaming buffers, until revoked;
    /// the pages outlive them: `Buffer::pages` and every user mapping hold their own references).
    stream: Option<StreamMap>,
    /// The mapped attachment of an imported dma-buf (imported buffers, until revoked).
    import: Option<Import>,
    /// The device's own buffer whose dma-buf this import is (a self-import, until revoked): its
    /// mapping serves, none is made.
    alias: Option<Arc<Buffer>>,
    /// The file mapping user mappings of this buffer live in, and the file offset of the
    /// buffer's first byte, once mapped.
    mapping: Option<(FileMapping, u64)>,
    /// Address spaces that mapped the buffer (their mmap lock orders unbind after a running mmap).
    mms: KVec<ARef<Mm>>,
    revoked: bool,
}

/// A DMA buffer of a page-multiple size.
#[pin_data]
pub(crate) struct Buffer {
    size: usize,
    kind: Kind,
    /// The pages of streaming memory (streaming buffers), shared with the device mappings and
    /// with every user mapping, each of which keeps them as long as it needs them.
    pages: Option<Arc<Pages>>,
    #[pin]
    inner: Mutex<Inner>,
    /// The device budget this buffer's memory is charged to.
    _charge: Charge,
}

impl Buffer {
    /// Allocates `size` bytes (rounded up to pages) of `kind` memory and tracks it for
    /// revocation at unbind. `room`: what the caller's own cap still allows (else `ENOMEM`).
    pub(crate) fn new(live: &Live<'_>, kind: Kind, size: u64, room: usize) -> Result<Arc<Self>> {
        if size == 0 {
            return Err(EINVAL);
        }
        let size = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_next_multiple_of(PAGE_SIZE))
            .filter(|&s| s <= room)
            .ok_or(ENOMEM)?;
        let charge = live.charge(size)?;
        let buf = Self::alloc(live.dev, kind, size, charge)?;
        live.track(buf.clone())?;
        Ok(buf)
    }

    /// A buffer of the dma-buf of `fd` (see `import.rs`), tracked for revocation at unbind. Its
    /// memory is the exporter's: nothing is charged to the device's budget.
    pub(crate) fn import(live: &Live<'_>, fd: i32, dma_bits: u32) -> Result<Arc<Self>> {
        let import = Import::new(live.dev, fd, dma_bits)?;
        Self::imported(live, import.size(), |inner| inner.import = Some(import))
    }

    /// A buffer of the dma-buf of `fd` that this device exported itself from `target`
    /// (`export::own_buffer`), tracked for revocation at unbind: an import, that uses `target`'s
    /// own mapping (the device does not map the same pages twice: two streaming mappings of one
    /// page for one device would make each one's partial syncs ambiguous). Nothing is charged:
    /// `target` is.
    pub(crate) fn alias(live: &Live<'_>, target: Arc<Buffer>) -> Result<Arc<Self>> {
        Self::imported(live, target.size(), |inner| inner.alias = Some(target))
    }

    /// An import of `size` bytes whose revocable part `init` fills in, charged nothing and
    /// tracked for revocation at unbind.
    fn imported(live: &Live<'_>, size: usize, init: impl FnOnce(&mut Inner)) -> Result<Arc<Self>> {
        let buf = Self::build(Kind::Imported, size, None, live.charge(0)?, init)?;
        live.track(buf.clone())?;
        Ok(buf)
    }

    /// The buffer this self-import stands for (see [`Buffer::alias`]), if it is one: taken out
    /// of the lock, so that its own lock is never taken inside this one's. `ENODEV` once revoked.
    fn target(&self) -> Result<Option<Arc<Buffer>>> {
        let inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        Ok(inner.alias.clone())
    }

    fn alloc(
        dev: &device::Device<Bound>,
        kind: Kind,
        size: usize,
        charge: Charge,
    ) -> Result<Arc<Self>> {
        let n = size / PAGE_SIZE;
        let (mut mem, mut pages, mut stream) = (None, None, None);
        match kind {
            Kind::Imported => return Err(EINVAL),
            Kind::Coherent => {
                // ENOMEM also when the mask cannot be satisfied (e.g. ZONE_DMA exhausted).
                mem = Some(
                    Coherent::<u8>::zeroed_slice(dev, size, GFP_KERNEL | __GFP_NOWARN)
                        .map_err(|_| ENOMEM)?,
                );
            }
            Kind::Streaming => {
                let p = Pages::alloc(n)?;
                stream = Some(StreamMap::new(dev, p.clone())?);
                pages = Some(p);
            }
        }
        Self::build(kind, size, pages, charge, |inner| {
            inner.coherent = mem;
            inner.stream = stream;
        })
    }

    /// A buffer of `kind` whose revocable part `init` fills in.
    fn build(
        kind: Kind,
        size: usize,
        pages: Option<Arc<Pages>>,
        charge: Charge,
        init: impl FnOnce(&mut Inner),
    ) -> Result<Arc<Self>> {
        let mut inner = Inner {
            coherent: None,
            stream: None,
            import: None,
            alias: None,
            mapping: None,
            mms: KVec::new(),
            revoked: false,
        };
        init(&mut inner);
        Arc::pin_init(
            try_pin_init!(Self {
                size,
                kind,
                pages,
                inner <- new_mutex!(inner, "Buffer::inner"),
                _charge: charge,
            }),
            GFP_KERNEL,
        )
    }

    /// Size in bytes (a page multiple, except for an import: the dma-buf's size).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Bytes of the device's memory the buffer holds (0 for an import: the exporter's memory).
    pub(crate) fn held(&self) -> usize {
        if self.kind == Kind::Imported {
            0
        } else {
            self.size
        }
    }

    /// The kind of memory.
    pub(crate) fn kind(&self) -> Kind {
        self.kind
    }

    /// Checks that `[offset, offset + len)` lies in the buffer; returns `(offset, end)`.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(usize, usize)> {
        split::range_in(offset, len, self.size).ok_or(EINVAL)
    }

    /// Appends the device pieces covering `[offset, offset + len)`, split at window steps of
    /// the range and, for streaming memory, at pages.
    pub(crate) fn pieces(&self, offset: usize, len: usize, out: &mut KVec<Piece>) -> Result {
        if let Some(target) = self.target()? {
            return target.pieces(offset, len, out);
        }
        let inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        if let Some(import) = &inner.import {
            return import.pieces(offset, len, out);
        }
        let push = |p: Piece| out.push(p, GFP_KERNEL).map_err(Error::from);
        match (&inner.coherent, &inner.stream) {
            (Some(c), _) => {
                let backing = Backing::<fn(usize) -> Option<u64>>::Contiguous {
                    bus: c.dma_handle(),
                    len: c.size(),
                };
                split::buffer_pieces(&backing, offset, len, push)
            }
            (None, Some(stream)) => {
                let backing = Backing::Pages {
                    page_size: PAGE_SIZE,
                    bus_of: |i: usize| stream.addr(i),
                };
                split::buffer_pieces(&backing, offset, len, push)
            }
            (None, None) => Err(ENODEV),
        }
    }

    /// Hands `[offset, offset + len)` to `to` (streaming memory; a no-op for coherent memory).
    pub(crate) fn sync(&self, offset: usize, len: usize, to: Owner) -> Result {
        if let Some(target) = self.target()? {
            return target.sync(offset, len, to);
        }
        let inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        if let Some(import) = &inner.import {
            return import.sync(offset, len, to);
        }
        let Some(stream) = &inner.stream else {
            return Ok(());
        };
        split::for_each_page_span(offset, len, PAGE_SIZE, |i, in_page, n| {
            stream.sync(i, in_page, n, to)
        })
    }

    /// The pages of streaming memory, for a dma-buf export: the same refcounted page list as the
    /// device and user mappings, which the dma-buf keeps valid memory however long it lives.
    /// `EINVAL` for coherent memory (not necessarily pages) and imports (not ours to share:
    /// share the dma-buf itself), `ENODEV` once revoked.
    pub(crate) fn export_pages(&self) -> Result<Arc<Pages>> {
        if self.inner.lock().revoked {
            return Err(ENODEV);
        }
        self.pages.clone().ok_or(EINVAL)
    }

    /// Maps pages `first..` of the buffer into `vma` (already validated: shared, in bounds);
    /// `base` is the file offset of the buffer's first byte. Coherent memory is mapped now;
    /// streaming pages are faulted in by file offset, on each access that finds no entry.
    pub(crate) fn mmap(
        &self,
        dev: &device::Device<Bound>,
        file: &File,
        vma: &VmaNew,
        first: usize,
        base: u64,
    ) -> Result {
        let mut inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        // An import is mapped through its dma-buf fd (the exporter's `mmap`), not the node.
        if self.kind == Kind::Imported {
            return Err(EINVAL);
        }
        let mm = vma.mm();
        if !inner.mms.iter().any(|m| m.as_raw() == mm.as_raw()) {
            inner.mms.push(ARef::from(&**mm), GFP_KERNEL)?;
        }
        if inner.mapping.is_none() {
            inner.mapping = Some((FileMapping::of(file), base));
        }
        match &inner.coherent {
            Some(c) => {
                // Device memory semantics whatever the DMA backend (dma-direct remaps PFNs,
                // iommu-dma inserts pages): no GUP (EFAULT), no core dump.
                vma.set_io();
                vma.set_dontdump();
                // SAFETY: `c` lives until `revoke`, which zaps every user mapping of the buffer
                // (all are in `inner.mapping`, recorded above) before it frees `c`; a buffer that
                // is never revoked keeps `c` as long as it lives, and its mappings hold the file
                // that holds the buffer (freed mapped coherent buffers wait in the file).
                unsafe { dma::mmap_coherent(dev, vma, c, first) }
            }
            None => {
                let pages = self.pages.as_ref().ok_or(ENODEV)?;
                // Fault only, no prefault: every page table entry is made by the fault handler,
                // on first access and again after a zap (`MADV_DONTNEED`), so the one path that
                // must work after a zap is the one every access takes (and every test of a
                // streaming mapping exercises it). A first touch costs one minor fault per page,
                // nothing next to a 100 ms device command; GUP faults pages in itself (the slow
                // path after GUP-fast finds no entry), long-term write pins included: the VMA
                // has no `page_mkwrite`, so it needs no dirty tracking. The last step: nothing
                // may fail after it (see `map_on_fault`).
                vm::map_on_fault(vma, pages.clone());
                Ok(())
            }
        }
    }
}

/// A streaming buffer's user mappings fault its pages in by file page offset: below the handle
/// bits, the offset is the page in the buffer (the encoding `split::mmap_request` decodes).
impl FaultPages for Pages {
    fn page(&self, pgoff: usize) -> Option<&Page> {
        let (_, i) = split::mmap_request(pgoff, 1, PAGE_SHIFT as u32, |_| Some(self.len()))?;
        self.get(i)
    }
}

impl Revoke for Buffer {
    fn revoke(&self) {
        let (coherent, mms, mapping, import, alias) = {
            let mut inner = self.inner.lock();
            if inner.revoked {
                return;
            }
            inner.revoked = true;
            // Streaming pages stay for user mappings (which hold their own references); the
            // device mappings go now.
            inner.stream = None;
            (
                inner.coherent.take(),
                core::mem::take(&mut inner.mms),
                inner.mapping.take(),
                inner.import.take(),
                inner.alias.take(),
            )
        };
        // Out of the lock: unmaps, detaches and puts the dma-buf (whose release may run now);
        // a self-import lets go of its buffer (maybe the last reference: still bound here).
        drop(import);
        drop(alias);
        let Some(coherent) = coherent else {
            return;
        };
        // An mmap that passed its `bound()` check may still be linking its VMA into the file
        // mapping; it holds its mmap lock until then, so taking that lock orders us after it.
        for mm in mms.iter() {
            if let Some(user) = mm.mmget_not_zero() {
                drop(user.mmap_read_lock());
            }
        }
        // Every user mapping of the buffer is in `mapping`: zap them (later accesses: SIGBUS),
        // then free the memory.
        if let Some((mapping, base)) = mapping {
            mapping.zap(base, self.size);
        }
        drop(coherent);
    }
}
