//! dma-buf import (`EDU_DMA_IOC_BUF_IMPORT`): a handle of a device file for a dma-buf of any
//! exporter (another edu device's [`crate::Buffer::export`], a DMA-BUF heap, udmabuf; see
//! [`crate::dmabuf`] for the last two), usable by XFER, COPY, BUF_SYNC and BUF_FREE.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::uapi::*;
use crate::{Device, Handle, Import};

nix::ioctl_readwrite_bad!(ioc_buf_import, EDU_DMA_IOC_BUF_IMPORT, EduDmaBufImport);

impl Device {
    /// `EDU_DMA_IOC_BUF_IMPORT` with the request as given; fills `handle` and `size`.
    pub fn import_raw(&self, req: &mut EduDmaBufImport) -> io::Result<()> {
        // SAFETY: `req` is a valid, writable `struct edu_dma_buf_import`.
        unsafe { ioc_buf_import(self.fd(), req) }?;
        Ok(())
    }

    /// Imports the dma-buf `fd`: the device is attached to it and maps it. The handle holds its
    /// own reference to the dma-buf (closing `fd` changes nothing) and is freed when the returned
    /// [`Imported`] is dropped. Not a dma-buf: `EINVAL`; not an open fd: `EBADF`.
    pub fn import(&self, fd: BorrowedFd<'_>) -> io::Result<Imported<'_>> {
        let mut req = EduDmaBufImport {
            fd: fd.as_raw_fd(),
            ..Default::default()
        };
        self.import_raw(&mut req)?;
        Ok(Handle::new(self, req.handle, Import { size: req.size }))
    }
}

/// An imported dma-buf's handle on a [`Device`]'s file: its [`Handle`] (dropping it frees the
/// handle, errors ignored: the device's mapping and attachment go, the dma-buf lives on with its
/// other holders).
pub type Imported<'d> = Handle<'d, Import>;

impl Imported<'_> {
    /// The dma-buf's size in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }
}
