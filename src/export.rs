// SPDX-License-Identifier: GPL-2.0

//! dma-buf export of streaming buffers (`EDU_DMA_IOC_BUF_EXPORT`).
//!
//! A dma-buf of a buffer shares its pages: `raw::dmabuf` holds a reference to the buffer's page
//! list (`raw::dma::Pages`, the one its device mappings and the file's user mappings hold too)
//! for as long as the dma-buf lives, and each of its user mappings holds the dma-buf's state (so
//! its mmap and its importers' mappings stay valid memory whatever happens to the handle, the
//! exporting file or the device); it also does the importer side (attachments, their SG tables,
//! mmap, faulting the pages in). What this file adds is the device's own side:
//! `DMA_BUF_IOCTL_SYNC` hands the buffer's streaming mappings between the CPU and edu, exactly
//! as `EDU_DMA_IOC_BUF_SYNC` does (start: for the CPU, end: for the device).
//!
//! Lifetime: the dma-buf keeps the [`Buffer`] (its budget charge, its device mappings) through a
//! [`Link`], a resource tracked for revocation like the buffer itself. `BUF_FREE` or closing the
//! file retires the file's reference only; the dma-buf's release retires the link (inside
//! `bound`, so the buffer's last reference, whose drop unmaps it, goes while the device is
//! bound); unbind revokes the link, which revokes the buffer (its device mappings go, its pages
//! stay for the dma-buf). A dma-buf imported back into its own device ([`own_buffer`]) is
//! that device's buffer again, not a second mapping of its pages (as DRM PRIME resolves a
//! self-import to the exporting GEM object). Coherent buffers are not exported (`EINVAL`): `dma_alloc_coherent`
//! memory need not be pages (dma-direct may remap it), and unbind must free it, which would
//! leave importers and mappings of the dma-buf pointing at freed memory.

use kernel::{
    dma::DataDirection,
    prelude::*,
    sync::Arc, //
};

use crate::{
    buffer::Buffer,
    device::{
        EduDevice,
        Live,
        Revoke, //
    },
    raw::{
        dma::Owner,
        dmabuf::{
            exporter_of,
            DmaBuf,
            Exporter, //
        },
    },
};

/// Access mode of an exported dma-buf.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `O_RDONLY`: no writable mapping.
    ReadOnly,
    /// `O_RDWR`.
    ReadWrite,
}

/// The dma-buf's hold on a buffer, tracked for revocation at unbind.
struct Link {
    buf: Arc<Buffer>,
}

impl Revoke for Link {
    fn revoke(&self) {
        // The device mappings go (idempotent: the file may have it tracked too); the pages stay
        // for the dma-buf, which holds its own reference to them.
        self.buf.revoke();
    }
}

/// The driver's part of an exported dma-buf.
struct Exported {
    edu: Arc<EduDevice>,
    /// `Some` until `Drop` retires it.
    link: Option<Arc<Link>>,
}

impl Exported {
    /// Hands the whole buffer to `to`. Once unbound or revoked the device has no mapping of it
    /// left, the pages are the content, and there is nothing to sync.
    fn sync(&self, to: Owner) -> Result {
        let Some(link) = &self.link else {
            return Ok(());
        };
        let buf = &link.buf;
        match self.edu.bound(|_| buf.sync(0, buf.size(), to)) {
            Err(e) if e == ENODEV => Ok(()),
            r => r,
        }
    }
}

impl Exporter for Exported {
    fn begin_cpu_access(&self, _dir: DataDirection) -> Result {
        // Whatever the direction: the mapping is bidirectional, and a CPU write of part of a
        // page followed by `end_cpu_access` must not bring back stale bytes of the rest.
        self.sync(Owner::Cpu)
    }

    fn end_cpu_access(&self, _dir: DataDirection) -> Result {
        self.sync(Owner::Device)
    }
}

impl Drop for Exported {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.edu.retire(link);
        }
    }
}

/// Exports streaming buffer `buf` of a file of `edu` (inside `bound`: `live`).
pub(crate) fn export(
    live: &Live<'_>,
    edu: &Arc<EduDevice>,
    buf: Arc<Buffer>,
    access: Access,
) -> Result<DmaBuf> {
    let pages = buf.export_pages()?;
    let link = Arc::new(Link { buf }, GFP_KERNEL)?;
    live.track(link.clone())?;
    let data = Exported {
        edu: edu.clone(),
        link: Some(link),
    };
    // On error `data` is dropped, which retires the link.
    DmaBuf::export(
        &crate::THIS_MODULE,
        c"edu_dma",
        data,
        pages,
        access == Access::ReadWrite,
    )
}

/// The exporting buffer of the dma-buf of `fd` if `edu` itself exported it (a self-import,
/// which gets the buffer itself rather than a second mapping of its pages: see
/// `Buffer::alias`), `None` for any other dma-buf; `EBADF`: no such fd, `EINVAL`: not a
/// dma-buf. Inside `bound`: the reference it takes is a buffer reference like any other.
pub(crate) fn own_buffer(edu: &EduDevice, fd: i32) -> Result<Option<Arc<Buffer>>> {
    let found = exporter_of(&crate::THIS_MODULE, fd, |e: &Exported| {
        if !core::ptr::eq(&*e.edu, edu) {
            return None;
        }
        e.link.as_ref().map(|l| l.buf.clone())
    })?;
    Ok(found.flatten())
}
