// SPDX-License-Identifier: GPL-2.0

//! dma-buf import: a dma-buf of any exporter, attached to a device and mapped for it, as a list
//! of DMA segments (bus address, length) that the device may be programmed with.
//!
//! 7.2 gap: the `kernel` crate has no dma-buf abstraction (only DRM's C GEM helpers import);
//! `dma_buf_get`, `dma_buf_attach`, `dma_buf_map_attachment_unlocked` and their counterparts are
//! in the generated bindings, their symbols in the `DMA_BUF` namespace (which the module imports).
//! Upstream home: a `kernel::dma_buf` module, next to the exporter side (`super::dmabuf`). The C
//! models are `drivers/media/common/videobuf2/videobuf2-dma-contig.c` (`vb2_dc_attach_dmabuf`,
//! `vb2_dc_map_dmabuf`) and `drivers/gpu/drm/drm_prime.c` (`drm_gem_prime_import_dev`).
//!
//! The attachment is *static* (`dma_buf_attach`, no `dma_buf_attach_ops`). A dynamic importer
//! must stop using its mapping and unmap it, under the dma-buf's reservation lock, within bounded
//! time of `invalidate_mappings` (the exporter moving or revoking the memory); an edu command
//! cannot be cancelled (up to 100 ms of device time each, a transfer many of them), and the
//! driver's transfers take no reservation lock (`dma_resv_lock` is a static inline ww-mutex:
//! another shim, and a new lock level under every transfer). So the import is static: the core
//! pins the memory of a movable exporter for as long as the mapping exists (`dma_buf_pin_on_map`),
//! and no exporter may revoke it under a running command. The mapping is made once, at import,
//! bidirectional, and kept until the value drops.
//!
//! Ownership of the mapping follows the streaming DMA API: the mapping is the importer's, and
//! [`Attachment::sync`] hands a range of it to the CPU or to the device (`dma_sync_single_*` on
//! the bus range, which lies in one mapped segment: the DMA API allows partial syncs of a single
//! range, and DMA-API debug finds the segment that contains it). Exporters differ in what their
//! `DMA_BUF_IOCTL_SYNC` does for importers (edu's and the system heap's sync every importer's
//! table; udmabuf maps importers with `DMA_ATTR_SKIP_CPU_SYNC` and syncs only its own mapping),
//! so the importer's own syncs are what makes a bounce buffer (`swiotlb=force`) coherent with
//! every exporter.

use core::ptr::NonNull;
use kernel::{
    bindings,
    device,
    dma::{
        DataDirection,
        DmaAddress, //
    },
    error::from_err_ptr,
    prelude::*,
    scatterlist::SGTable,
    sync::aref::ARef, //
};

use super::{
    dma::{
        sync_single,
        within_segment,
        Owner, //
    },
    raw_dev,
};

/// A dma-buf attached to a device and mapped for it.
///
/// # Invariants
///
/// - `dmabuf` is a dma-buf on whose file this value holds one reference (`dma_buf_get`).
/// - `attach` is a static attachment of `dev` to `dmabuf`, `sgt` its mapping
///   (`dma_buf_map_attachment`, bidirectional), and `segs` the DMA segments of `sgt`, in order.
/// - `Drop` unmaps, detaches and puts, in that order, exactly once.
pub(crate) struct Attachment {
    dmabuf: NonNull<bindings::dma_buf>,
    attach: NonNull<bindings::dma_buf_attachment>,
    sgt: NonNull<bindings::sg_table>,
    dev: ARef<device::Device>,
    segs: KVec<(DmaAddress, usize)>,
    size: usize,
}

// SAFETY: the dma-buf functions may be called from any thread; after `new` the value is only read
// (`&self`: DMA syncs, which the DMA API allows concurrently on a mapping) or dropped (`&mut`).
unsafe impl Send for Attachment {}
// SAFETY: as above: `&self` methods only read the segments and sync, which the DMA API allows from
// several threads at once.
unsafe impl Sync for Attachment {}

/// The direction of every import mapping.
const DIR: DataDirection = DataDirection::Bidirectional;

impl Attachment {
    /// Takes the dma-buf of file descriptor `fd` of the current process (`EBADF` if there is
    /// no such fd, `EINVAL` if it is not a dma-buf), attaches `dev` to it and maps it for `dev`.
    pub(crate) fn new(dev: &device::Device<device::Bound>, fd: i32) -> Result<Self> {
        // SAFETY: any integer may be passed; the function looks it up in the current fd table.
        let dmabuf = from_err_ptr(unsafe { bindings::dma_buf_get(fd) })?;
        let dmabuf = NonNull::new(dmabuf).ok_or(EBADF)?;
        let put = Put(dmabuf);
        let raw = raw_dev(dev);
        // SAFETY: `dmabuf` is live (we hold a reference, `put`); `raw` is a bound device.
        let attach = from_err_ptr(unsafe { bindings::dma_buf_attach(dmabuf.as_ptr(), raw) })?;
        let attach = NonNull::new(attach).ok_or(ENOMEM)?;
        let detach = Detach(dmabuf, attach);
        // SAFETY: `attach` is a live static attachment of `dmabuf`, not mapped yet; the call takes
        // the reservation lock itself.
        let sgt = from_err_ptr(unsafe {
            bindings::dma_buf_map_attachment_unlocked(attach.as_ptr(), DIR.into())
        })?;
        let sgt = NonNull::new(sgt).ok_or(ENOMEM)?;
        let unmap = Unmap(attach, sgt);
        // SAFETY: `dmabuf` is live; `size` is set at export and never changes.
        let size = unsafe { (*dmabuf.as_ptr()).size };
        let mut segs = KVec::new();
        {
            // SAFETY: `sgt` is the mapped table the exporter returned, valid and unchanged until
            // it is unmapped (`unmap`, later).
            let table = unsafe { SGTable::from_raw(sgt.as_ptr()) };
            for sg in table.iter() {
                let len = usize::try_from(sg.dma_len()).map_err(|_| EINVAL)?;
                segs.push((sg.dma_address(), len), GFP_KERNEL)?;
            }
        }
        // The guards' work moves to `Drop`.
        core::mem::forget((unmap, detach, put));
        // INVARIANT: the reference, the attachment and its mapping were made above, in order;
        // `segs` are the mapping's DMA segments.
        Ok(Self {
            dmabuf,
            attach,
            sgt,
            dev: dev.into(),
            segs,
            size,
        })
    }

    /// The dma-buf's size in bytes.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The mapped DMA segments, in order: (bus address, length).
    pub(crate) fn segments(&self) -> &[(DmaAddress, usize)] {
        &self.segs
    }

    /// Hands `[bus, bus + len)` to `to`. `EINVAL` unless the range lies in one mapped segment.
    pub(crate) fn sync(&self, bus: DmaAddress, len: usize, to: Owner) -> Result {
        if !within_segment(self.segs.iter().copied(), bus, len) {
            return Err(EINVAL);
        }
        // SAFETY: `[bus, bus + len)` lies in a segment of the live mapping for `dev` (checked above,
        // type invariant), which was made bidirectional.
        unsafe { sync_single(raw_dev(&self.dev), bus, len, DIR, to) };
        Ok(())
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // The guards run in declaration order reversed: unmap, detach, put.
        let _put = Put(self.dmabuf);
        let _detach = Detach(self.dmabuf, self.attach);
        let _unmap = Unmap(self.attach, self.sgt);
    }
}

/// Puts a dma-buf reference on drop.
///
/// # Invariants
///
/// The holder owns one reference to the dma-buf's file.
struct Put(NonNull<bindings::dma_buf>);

impl Drop for Put {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one reference, put exactly once, here.
        unsafe { bindings::dma_buf_put(self.0.as_ptr()) };
    }
}

/// Detaches a static attachment on drop.
///
/// # Invariants
///
/// The second field is a live attachment of the first, unmapped by the time this drops, and
/// the first is live until then (a [`Put`] dropped after this one holds it).
struct Detach(
    NonNull<bindings::dma_buf>,
    NonNull<bindings::dma_buf_attachment>,
);

impl Drop for Detach {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the attachment is live, of this live dma-buf, and has
        // no mapping left; it is detached (and freed) exactly once, here.
        unsafe { bindings::dma_buf_detach(self.0.as_ptr(), self.1.as_ptr()) };
    }
}

/// Unmaps an attachment's mapping on drop.
///
/// # Invariants
///
/// The table is the live bidirectional mapping of the attachment, which is live until this drops
/// (a [`Detach`] dropped after this one holds it).
struct Unmap(
    NonNull<bindings::dma_buf_attachment>,
    NonNull<bindings::sg_table>,
);

impl Drop for Unmap {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the table is this live attachment's mapping, made in
        // `DIR`; it is unmapped exactly once, here; the call takes the reservation lock itself.
        unsafe {
            bindings::dma_buf_unmap_attachment_unlocked(
                self.0.as_ptr(),
                self.1.as_ptr(),
                DIR.into(),
            )
        };
    }
}
