// SPDX-License-Identifier: GPL-2.0

//! DMA buffers owned by an open file: coherent (`dma_alloc_coherent`, mapped into userspace as
//! PFNs) and streaming (ordinary zeroed pages, each mapped for the device with the streaming DMA
//! API and inserted into userspace VMAs as normal pages, so GUP users work on them).
//!
//! Memory is charged to the device (module parameter `buf_cap_kib`) until the buffer is dropped.

use kernel::{
    device::{
        self,
        Bound, //
    },
    dma::{
        Coherent,
        DmaAddress, //
    },
    mm::virt::VmaNew,
    page::{
        Page,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::Arc,
};

use crate::{
    device::EduDevice,
    raw::{
        self,
        PageMap, //
    },
    regs::DMA_WINDOW_SIZE,
    uapi, //
};

/// Streaming memory: pages and their device mappings (dropped first).
struct Streaming {
    maps: KVec<PageMap>,
    pages: KVec<Page>,
}

enum Mem {
    Coherent(Coherent<[u8]>),
    Streaming(Streaming),
}

/// A DMA buffer of a page-multiple size.
pub(crate) struct Buffer {
    mem: Mem,
    size: usize,
    edu: Arc<EduDevice>,
}

/// A piece of a buffer that one device command can move: bus address and length.
pub(crate) type Piece = (DmaAddress, usize);

impl Buffer {
    /// Allocates `size` bytes (rounded up to pages) of `kind` memory for `edu`.
    pub(crate) fn new(
        dev: &device::Device<Bound>,
        edu: &Arc<EduDevice>,
        size: u64,
        kind: u32,
    ) -> Result<Self> {
        let cap = *crate::module_parameters::buf_cap_kib.value() as usize * 1024;
        if size == 0 || (kind != uapi::EDU_DMA_BUF_COHERENT && kind != uapi::EDU_DMA_BUF_STREAMING)
        {
            return Err(EINVAL);
        }
        let size = usize::try_from(size)
            .ok()
            .and_then(|s| s.checked_next_multiple_of(PAGE_SIZE))
            .filter(|&s| s <= cap)
            .ok_or(ENOMEM)?;
        {
            let mut st = edu.state.lock();
            if st.buf_bytes + size > cap {
                return Err(ENOMEM);
            }
            st.buf_bytes += size;
        }
        // From here on `Drop` (or `uncharge` on failure) returns the charge.
        let mem = match kind {
            uapi::EDU_DMA_BUF_COHERENT => {
                Coherent::<u8>::zeroed_slice(dev, size, GFP_KERNEL | __GFP_NOWARN)
                    .map(Mem::Coherent)
            }
            _ => Self::streaming(dev, size / PAGE_SIZE).map(Mem::Streaming),
        };
        match mem {
            Ok(mem) => Ok(Self {
                mem,
                size,
                edu: edu.clone(),
            }),
            Err(e) => {
                edu.state.lock().buf_bytes -= size;
                // The mask cannot be satisfied (e.g. ZONE_DMA exhausted) or memory is short.
                Err(if e == EINVAL { e } else { ENOMEM })
            }
        }
    }

    fn streaming(dev: &device::Device<Bound>, n: usize) -> Result<Streaming> {
        let mut pages = KVec::with_capacity(n, GFP_KERNEL)?;
        let mut maps = KVec::with_capacity(n, GFP_KERNEL)?;
        for _ in 0..n {
            let page = raw::alloc_page()?;
            maps.push(PageMap::new(dev, &page)?, GFP_KERNEL)?;
            pages.push(page, GFP_KERNEL)?;
        }
        Ok(Streaming { maps, pages })
    }

    /// Size in bytes (a page multiple).
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Checks that `[offset, offset + len)` lies in the buffer; returns the end.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<usize> {
        offset
            .checked_add(len)
            .filter(|&end| end <= self.size as u64)
            .map(|end| end as usize)
            .ok_or(EINVAL)
    }

    /// The device pieces covering `[offset, offset + len)` (already range-checked), each within
    /// one page for streaming memory and within one `DMA_WINDOW_SIZE`-aligned block of the range.
    pub(crate) fn pieces(&self, offset: usize, len: usize, out: &mut KVec<Piece>) -> Result {
        let mut pos = offset;
        let end = offset + len;
        while pos < end {
            // Split at page boundaries (streaming) and at window-size steps of the range.
            let step_end =
                (offset + (pos - offset) / DMA_WINDOW_SIZE * DMA_WINDOW_SIZE + DMA_WINDOW_SIZE)
                    .min(end);
            let (bus, n) = match &self.mem {
                Mem::Coherent(c) => (c.dma_handle() + pos as u64, step_end - pos),
                Mem::Streaming(s) => {
                    let page = pos / PAGE_SIZE;
                    let in_page = pos % PAGE_SIZE;
                    let n = (PAGE_SIZE - in_page).min(step_end - pos);
                    (s.maps[page].addr() + in_page as u64, n)
                }
            };
            out.push((bus, n), GFP_KERNEL)?;
            pos += n;
        }
        Ok(())
    }

    /// Hands `[offset, offset + len)` to the CPU or to the device (streaming memory only).
    pub(crate) fn sync(&self, offset: usize, len: usize, for_cpu: bool) {
        let Mem::Streaming(s) = &self.mem else {
            return;
        };
        let mut pos = offset;
        while pos < offset + len {
            let in_page = pos % PAGE_SIZE;
            let n = (PAGE_SIZE - in_page).min(offset + len - pos);
            s.maps[pos / PAGE_SIZE].sync(in_page, n, for_cpu);
            pos += n;
        }
    }

    /// Maps pages `first..` of the buffer into `vma` (already validated: shared, in bounds).
    pub(crate) fn mmap(&self, dev: &device::Device<Bound>, vma: &VmaNew, first: usize) -> Result {
        match &self.mem {
            Mem::Coherent(c) => raw::mmap_coherent(dev, vma, c, first),
            Mem::Streaming(s) => {
                let mixed = vma.set_mixedmap();
                let n = (vma.end() - vma.start()) / PAGE_SIZE;
                for (i, page) in s.pages.iter().skip(first).take(n).enumerate() {
                    mixed.vm_insert_page(vma.start() + i * PAGE_SIZE, page)?;
                }
                Ok(())
            }
        }
    }

    /// Whether this is coherent memory.
    pub(crate) fn is_coherent(&self) -> bool {
        matches!(self.mem, Mem::Coherent(_))
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.edu.state.lock().buf_bytes -= self.size;
    }
}
