// SPDX-License-Identifier: GPL-2.0

//! DMA buffers owned by an open file: coherent (`dma_alloc_coherent`, mapped into userspace as
//! PFNs) and streaming (ordinary zeroed pages, each mapped for the device with the streaming DMA
//! API and inserted into userspace VMAs as normal pages, so GUP users work on them).
//!
//! Memory is charged to the device (module parameter `buf_cap_kib`) until the buffer is dropped,
//! and counted against the file that holds it (`file_cap_kib`).
//!
//! Unbind revokes every buffer of the device ([`Buffer::revoke`]), so no DMA allocation or mapping
//! outlives the binding: user mappings of coherent memory are zapped first (later accesses get
//! `SIGBUS`), then the memory is freed; streaming pages only lose their device mappings and stay
//! valid memory for whoever maps them.

use kernel::{
    device::{
        self,
        Bound, //
    },
    dma::{
        Coherent,
        DmaAddress, //
    },
    fs::File,
    mm::{
        virt::VmaNew,
        Mm, //
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
        Mutex, //
    },
};

use crate::{
    device::EduDevice,
    raw::{
        self,
        FileMapping,
        PageMap, //
    },
    regs::DMA_WINDOW_SIZE,
    uapi, //
};

/// A piece of a buffer that one device command can move: bus address and length.
pub(crate) type Piece = (DmaAddress, usize);

/// The part of a buffer that unbind revokes.
struct Inner {
    /// Coherent memory (coherent buffers, until revoked).
    coherent: Option<Coherent<[u8]>>,
    /// Device mappings of `Buffer::pages` (streaming buffers, until revoked).
    maps: KVec<PageMap>,
    /// The file mapping user mappings of this buffer live in, and the file offset of the
    /// buffer's first byte, once mapped.
    mapping: Option<(FileMapping, u64)>,
    /// Address spaces that mapped the buffer (their mmap lock orders unbind after a running mmap).
    mms: KVec<ARef<Mm>>,
    revoked: bool,
}

/// A DMA buffer of a page-multiple size.
#[pin_data(PinnedDrop)]
pub(crate) struct Buffer {
    size: usize,
    coherent: bool,
    /// Streaming memory (empty for coherent buffers); outlives the device mappings.
    pages: KVec<Page>,
    #[pin]
    inner: Mutex<Inner>,
    edu: Arc<EduDevice>,
}

impl Buffer {
    /// Allocates `size` bytes (rounded up to pages) of `kind` memory for `edu` and registers it
    /// with the device for revocation. `room`: what the caller's own cap still allows.
    pub(crate) fn new(
        dev: &device::Device<Bound>,
        edu: &Arc<EduDevice>,
        size: u64,
        kind: u32,
        room: usize,
    ) -> Result<Arc<Self>> {
        let cap = *crate::module_parameters::buf_cap_kib.value() as usize * 1024;
        let coherent = match kind {
            uapi::EDU_DMA_BUF_COHERENT => true,
            uapi::EDU_DMA_BUF_STREAMING => false,
            _ => return Err(EINVAL),
        };
        if size == 0 {
            return Err(EINVAL);
        }
        let size = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_next_multiple_of(PAGE_SIZE))
            .filter(|&s| s <= cap && s <= room)
            .ok_or(ENOMEM)?;
        {
            let mut st = edu.state.lock();
            if st.buf_bytes + size > cap {
                return Err(ENOMEM);
            }
            st.buf_bytes += size;
        }
        match Self::alloc(dev, edu, size, coherent) {
            // From here on `Drop` returns the charge.
            Ok(buf) => edu.register_buffer(buf.clone()).map(|()| buf),
            Err(e) => {
                edu.state.lock().buf_bytes -= size;
                Err(e)
            }
        }
    }

    fn alloc(
        dev: &device::Device<Bound>,
        edu: &Arc<EduDevice>,
        size: usize,
        coherent: bool,
    ) -> Result<Arc<Self>> {
        let n = size / PAGE_SIZE;
        let mut pages = KVec::new();
        let mut maps = KVec::new();
        let mut mem = None;
        if coherent {
            // ENOMEM also when the mask cannot be satisfied (e.g. ZONE_DMA exhausted).
            mem = Some(
                Coherent::<u8>::zeroed_slice(dev, size, GFP_KERNEL | __GFP_NOWARN)
                    .map_err(|_| ENOMEM)?,
            );
        } else {
            pages = KVec::with_capacity(n, GFP_KERNEL)?;
            maps = KVec::with_capacity(n, GFP_KERNEL)?;
            for _ in 0..n {
                let page = raw::alloc_page()?;
                maps.push(PageMap::new(dev, &page)?, GFP_KERNEL)?;
                pages.push(page, GFP_KERNEL)?;
            }
        }
        Arc::pin_init(
            try_pin_init!(Self {
                size,
                coherent,
                pages,
                inner <- new_mutex!(Inner {
                    coherent: mem,
                    maps,
                    mapping: None,
                    mms: KVec::new(),
                    revoked: false,
                }),
                edu: edu.clone(),
            }),
            GFP_KERNEL,
        )
    }

    /// Size in bytes (a page multiple).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Whether this is coherent memory.
    pub(crate) fn is_coherent(&self) -> bool {
        self.coherent
    }

    /// Checks that `[offset, offset + len)` lies in the buffer; returns the end.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<usize> {
        offset
            .checked_add(len)
            .filter(|&end| end <= self.size as u64)
            .map(|end| end as usize)
            .ok_or(EINVAL)
    }

    /// Appends the device pieces covering `[offset, offset + len)` (already range-checked), each
    /// within one page for streaming memory and within one window-size step of the range.
    pub(crate) fn pieces(&self, offset: usize, len: usize, out: &mut KVec<Piece>) -> Result {
        let inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            let step = (pos - offset) / DMA_WINDOW_SIZE;
            let step_end = (offset + (step + 1) * DMA_WINDOW_SIZE).min(end);
            let (bus, n) = match &inner.coherent {
                Some(c) => (c.dma_handle() + pos as u64, step_end - pos),
                None => {
                    let in_page = pos % PAGE_SIZE;
                    let n = (PAGE_SIZE - in_page).min(step_end - pos);
                    (inner.maps[pos / PAGE_SIZE].addr() + in_page as u64, n)
                }
            };
            out.push((bus, n), GFP_KERNEL)?;
            pos += n;
        }
        Ok(())
    }

    /// Hands `[offset, offset + len)` to the CPU or to the device (streaming memory only).
    pub(crate) fn sync(&self, offset: usize, len: usize, for_cpu: bool) -> Result {
        let inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        let mut pos = offset;
        while pos < offset + len && !self.coherent {
            let in_page = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(offset + len - pos);
            inner.maps[pos / PAGE_SIZE].sync(in_page, n, for_cpu);
            pos += n;
        }
        Ok(())
    }

    /// Maps pages `first..` of the buffer into `vma` (already validated: shared, in bounds).
    pub(crate) fn mmap(
        &self,
        dev: &device::Device<Bound>,
        file: &File,
        vma: &VmaNew,
        first: usize,
    ) -> Result {
        let mut inner = self.inner.lock();
        if inner.revoked {
            return Err(ENODEV);
        }
        let mm = vma.mm();
        if !inner.mms.iter().any(|m| m.as_raw() == mm.as_raw()) {
            inner.mms.push(ARef::from(&**mm), GFP_KERNEL)?;
        }
        if inner.mapping.is_none() {
            let base = (raw::vma_pgoff(vma) - first) as u64 * PAGE_SIZE as u64;
            inner.mapping = Some((FileMapping::of(file), base));
        }
        match &inner.coherent {
            Some(c) => {
                // Device memory semantics whatever the DMA backend (dma-direct remaps PFNs,
                // iommu-dma inserts pages): no GUP (EFAULT), no core dump.
                vma.set_io();
                vma.set_dontdump();
                raw::mmap_coherent(dev, vma, c, first)
            }
            None => {
                let mixed = vma.set_mixedmap();
                let n = (vma.end() - vma.start()) / PAGE_SIZE;
                for (i, page) in self.pages.iter().skip(first).take(n).enumerate() {
                    mixed.vm_insert_page(vma.start() + i * PAGE_SIZE, page)?;
                }
                Ok(())
            }
        }
    }

    /// Unbind: releases every DMA allocation and mapping of the buffer. The caller guarantees
    /// that no command and no file operation uses the device any more.
    pub(crate) fn revoke(&self) {
        let (coherent, mms, mapping) = {
            let mut inner = self.inner.lock();
            if inner.revoked {
                return;
            }
            inner.revoked = true;
            // Streaming pages stay (user mappings hold them); their device mappings go now.
            inner.maps.clear();
            (
                inner.coherent.take(),
                core::mem::take(&mut inner.mms),
                inner.mapping.take(),
            )
        };
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

#[pinned_drop]
impl PinnedDrop for Buffer {
    fn drop(self: Pin<&mut Self>) {
        self.edu.state.lock().buf_bytes -= self.size;
    }
}
