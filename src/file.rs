// SPDX-License-Identifier: GPL-2.0

//! The `/dev/edu-dma<N>` file: per-file buffer handles, the ioctls of `uapi`, mmap of buffers,
//! and read/write of the device window by zero-copy DMA (the file position is the window offset).
//!
//! Errno conventions (see `include/uapi/linux/edu_dma.h`): `ENOTTY` unknown ioctl, `EFAULT` bad
//! pointers or unpinnable memory, `EINVAL` bad flags, reserved fields and ranges, `ENOENT` unknown
//! handle, `EOVERFLOW` factorial above 12, `E2BIG` copy above `COPY_MAX`, `ENODEV` after unbind.

use kernel::{
    fs::{
        File,
        Kiocb, //
    },
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    mm::virt::{
        flags as vm,
        VmaNew, //
    },
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::Relaxed,
        Arc,
        Mutex, //
    },
    transmute::{
        AsBytes,
        FromBytes, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    buffer::Buffer,
    device::{
        Dir,
        EduDevice, //
    },
    raw::{
        self,
        MiscNode,
        Pinned, //
    },
    regs::DMA_WINDOW_SIZE,
    uapi::*,
    userpages::{
        self,
        CopyJob,
        Side,
        COPY_MAX, //
    },
};

/// Marks uapi structs as plain bytes for `UserSlice` reads and writes.
macro_rules! uapi_bytes {
    ($($t:ty),*) => {$(
        // SAFETY: all uapi structs are `#[repr(C)]`, made of integers only, with no padding
        // (checked against the C header by `make check-uapi`); every bit pattern is valid.
        unsafe impl FromBytes for $t {}
        // SAFETY: as above; no padding, so every byte is initialised.
        unsafe impl AsBytes for $t {}
    )*};
}
uapi_bytes!(
    EduDmaInfo,
    EduDmaFactorial,
    EduDmaBufAlloc,
    EduDmaBufFree,
    EduDmaBufSync,
    EduDmaXfer,
    EduDmaUserXfer,
    EduDmaCopy,
    EduDmaFault
);

/// mmap offsets: handle << 32, plus a page offset into the buffer.
const MMAP_HANDLE_SHIFT: u32 = 32;
const MMAP_PGOFF_HANDLE_SHIFT: u32 = MMAP_HANDLE_SHIFT - kernel::page::PAGE_SHIFT as u32;

struct Entry {
    handle: u32,
    buf: Arc<Buffer>,
    mapped: bool,
}

struct Bufs {
    live: KVec<Entry>,
    /// Freed coherent buffers that were mapped: their PFN mappings may still exist, and VMAs
    /// hold this file, so they are released with it.
    zombies: KVec<Arc<Buffer>>,
    next: u32,
}

/// An open `/dev/edu-dma<N>`.
#[pin_data(PinnedDrop)]
pub(crate) struct EduFile {
    edu: Arc<EduDevice>,
    #[pin]
    bufs: Mutex<Bufs>,
}

fn timeout(ms: u32) -> u32 {
    if ms == 0 {
        *crate::module_parameters::timeout_ms.value()
    } else {
        ms
    }
}

fn direction(flags: u32) -> Result<Dir> {
    match flags {
        EDU_DMA_TO_DEVICE => Ok(Dir::ToDevice),
        EDU_DMA_FROM_DEVICE => Ok(Dir::FromDevice),
        _ => Err(EINVAL),
    }
}

/// Checks a window range: count 1..=4096 within the window.
fn window_range(win_off: u32, count: u32) -> Result<(usize, usize)> {
    let (w, c) = (win_off as usize, count as usize);
    if c == 0 || w.checked_add(c).is_none_or(|end| end > DMA_WINDOW_SIZE) {
        return Err(EINVAL);
    }
    Ok((w, c))
}

#[pinned_drop]
impl PinnedDrop for EduFile {
    fn drop(self: Pin<&mut Self>) {
        let bufs = self.bufs.lock();
        for buf in Iterator::chain(bufs.live.iter().map(|e| &e.buf), bufs.zombies.iter()) {
            self.edu.unregister_buffer(buf);
        }
    }
}

impl EduFile {
    fn buffer(&self, handle: u32) -> Result<Arc<Buffer>> {
        let bufs = self.bufs.lock();
        bufs.live
            .iter()
            .find(|e| e.handle == handle)
            .map(|e| e.buf.clone())
            .ok_or(ENOENT)
    }

    fn info(&self) -> Result<EduDmaInfo> {
        let edu = &self.edu;
        edu.bound(|_| Ok(()))?;
        let s = &edu.stats;
        Ok(EduDmaInfo {
            ident: edu.ident,
            version_major: edu.ident >> 24,
            version_minor: (edu.ident >> 16) & 0xff,
            instance: edu.instance,
            dma_mask_bits: edu.dma_bits,
            irq_mode: edu.irq_mode,
            pci_domain: edu.loc.domain,
            pci_bus: edu.loc.bus,
            pci_slot: edu.loc.slot,
            pci_func: edu.loc.func,
            window_size: EDU_DMA_WINDOW_SIZE,
            irq_count: s.irqs.load(Relaxed),
            dma_count: s.dma_cmds.load(Relaxed),
            dma_bytes: s.dma_bytes.load(Relaxed),
            fact_count: s.factorials.load(Relaxed),
            timeout_count: s.timeouts.load(Relaxed),
            ..Default::default()
        })
    }

    fn factorial(&self, req: &mut EduDmaFactorial) -> Result {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        if req.n > 12 {
            return Err(EOVERFLOW);
        }
        let tmo = timeout(0);
        req.result = self
            .edu
            .bound(|_| self.edu.engine()?.factorial(req.n, tmo))?
            .into();
        Ok(())
    }

    fn buf_alloc(&self, req: &mut EduDmaBufAlloc) -> Result {
        if req.flags != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        // The file lock is held from the cap check to the insertion: concurrent allocations on
        // one file cannot both pass it.
        let mut bufs = self.bufs.lock();
        let cap = *crate::module_parameters::file_cap_kib.value() as usize * 1024;
        let held: usize = Iterator::chain(
            bufs.live.iter().map(|e| e.buf.size()),
            bufs.zombies.iter().map(|b| b.size()),
        )
        .sum();
        let room = cap.saturating_sub(held);
        let buf = self
            .edu
            .bound(|dev| Buffer::new(dev, &self.edu, req.size, req.kind, room))?;
        let handle = bufs.next;
        let entry = Entry {
            handle,
            buf: buf.clone(),
            mapped: false,
        };
        let pushed = match handle.checked_add(1) {
            Some(next) => bufs
                .live
                .push(entry, GFP_KERNEL)
                .map(|()| next)
                .map_err(Error::from),
            None => Err(ENOSPC),
        };
        match pushed {
            Ok(next) => bufs.next = next,
            Err(e) => {
                drop(bufs);
                self.edu.unregister_buffer(&buf);
                return Err(e);
            }
        }
        req.handle = handle;
        req.mmap_offset = u64::from(handle) << MMAP_HANDLE_SHIFT;
        Ok(())
    }

    fn buf_free(&self, req: &EduDmaBufFree) -> Result {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let mut bufs = self.bufs.lock();
        let i = bufs
            .live
            .iter()
            .position(|e| e.handle == req.handle)
            .ok_or(ENOENT)?;
        let e = bufs.live.remove(i)?;
        if e.mapped && e.buf.is_coherent() {
            // PFN mappings of it may still exist: it goes with the file (VMAs hold the file).
            bufs.zombies.push(e.buf, GFP_KERNEL)?;
            return Ok(());
        }
        drop(bufs);
        // Streaming pages are refcounted by their user mappings; the DMA mappings go now.
        self.edu.unregister_buffer(&e.buf);
        Ok(())
    }

    fn buf_sync(&self, req: &EduDmaBufSync) -> Result {
        let for_cpu = match req.flags {
            EDU_DMA_SYNC_FOR_DEVICE => false,
            EDU_DMA_SYNC_FOR_CPU => true,
            _ => return Err(EINVAL),
        };
        let buf = self.buffer(req.handle)?;
        if req.len == 0 {
            return Err(EINVAL);
        }
        let end = buf.check_range(req.offset, req.len)?;
        let off = req.offset as usize;
        self.edu.bound(|_| buf.sync(off, end - off, for_cpu))
    }

    fn xfer(&self, req: &EduDmaXfer) -> Result {
        let dir = direction(req.flags)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        let (win, count) = window_range(req.win_offset, req.count)?;
        let buf = self.buffer(req.handle)?;
        buf.check_range(req.buf_offset, count as u64)?;
        let mut pieces = KVec::new();
        buf.pieces(req.buf_offset as usize, count, &mut pieces)?;
        let tmo = timeout(req.timeout_ms);
        self.edu
            .bound(|_| userpages::run_pieces(&self.edu.engine()?, &pieces, win, dir, tmo))
    }

    fn user_xfer(&self, req: &EduDmaUserXfer) -> Result {
        let dir = direction(req.flags)?;
        let (addr, len) = userpages::check_user_range(req.addr, req.len.into())?;
        let (win, _) = window_range(req.win_offset, req.len)?;
        let tmo = timeout(req.timeout_ms);
        self.edu.bound(|dev| {
            let pinned = Pinned::from_user(addr, len, dir == Dir::FromDevice)?;
            userpages::pinned_xfer(&self.edu, dev, pinned, win, dir, tmo)
        })
    }

    fn side(&self, addr: u64, len: u64, is_buf: bool, handle: u32) -> Result<Side> {
        if is_buf {
            let buf = self.buffer(handle)?;
            buf.check_range(addr, len)?;
            Ok(Side::Buf(buf, addr as usize))
        } else {
            Ok(Side::User(userpages::check_user_range(addr, len)?.0))
        }
    }

    fn copy(&self, req: &mut EduDmaCopy) -> Result {
        req.done = 0;
        if req.flags & !(EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF) != 0 || req.len == 0 {
            return Err(EINVAL);
        }
        if req.len > COPY_MAX {
            return Err(E2BIG);
        }
        let src = self.side(
            req.src,
            req.len,
            req.flags & EDU_DMA_COPY_SRC_BUF != 0,
            req.src_handle,
        )?;
        let dst = self.side(
            req.dst,
            req.len,
            req.flags & EDU_DMA_COPY_DST_BUF != 0,
            req.dst_handle,
        )?;
        let job = CopyJob {
            src,
            dst,
            len: req.len as usize,
            pin_pages: *crate::module_parameters::pin_window.value() as usize,
            timeout_ms: timeout(req.timeout_ms),
        };
        let mut done = 0;
        let ret = self.edu.bound(|dev| job.run(&self.edu, dev, &mut done));
        req.done = done as u64;
        ret
    }

    fn fault(&self, req: &EduDmaFault) -> Result {
        if !raw::capable_sys_admin() {
            return Err(EPERM);
        }
        if req.flags != 0 {
            return Err(EINVAL);
        }
        self.edu.drop_irqs.store(req.drop_irqs, Relaxed);
        Ok(())
    }

    /// DMA between the window at `*pos` and the memory of an I/O iterator.
    fn rw(
        &self,
        iter: *mut kernel::bindings::iov_iter,
        total: usize,
        pos: &mut i64,
        dir: Dir,
    ) -> Result<usize> {
        let mut done = 0;
        let ret = self.edu.bound(|dev| {
            while done < total {
                let pinned = Pinned::from_iter(iter, total - done, 2, dir == Dir::FromDevice)?;
                if pinned.len() == 0 {
                    break;
                }
                let n = pinned.len();
                let win = *pos as usize + done;
                userpages::pinned_xfer(&self.edu, dev, pinned, win, dir, timeout(0))?;
                done += n;
            }
            Ok(())
        });
        *pos += done as i64;
        match ret {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }
}

/// When an ioctl writes its argument back.
#[derive(PartialEq)]
enum Out {
    /// Input only.
    Never,
    /// On success.
    OnOk,
    /// Always (partial results, e.g. bytes copied before an error).
    Always,
}

/// Reads the ioctl argument, runs `f`, and writes the argument back as `out` says.
fn with_arg<T: FromBytes + AsBytes>(
    arg: usize,
    out: Out,
    f: impl FnOnce(&mut T) -> Result,
) -> Result<isize> {
    let (mut reader, mut writer) =
        UserSlice::new(UserPtr::from_addr(arg), size_of::<T>()).reader_writer();
    let mut req: T = reader.read()?;
    let ret = f(&mut req);
    if out == Out::Always || (out == Out::OnOk && ret.is_ok()) {
        writer.write(&req)?;
    }
    ret.map(|()| 0)
}

#[vtable]
impl MiscDevice for EduFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let edu = MiscNode::edu_of(misc);
        KBox::try_pin_init(
            try_pin_init!(EduFile {
                edu,
                bufs <- new_mutex!(Bufs { live: KVec::new(), zombies: KVec::new(), next: 1 }),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&EduFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            EDU_DMA_IOC_INFO => {
                let info = me.info()?;
                UserSlice::new(UserPtr::from_addr(arg), size_of::<EduDmaInfo>())
                    .writer()
                    .write(&info)?;
                Ok(0)
            }
            EDU_DMA_IOC_FACTORIAL => with_arg(arg, Out::OnOk, |r| me.factorial(r)),
            EDU_DMA_IOC_BUF_ALLOC => {
                let (mut reader, mut writer) =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<EduDmaBufAlloc>())
                        .reader_writer();
                let mut req: EduDmaBufAlloc = reader.read()?;
                me.buf_alloc(&mut req)?;
                // The caller must learn the handle, or nobody could ever free the buffer.
                writer.write(&req).inspect_err(|_| {
                    let free = EduDmaBufFree {
                        handle: req.handle,
                        flags: 0,
                    };
                    let _ = me.buf_free(&free);
                })?;
                Ok(0)
            }
            EDU_DMA_IOC_BUF_FREE => with_arg(arg, Out::Never, |r| me.buf_free(r)),
            EDU_DMA_IOC_BUF_SYNC => with_arg(arg, Out::Never, |r| me.buf_sync(r)),
            EDU_DMA_IOC_XFER => with_arg(arg, Out::Never, |r| me.xfer(r)),
            EDU_DMA_IOC_USER_XFER => with_arg(arg, Out::Never, |r| me.user_xfer(r)),
            EDU_DMA_IOC_COPY => with_arg(arg, Out::Always, |r| me.copy(r)),
            EDU_DMA_IOC_FAULT => with_arg(arg, Out::Never, |r| me.fault(r)),
            _ => Err(ENOTTY),
        }
    }

    fn mmap(me: Pin<&EduFile>, file: &File, vma: &VmaNew) -> Result {
        if vma.flags() & vm::SHARED == 0 {
            return Err(EINVAL);
        }
        if vma.flags() & vm::EXEC != 0 {
            return Err(EPERM);
        }
        vma.try_clear_mayexec()?;
        vma.set_dontexpand();
        let pgoff = raw::vma_pgoff(vma);
        let handle = u32::try_from(pgoff >> MMAP_PGOFF_HANDLE_SHIFT).map_err(|_| EINVAL)?;
        let first = pgoff & ((1 << MMAP_PGOFF_HANDLE_SHIFT) - 1);
        let pages = (vma.end() - vma.start()) / PAGE_SIZE;
        let mut bufs = me.bufs.lock();
        let entry = bufs
            .live
            .iter_mut()
            .find(|e| e.handle == handle)
            .ok_or(EINVAL)?;
        if first + pages > entry.buf.size() / PAGE_SIZE {
            return Err(EINVAL);
        }
        let buf = entry.buf.clone();
        me.edu.bound(|dev| buf.mmap(dev, file, vma, first))?;
        entry.mapped = true;
        Ok(())
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let me = kiocb.file();
        let pos = kiocb.ki_pos();
        if pos < 0 {
            return Err(EINVAL);
        }
        if pos >= DMA_WINDOW_SIZE as i64 || iov.is_empty() {
            return Ok(0);
        }
        let total = iov.len().min(DMA_WINDOW_SIZE - pos as usize);
        me.rw(iov.as_raw(), total, kiocb.ki_pos_mut(), Dir::FromDevice)
    }

    fn write_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let me = kiocb.file();
        let pos = kiocb.ki_pos();
        if pos < 0 {
            return Err(EINVAL);
        }
        if iov.is_empty() {
            return Ok(0);
        }
        if pos >= DMA_WINDOW_SIZE as i64 {
            return Err(ENOSPC);
        }
        let total = iov.len().min(DMA_WINDOW_SIZE - pos as usize);
        me.rw(iov.as_raw(), total, kiocb.ki_pos_mut(), Dir::ToDevice)
    }
}
