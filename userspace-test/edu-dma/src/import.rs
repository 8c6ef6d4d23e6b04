//! dma-buf import (`EDU_DMA_IOC_BUF_IMPORT`): a handle of a device file for a dma-buf of any
//! exporter (another edu device's [`crate::Buffer::export`], a DMA-BUF heap, udmabuf; see
//! [`crate::dmabuf`] for the last two), usable by XFER, COPY, BUF_SYNC and BUF_FREE.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::uapi::*;
use crate::{Device, Dir, SyncDir};

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
        Ok(Imported {
            dev: self,
            handle: req.handle,
            size: req.size,
        })
    }
}

/// An imported dma-buf's handle on a [`Device`]'s file. Dropping it frees the handle (errors are
/// ignored): the device's mapping and attachment go, the dma-buf lives on with its other holders.
#[derive(Debug)]
pub struct Imported<'d> {
    dev: &'d Device,
    handle: u32,
    size: u64,
}

impl<'d> Imported<'d> {
    /// The device file the handle belongs to.
    pub fn device(&self) -> &'d Device {
        self.dev
    }

    /// Handle (never 0).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// The dma-buf's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Hands a range of the device's mapping to the device or back to the CPU.
    pub fn sync(&self, offset: u64, len: u64, dir: SyncDir) -> io::Result<()> {
        self.dev.sync(self.handle, offset, len, dir)
    }

    /// Moves `count` bytes between the dma-buf and the window.
    pub fn xfer(
        &self,
        buf_offset: u64,
        win_offset: u32,
        count: u32,
        dir: Dir,
        timeout_ms: u32,
    ) -> io::Result<()> {
        self.dev
            .xfer(self.handle, buf_offset, win_offset, count, dir, timeout_ms)
    }

    /// Frees the handle now, reporting the driver's answer.
    pub fn free(self) -> io::Result<()> {
        let dev = self.dev;
        let handle = self.into_handle();
        dev.free(handle)
    }

    /// Gives up ownership without freeing: the handle lives until freed or the file is closed.
    pub fn into_handle(self) -> u32 {
        let handle = self.handle;
        std::mem::forget(self);
        handle
    }
}

impl Drop for Imported<'_> {
    fn drop(&mut self) {
        let _ = self.dev.free(self.handle);
    }
}
