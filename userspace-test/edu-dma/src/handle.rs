//! [`Handle`]: one type for a buffer handle of a device file, whether of an allocated buffer
//! ([`crate::Buffer`]) or of an imported dma-buf ([`crate::Imported`]): device, handle number,
//! sync, xfer and free are the same; `K` is what the handle's creation returned besides.

use std::io;

use crate::{BufKind, Device, Dir, SyncDir};

/// A buffer handle of a [`Device`]'s file and what its creation returned (`K`). Dropping it frees
/// the handle (errors are ignored).
#[derive(Debug)]
pub struct Handle<'d, K> {
    dev: &'d Device,
    handle: u32,
    pub(crate) info: K,
}

/// What `EDU_DMA_IOC_BUF_ALLOC` returned besides the handle: see [`crate::Buffer`].
#[derive(Clone, Copy, Debug)]
pub struct Allocated {
    pub(crate) mmap_offset: u64,
    pub(crate) size: u64,
    pub(crate) kind: BufKind,
}

/// What `EDU_DMA_IOC_BUF_IMPORT` returned besides the handle: see [`crate::Imported`].
#[derive(Clone, Copy, Debug)]
pub struct Import {
    pub(crate) size: u64,
}

impl<'d, K> Handle<'d, K> {
    /// Takes ownership of `handle` of `dev`'s file.
    pub(crate) fn new(dev: &'d Device, handle: u32, info: K) -> Self {
        Self { dev, handle, info }
    }

    /// The device file the handle belongs to.
    pub fn device(&self) -> &'d Device {
        self.dev
    }

    /// Handle (never 0).
    pub fn handle(&self) -> u32 {
        self.handle
    }

    /// Hands a range of the device's mapping to the device or back to the CPU.
    pub fn sync(&self, offset: u64, len: u64, dir: SyncDir) -> io::Result<()> {
        self.dev.sync(self.handle, offset, len, dir)
    }

    /// Moves `count` bytes between the buffer and the window.
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

impl<K> Drop for Handle<'_, K> {
    fn drop(&mut self) {
        let _ = self.dev.free(self.handle);
    }
}
