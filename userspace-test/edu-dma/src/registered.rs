//! Registered user memory (`EDU_DMA_IOC_REG_USER` / `EDU_DMA_IOC_UNREG_USER`): a range pinned
//! long-term and mapped for the device once, named by id in queued `REG_XFER` requests. The
//! pinned pages count against `RLIMIT_MEMLOCK` (`VmPin` in `/proc/self/status`).

use std::io;

use crate::uapi::*;
use crate::{Device, Dir, Mapping};

nix::ioctl_readwrite_bad!(ioc_reg_user, EDU_DMA_IOC_REG_USER, EduDmaRegUser);
nix::ioctl_write_ptr_bad!(ioc_unreg_user, EDU_DMA_IOC_UNREG_USER, EduDmaUnregUser);

impl EduDmaReq {
    /// Registration `id` at `offset` <-> window at `win_offset`, `len` bytes (1..=4096).
    pub fn reg_xfer(
        cookie: u64,
        id: u32,
        offset: u64,
        win_offset: u32,
        len: u32,
        dir: Dir,
    ) -> Self {
        EduDmaReq {
            cookie,
            op: EDU_DMA_OP_REG_XFER,
            flags: dir.raw(),
            addr: offset,
            len: len.into(),
            handle: id,
            win_offset,
            ..Default::default()
        }
    }
}

impl Device {
    /// `EDU_DMA_IOC_REG_USER` with the request as given; fills `id`.
    ///
    /// # Safety
    /// From now until the registration is gone (unregistered and its last queued request
    /// reaped, or the file closed), `REG_XFER` requests from the device make the device write
    /// the pinned pages of `[addr, addr + len)`: that memory must not be memory Rust code holds
    /// references to while such requests run. Unmapping it is memory-safe (the pages stay
    /// pinned, no longer the caller's).
    pub unsafe fn reg_user_raw(&self, req: &mut EduDmaRegUser) -> io::Result<()> {
        // SAFETY: `req` is a valid, writable `struct edu_dma_reg_user`; the memory rule is the
        // caller's.
        unsafe { ioc_reg_user(self.fd(), req) }?;
        Ok(())
    }

    /// `EDU_DMA_IOC_UNREG_USER` with the request as given.
    pub fn unreg_user_raw(&self, req: &EduDmaUnregUser) -> io::Result<()> {
        // SAFETY: `req` is a valid `struct edu_dma_unreg_user`; the driver only reads it.
        unsafe { ioc_unreg_user(self.fd(), req) }?;
        Ok(())
    }

    /// Drops registration `id` (its memory is released once no queued request uses it).
    /// `ENOENT`: unknown id.
    pub fn unreg_user(&self, id: u32) -> io::Result<()> {
        self.unreg_user_raw(&EduDmaUnregUser { id, flags: 0 })
    }

    /// Registers `mem` (page aligned, as every [`Mapping`] is; its whole length), which the
    /// returned [`Registered`] owns: unregistered, then unmapped, when it is dropped.
    pub fn register(&self, mem: Mapping) -> io::Result<Registered<'_>> {
        let mut req = EduDmaRegUser {
            addr: mem.as_ptr() as u64,
            len: mem.len() as u64,
            ..Default::default()
        };
        // SAFETY: the memory belongs to `mem`, which the `Registered` owns until after it
        // unregistered; it hands the bytes out only as the device-shared memory a `Mapping` is.
        unsafe { self.reg_user_raw(&mut req) }?;
        Ok(Registered {
            dev: self,
            id: req.id,
            mem,
        })
    }

    /// Registers `len` bytes of fresh anonymous memory (zero-filled; `len` a page multiple).
    pub fn register_anonymous(&self, len: usize) -> io::Result<Registered<'_>> {
        self.register(Mapping::anonymous(len)?)
    }
}

/// Memory registered with a [`Device`]'s file. Dropping it unregisters (errors are ignored),
/// then unmaps the memory; requests still queued keep the pages pinned until they are reaped.
///
/// The bytes are shared with the device: a `FROM_DEVICE` request writes them between its submit
/// and its reap (read them after the reap).
#[derive(Debug)]
pub struct Registered<'d> {
    dev: &'d Device,
    id: u32,
    mem: Mapping,
}

impl<'d> Registered<'d> {
    /// The registration's id (never 0).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The device file.
    pub fn device(&self) -> &'d Device {
        self.dev
    }

    /// The memory.
    pub fn mem(&self) -> &Mapping {
        &self.mem
    }

    /// The memory, writable.
    pub fn mem_mut(&mut self) -> &mut Mapping {
        &mut self.mem
    }

    /// A queued transfer of `len` bytes at `offset` of this memory <-> window at `win_offset`.
    pub fn req(&self, cookie: u64, offset: u64, win_offset: u32, len: u32, dir: Dir) -> EduDmaReq {
        EduDmaReq::reg_xfer(cookie, self.id, offset, win_offset, len, dir)
    }

    /// Unregisters now, reporting the driver's answer; the memory is unmapped.
    pub fn unregister(mut self) -> io::Result<()> {
        // Id 0 (never a registration's) tells `drop` it is done.
        let id = std::mem::take(&mut self.id);
        self.dev.unreg_user(id)
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        if self.id != 0 {
            let _ = self.dev.unreg_user(self.id);
        }
    }
}
