// SPDX-License-Identifier: GPL-2.0

//! dma-buf import (`EDU_DMA_IOC_BUF_IMPORT`): a dma-buf of any exporter (another edu, a DMA-BUF
//! heap, udmabuf) as a buffer of the file, usable wherever a buffer handle is (`XFER`, `COPY`,
//! `BUF_SYNC`, `BUF_FREE`).
//!
//! The device is attached to the dma-buf and the attachment mapped once, at import
//! (`raw::dmabuf_import`, a static attachment: why, there). Transfers walk the mapping's DMA
//! segments as the DMA API returned them (under the device's 28-bit mask: bounce buffers or IOVAs
//! where needed), cut at segment boundaries and at window steps of the transfer (`split`), exactly
//! like pinned user memory (`userpages`). A segment above the device's mask (an exporter that
//! bypassed the DMA API) makes the import fail with `ERANGE`: the device would silently drop the
//! high bits.
//!
//! Ownership: the mapping is the device's streaming mapping; `BUF_SYNC` on the handle hands a range
//! of it to the CPU or to the device like a streaming buffer's (`DMA_BUF_IOCTL_SYNC` on the fd does
//! it too when the exporter syncs its importers, as edu's and the system heap's do; udmabuf's does
//! not).
//!
//! Lifetime: the import is a [`Buffer`] (kind `Imported`, no memory of its own, nothing charged to
//! the budget), tracked for revocation like every buffer: `BUF_FREE`, closing the file and unbind
//! of the importing device drop the mapping, the attachment and the dma-buf reference while the
//! device is bound. The memory is the exporter's: it lives as long as the exporter keeps it (an
//! edu exporter keeps its pages for as long as the dma-buf lives, also across its own unbind).

use kernel::{
    device::{
        Bound,
        Device, //
    },
    prelude::*,
};

use crate::{
    raw::{
        dma::Owner,
        dmabuf_import::Attachment, //
    },
    split::{
        self,
        Piece, //
    },
};

/// An imported dma-buf, mapped for the device.
pub(crate) struct Import {
    att: Attachment,
}

impl Import {
    /// Imports the dma-buf of `fd` for `dev`, whose DMA mask is `dma_bits` wide. `EBADF`: no such
    /// fd; `EINVAL`: not a dma-buf (or an empty or inconsistent mapping); `ERANGE`: a mapped
    /// segment the device cannot reach.
    pub(crate) fn new(dev: &Device<Bound>, fd: i32, dma_bits: u32) -> Result<Self> {
        let att = Attachment::new(dev, fd)?;
        let mask = 1u64.checked_shl(dma_bits).map_or(u64::MAX, |m| m - 1);
        if !split::segments_within(att.segments(), mask) {
            return Err(ERANGE);
        }
        let size = att.size();
        // The mapping must cover the whole dma-buf.
        if size == 0 || split::range_segments(att.segments(), 0, size).is_none() {
            return Err(EINVAL);
        }
        Ok(Self { att })
    }

    /// The dma-buf's size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.att.size()
    }

    /// Appends the device pieces covering `[offset, offset + len)` (range already checked against
    /// the size), split at segment boundaries and at window steps of the range.
    pub(crate) fn pieces(&self, offset: usize, len: usize, out: &mut KVec<Piece>) -> Result {
        let segs = split::range_segments(self.att.segments(), offset, len).ok_or(EINVAL)?;
        split::segment_pieces(segs, |p| out.push(p, GFP_KERNEL).map_err(Error::from))
    }

    /// Hands `[offset, offset + len)` of the mapping to `to`.
    pub(crate) fn sync(&self, offset: usize, len: usize, to: Owner) -> Result {
        let segs = split::range_segments(self.att.segments(), offset, len).ok_or(EINVAL)?;
        for (bus, n) in segs {
            self.att.sync(bus, n, to)?;
        }
        Ok(())
    }
}
