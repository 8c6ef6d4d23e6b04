// SPDX-License-Identifier: GPL-2.0

//! The `/dev/edu-dma<N>` file: per-file buffer handles, the ioctls of `uapi`, mmap of buffers,
//! and read/write of the device window by zero-copy DMA (the file position is the window offset).
//!
//! Errno conventions (see `include/uapi/linux/edu_dma.h`): `ENOTTY` unknown ioctl, `EFAULT` bad
//! pointers or unpinnable memory, `EINVAL` bad flags, reserved fields and ranges (and the export
//! of a coherent buffer), `ENOENT` unknown handle, `EOVERFLOW` factorial above 12, `E2BIG` copy
//! above `COPY_MAX`, `ENOSPC` a file's registrations full, `ENODEV` after unbind, `EINTR` a signal ended a wait. A wait that only task
//! work broke (io_uring's `TWA_SIGNAL`, no signal) ends in `ERESTARTSYS` instead
//! (`raw::signal::interrupted`), and the call restarts from its arguments: FACTORIAL, XFER and
//! USER_XFER repeat the same transfer, COPY copies again from the start (its `done` is reset), and
//! read/write restart only when no byte moved (after progress they return the count, as for any
//! error).
//!
//! The queue: `SUBMIT` parses each request into a typed transfer (the same checks as the
//! synchronous ioctls), `xfer` builds its commands and hold, and the engine queues it on the
//! file's queue (created at the first submit); `REAP` waits for and copies out completions;
//! `poll` reports them (`POLLIN`) and room (`POLLOUT`). Close cancels the file's requests. A
//! signal never ends a queued request: only the waits of `REAP` (`EINTR`, or `ERESTARTSYS` for
//! task work, when no completion is waiting).
//!
//! io_uring: an `IORING_OP_URING_CMD` (`EDU_DMA_URING_CMD_XFER`) carries one request in its
//! 128-byte SQE, parsed and queued like a `SUBMIT` request (`submit_one`) on a second queue of the
//! file's (`uqid`: REAP, poll and the eventfd see only the first), with the command attached. The
//! engine ends the command with the request; its task work (`uring_task`) takes the completion,
//! drops the hold inside `bound` (or, after unbind, once unbind released it) and returns the CQE
//! result: bytes done, or the request's errno. io_uring's cancellation (ring torn down, task
//! exiting) cancels the request (`Engine::cancel`). A command holds its file, so the file is not
//! released while one is in flight: close of the edu fd changes nothing for them.

use kernel::{
    fs::{
        file::{
            flags::{
                O_CLOEXEC,
                O_RDWR, //
            },
            FileDescriptorReservation,
        },
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
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        poll::PollTable,
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
    buffer::{
        Buffer,
        Kind, //
    },
    cmds::Dir,
    device::{
        EduDevice,
        IrqMode,
        Live, //
    },
    engine::{
        Done,
        Request, //
    },
    export::{
        self,
        Access, //
    },
    raw::{
        cred,
        dma::Owner,
        dmabuf::DmaBuf,
        eventfd::EventFd,
        gup::Pinned,
        misc::{
            poll_mask,
            Fops,
            MiscNode,
            NodeFile, //
        },
        uring::{
            Completion,
            Issue,
            UringCmd, //
        },
        vm::vma_pgoff,
    },
    registered::Registered,
    split::{
        self,
        WINDOW, //
    },
    uapi::*,
    userpages,
    xfer::{
        self,
        CopyJob,
        Side,
        COPY_MAX, //
    },
};

/// Marks uapi structs as plain bytes for `UserSlice` reads and writes.
macro_rules! uapi_bytes {
    ($($t:ty),*) => {$(
        // SAFETY: all uapi structs are `#[repr(C)]` and made of integers only, so every bit
        // pattern is a valid value.
        unsafe impl FromBytes for $t {}
        // SAFETY: all uapi structs are `#[repr(C)]`, made of integers only and have no padding
        // (their layout is checked against the C header by `make check-uapi`), so every byte of
        // a value is initialised.
        unsafe impl AsBytes for $t {}
    )*};
}
uapi_bytes!(
    EduDmaInfo,
    EduDmaFactorial,
    EduDmaBufAlloc,
    EduDmaBufFree,
    EduDmaBufExport,
    EduDmaBufImport,
    EduDmaBufSync,
    EduDmaXfer,
    EduDmaUserXfer,
    EduDmaCopy,
    EduDmaFault,
    EduDmaReq,
    EduDmaSubmit,
    EduDmaCqe,
    EduDmaReap,
    EduDmaSetEventfd,
    EduDmaRegUser,
    EduDmaUnregUser
);

/// The `file_operations` of every `/dev/edu-dma<N>`.
static FOPS: Fops = Fops::new::<EduFile>(&crate::THIS_MODULE);

// SAFETY: `fops` returns operations built by `Fops::new::<EduFile>`, and `EduFile` nodes are
// registered only through `MiscNode` (`EduNode::register` in probe).
unsafe impl NodeFile for EduFile {
    type Data = Arc<EduDevice>;

    fn fops() -> &'static Fops {
        &FOPS
    }

    /// A file that never submitted is a plain node: `read`/`write` of the window never wait for
    /// data (only for the device), so it is readable and writable, like a regular file. That is
    /// also what io_uring's `READ`/`WRITE` of the node ask before they issue (without `POLLIN`
    /// io_uring would wait for it before reading, forever). Once the file submitted, `POLLIN`
    /// means a completion of its queue waits.
    fn poll(me: Pin<&EduFile>, file: &File, table: &PollTable<'_>) -> u32 {
        table.register_wait(file, me.edu.engine.poll_cv());
        let id = me.qid.load(Relaxed);
        let r = me.edu.engine.readiness((id != 0).then_some(id));
        let mut mask = 0;
        if r.done > 0 || (id == 0 && !r.gone) {
            mask |= poll_mask::IN;
        }
        if r.room {
            mask |= poll_mask::OUT;
        }
        if r.gone {
            mask |= poll_mask::HUP;
        }
        mask
    }

    /// `IORING_OP_URING_CMD`: `EDU_DMA_URING_CMD_XFER` queues the request in the 128-byte SQE
    /// (see the module comment); any other `cmd_op` is `ENOTTY`, like an unknown ioctl.
    fn uring_cmd(
        me: Pin<&EduFile>,
        issue: &Issue<'_>,
        cmd: UringCmd,
    ) -> core::result::Result<(), (Error, UringCmd)> {
        if issue.op() != EDU_DMA_URING_CMD_XFER {
            return Err((ENOTTY, cmd));
        }
        match issue.read_sqe128::<EduDmaReq>() {
            Ok(r) => me.uring_submit(&r, cmd),
            Err(e) => Err((e, cmd)),
        }
    }

    fn uring_cancel(me: Pin<&EduFile>, tag: u64) {
        let id = me.uqid.load(Acquire);
        // Tag 0: not queued yet; io_uring offers the command again until it completes.
        if id != 0 && tag != 0 {
            me.edu.engine.cancel(id, tag);
        }
    }

    fn uring_task(me: Pin<&EduFile>, tag: u64) -> Completion {
        me.uring_done(tag)
    }
}

/// The `/dev` node of one device.
pub(crate) type EduNode = MiscNode<EduFile>;

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
    /// Registered user memory (`REG_USER`), by id; at most `EDU_DMA_REG_MAX`.
    regs: KVec<(u32, Arc<Registered>)>,
    /// The next registration id (ids are never reused).
    next_reg: u32,
}

/// An open `/dev/edu-dma<N>`.
#[pin_data(PinnedDrop)]
pub(crate) struct EduFile {
    edu: Arc<EduDevice>,
    #[pin]
    bufs: Mutex<Bufs>,
    /// The id of the file's queue in the engine (0: none yet).
    qid: Atomic<u64>,
    /// Serialises creating the queue and reaping it (a reap copies out, then removes).
    #[pin]
    queue: Mutex<()>,
    /// The id of the file's queue of io_uring commands in the engine (0: none yet).
    uqid: Atomic<u64>,
    /// Serialises creating that queue (not `queue`: a reaper holds it while it waits).
    #[pin]
    uring: Mutex<()>,
}

// The uapi, parsed: below this file no uapi integer travels.

fn direction(flags: u32) -> Result<Dir> {
    match flags {
        EDU_DMA_TO_DEVICE => Ok(Dir::ToDevice),
        EDU_DMA_FROM_DEVICE => Ok(Dir::FromDevice),
        _ => Err(EINVAL),
    }
}

fn buffer_kind(kind: u32) -> Result<Kind> {
    match kind {
        EDU_DMA_BUF_COHERENT => Ok(Kind::Coherent),
        EDU_DMA_BUF_STREAMING => Ok(Kind::Streaming),
        _ => Err(EINVAL),
    }
}

fn sync_owner(flags: u32) -> Result<Owner> {
    match flags {
        EDU_DMA_SYNC_FOR_DEVICE => Ok(Owner::Device),
        EDU_DMA_SYNC_FOR_CPU => Ok(Owner::Cpu),
        _ => Err(EINVAL),
    }
}

/// The export flags are `open(2)`'s own (the header spells their values out).
const _: () = assert!(EDU_DMA_EXPORT_CLOEXEC == O_CLOEXEC && EDU_DMA_EXPORT_RDWR == O_RDWR);

/// `edu_dma_buf_export.flags`, parsed.
struct ExportFlags {
    /// The fd is close-on-exec.
    cloexec: bool,
    access: Access,
}

fn export_flags(flags: u32) -> Result<ExportFlags> {
    if flags & !(EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR) != 0 {
        return Err(EINVAL);
    }
    Ok(ExportFlags {
        cloexec: flags & EDU_DMA_EXPORT_CLOEXEC != 0,
        access: if flags & EDU_DMA_EXPORT_RDWR != 0 {
            Access::ReadWrite
        } else {
            Access::ReadOnly
        },
    })
}

fn irq_mode(mode: IrqMode) -> u32 {
    match mode {
        IrqMode::Intx => EDU_DMA_IRQ_INTX,
        IrqMode::Msi => EDU_DMA_IRQ_MSI,
    }
}

/// Checks a window range: count 1..=4096 within the window.
fn window_range(win_off: u32, count: u32) -> Result<(usize, usize)> {
    split::window_range(win_off, count).ok_or(EINVAL)
}

/// Checks a user range: non-empty, not wrapping.
fn user_range(addr: u64, len: u64) -> Result<(usize, usize)> {
    split::user_range(addr, len).ok_or(EINVAL)
}

#[pinned_drop]
impl PinnedDrop for EduFile {
    fn drop(self: Pin<&mut Self>) {
        // The queues first: their requests hold buffer references, pins and mappings (the
        // io_uring queue is empty: each command holds the file until it completed).
        for id in [self.qid.load(Acquire), self.uqid.load(Acquire)] {
            if id != 0
                && self
                    .edu
                    .bound(|live| {
                        live.detach(id);
                        Ok(())
                    })
                    .is_err()
            {
                // Unbind released (or is releasing) the holds; forget what is left.
                self.edu.engine.detach_gone(id);
            }
        }
        // Out of the lock first: a buffer's last drop releases DMA memory and mappings, a
        // registration's unmaps, unpins and refunds its memlock charge.
        let (live, zombies, regs) = {
            let mut bufs = self.bufs.lock();
            (
                core::mem::take(&mut bufs.live),
                core::mem::take(&mut bufs.zombies),
                core::mem::take(&mut bufs.regs),
            )
        };
        for buf in Iterator::chain(live.into_iter().map(|e| e.buf), zombies) {
            self.edu.retire(buf);
        }
        for (_, reg) in regs {
            self.edu.retire(reg);
        }
    }
}

impl EduFile {
    /// A request's timeout: its own, or the default for 0.
    fn timeout(&self, ms: u32) -> u32 {
        if ms == 0 {
            self.edu.params.timeout_ms
        } else {
            ms
        }
    }

    /// The buffer of `handle`. Call it inside `bound` only, and drop the reference there: the
    /// last reference to a buffer must go while the device is bound (see `EduDevice::retire`).
    fn buffer(&self, handle: u32) -> Result<Arc<Buffer>> {
        let bufs = self.bufs.lock();
        bufs.live
            .iter()
            .find(|e| e.handle == handle)
            .map(|e| e.buf.clone())
            .ok_or(ENOENT)
    }

    /// Checks that `handle` names a live buffer and `[offset, offset + len)` lies in it; returns
    /// `(offset, end)`. Validation before `bound`, without taking a reference.
    fn check_buffer(&self, handle: u32, offset: u64, len: u64) -> Result<(usize, usize)> {
        let bufs = self.bufs.lock();
        let buf = &bufs
            .live
            .iter()
            .find(|e| e.handle == handle)
            .ok_or(ENOENT)?
            .buf;
        buf.check_range(offset, len)
    }

    fn info(&self) -> Result<EduDmaInfo> {
        let edu = &self.edu;
        edu.bound(|_| Ok(()))?;
        let (id, s) = (&edu.id, edu.engine.stats());
        Ok(EduDmaInfo {
            ident: id.ident.raw,
            version_major: id.ident.major,
            version_minor: id.ident.minor,
            instance: id.instance,
            dma_mask_bits: edu.params.dma_bits,
            irq_mode: irq_mode(id.irq_mode),
            pci_domain: id.loc.domain,
            pci_bus: id.loc.bus,
            pci_slot: id.loc.slot,
            pci_func: id.loc.func,
            window_size: EDU_DMA_WINDOW_SIZE,
            dma_coherent: u32::from(id.dma_coherent),
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
        let tmo = self.timeout(0);
        req.result = self
            .edu
            .bound(|live| live.engine()?.factorial(req.n, tmo))?
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
        let held: usize = Iterator::chain(
            bufs.live.iter().map(|e| e.buf.held()),
            bufs.zombies.iter().map(|b| b.held()),
        )
        .sum();
        let room = self.edu.params.file_cap.saturating_sub(held);
        let handle = bufs.next;
        let next = handle.checked_add(1).ok_or(ENOSPC)?;
        // Room first: once the buffer exists, nothing may fail.
        bufs.live.reserve(1, GFP_KERNEL)?;
        let buf = self.edu.bound(|live| {
            let buf = Buffer::new(live, buffer_kind(req.kind)?, req.size, room)?;
            let entry = Entry {
                handle,
                buf,
                mapped: false,
            };
            // Cannot fail: the room was reserved above (the `bufs` lock is still held).
            bufs.live.push_within_capacity(entry).map_err(|_| ENOMEM)
        });
        buf?;
        bufs.next = next;
        req.handle = handle;
        req.mmap_offset = split::mmap_offset(handle);
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
        // Room first: past this point the handle is gone, so nothing may fail.
        bufs.zombies.reserve(1, GFP_KERNEL)?;
        let e = bufs.live.remove(i)?;
        if e.mapped && e.buf.kind() == Kind::Coherent {
            // PFN mappings of it may still exist: it goes with the file (VMAs hold the file).
            // Cannot fail: the room was reserved above.
            bufs.zombies
                .push_within_capacity(e.buf)
                .map_err(|_| ENOMEM)?;
            return Ok(());
        }
        drop(bufs);
        // Streaming pages are refcounted by their user mappings; the DMA mappings go with the
        // last reference (now, or when a transfer using the buffer ends).
        self.edu.retire(e.buf);
        Ok(())
    }

    /// A dma-buf of streaming buffer `handle`.
    fn buf_export(&self, handle: u32, access: Access) -> Result<DmaBuf> {
        self.edu.bound(|live| {
            let buf = self.buffer(handle)?;
            export::export(live, &self.edu, buf, access)
        })
    }

    /// A handle for the dma-buf of `req.fd` (see `import.rs`); inserted like `buf_alloc`'s.
    fn buf_import(&self, req: &mut EduDmaBufImport) -> Result {
        if req.flags != 0 || req.reserved != 0 {
            return Err(EINVAL);
        }
        let mut bufs = self.bufs.lock();
        let handle = bufs.next;
        let next = handle.checked_add(1).ok_or(ENOSPC)?;
        bufs.live.reserve(1, GFP_KERNEL)?;
        let bits = self.edu.params.dma_bits;
        let size = self.edu.bound(|live| {
            // A dma-buf of this very device is its buffer again, not a second mapping.
            let buf = match export::own_buffer(&self.edu, req.fd)? {
                Some(target) => Buffer::alias(live, target)?,
                None => Buffer::import(live, req.fd, bits)?,
            };
            let size = buf.size();
            let entry = Entry {
                handle,
                buf,
                mapped: false,
            };
            // Cannot fail: the room was reserved above (the `bufs` lock is still held).
            bufs.live.push_within_capacity(entry).map_err(|_| ENOMEM)?;
            Ok(size)
        })?;
        bufs.next = next;
        req.handle = handle;
        req.size = size as u64;
        Ok(())
    }

    fn buf_sync(&self, req: &EduDmaBufSync) -> Result {
        let to = sync_owner(req.flags)?;
        let (off, end) = match self.check_buffer(req.handle, req.offset, req.len) {
            Ok(_) if req.len == 0 => return Err(EINVAL),
            r => r?,
        };
        self.edu
            .bound(|_| self.buffer(req.handle)?.sync(off, end - off, to))
    }

    /// `EDU_DMA_IOC_REG_USER`: registers `[addr, addr + len)` of the caller (see `registered.rs`).
    fn reg_user(&self, req: &mut EduDmaRegUser) -> Result {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let (addr, len) = user_range(req.addr, req.len)?;
        if addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        if len > EDU_DMA_REG_MAX_LEN as usize {
            return Err(E2BIG);
        }
        // Pinning takes the mmap lock, which orders before `bufs` (see `device.rs`): the count
        // is checked before (fast `ENOSPC`) and again at the insertion, under the lock.
        let room = |bufs: &Bufs| -> Result {
            if bufs.regs.len() >= EDU_DMA_REG_MAX as usize {
                return Err(ENOSPC);
            }
            bufs.next_reg.checked_add(1).ok_or(ENOSPC).map(|_| ())
        };
        room(&self.bufs.lock())?;
        let reg = self.edu.bound(|live| Registered::new(live, addr, len))?;
        let mut bufs = self.bufs.lock();
        let ready = room(&bufs).and_then(|()| Ok(bufs.regs.reserve(1, GFP_KERNEL)?));
        let id = bufs.next_reg;
        // Cannot fail to push once the room is reserved.
        let ret = match ready {
            Ok(()) => bufs
                .regs
                .push_within_capacity((id, reg))
                .map_err(|e| (ENOMEM, e.0 .1)),
            Err(e) => Err((e, reg)),
        };
        match ret {
            Ok(()) => {
                bufs.next_reg = id + 1;
                req.id = id;
                Ok(())
            }
            Err((e, reg)) => {
                drop(bufs);
                // Unmapped, unpinned and uncharged while bound (see `EduDevice::retire`).
                self.edu.retire(reg);
                Err(e)
            }
        }
    }

    /// `EDU_DMA_IOC_UNREG_USER`: drops the id now; the registration goes with its last queued
    /// request (or now, if none uses it).
    fn unreg_user(&self, req: &EduDmaUnregUser) -> Result {
        if req.flags != 0 {
            return Err(EINVAL);
        }
        let reg = {
            let mut bufs = self.bufs.lock();
            let i = bufs
                .regs
                .iter()
                .position(|(id, _)| *id == req.id)
                .ok_or(ENOENT)?;
            bufs.regs.remove(i)?.1
        };
        self.edu.retire(reg);
        Ok(())
    }

    /// The registration of `id`. Call it inside `bound` only, and drop the reference there (as
    /// for [`EduFile::buffer`]).
    fn registration(&self, id: u32) -> Result<Arc<Registered>> {
        let bufs = self.bufs.lock();
        bufs.regs
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, r)| r.clone())
            .ok_or(ENOENT)
    }

    fn xfer(&self, req: &EduDmaXfer) -> Result {
        let dir = direction(req.flags)?;
        if req.reserved != 0 {
            return Err(EINVAL);
        }
        let (win, count) = window_range(req.win_offset, req.count)?;
        let (off, _) = self.check_buffer(req.handle, req.buf_offset, count as u64)?;
        let tmo = self.timeout(req.timeout_ms);
        self.edu.bound(|live| {
            let buf = self.buffer(req.handle)?;
            xfer::buffer_xfer(live, &buf, off, win, count, dir, tmo)
        })
    }

    fn user_xfer(&self, req: &EduDmaUserXfer) -> Result {
        let dir = direction(req.flags)?;
        let (addr, len) = user_range(req.addr, req.len.into())?;
        let (win, _) = window_range(req.win_offset, req.len)?;
        let tmo = self.timeout(req.timeout_ms);
        self.edu.bound(|live| {
            let pinned = userpages::pin(addr, len, dir)?;
            xfer::pinned_xfer(live, pinned, win, dir, tmo).1
        })
    }

    /// Validates one side of a copy; `Some(handle)` for a buffer side, resolved in `bound`.
    fn side(&self, addr: u64, len: u64, is_buf: bool, handle: u32) -> Result<(Option<u32>, usize)> {
        if is_buf {
            Ok((Some(handle), self.check_buffer(handle, addr, len)?.0))
        } else {
            Ok((None, user_range(addr, len)?.0))
        }
    }

    /// A validated side, with its buffer reference (inside `bound`).
    fn resolve(&self, side: (Option<u32>, usize)) -> Result<Side> {
        Ok(match side {
            (Some(handle), off) => Side::Buf(self.buffer(handle)?, off),
            (None, addr) => Side::User(addr),
        })
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
        let len = usize::try_from(req.len).map_err(|_| E2BIG)?;
        let timeout_ms = self.timeout(req.timeout_ms);
        let mut done = 0;
        let ret = self.edu.bound(|live| {
            let job = CopyJob {
                src: self.resolve(src)?,
                dst: self.resolve(dst)?,
                len,
                pin_pages: self.edu.params.pin_pages,
                timeout_ms,
            };
            job.run(live, &mut done)
        });
        req.done = done as u64;
        ret
    }

    fn fault(&self, req: &EduDmaFault) -> Result {
        if !cred::capable_sys_admin() {
            return Err(EPERM);
        }
        if req.flags != 0 {
            return Err(EINVAL);
        }
        self.edu.engine.drop_next_irqs(req.drop_irqs);
        Ok(())
    }

    /// The file's queue id, creating the queue at the first call.
    fn queue_id(&self) -> Result<u64> {
        self.queue_of(&self.qid, &self.queue)
    }

    /// The id of the file's queue of io_uring commands, creating it at the first call.
    fn uring_queue_id(&self) -> Result<u64> {
        self.queue_of(&self.uqid, &self.uring)
    }

    /// The queue whose id is kept in `qid`, created under `lock` at the first call.
    fn queue_of(&self, qid: &Atomic<u64>, lock: &Mutex<()>) -> Result<u64> {
        // Without the lock when it exists: a reaper may hold the lock while it waits.
        let id = qid.load(Acquire);
        if id != 0 {
            return Ok(id);
        }
        let _guard = lock.lock();
        let id = qid.load(Acquire);
        if id != 0 {
            return Ok(id);
        }
        let depth = self.edu.params.queue_depth;
        let id = self.edu.bound(|_| self.edu.engine.attach(depth))?;
        // Release: whoever sees the id finds the queue in the engine.
        qid.store(id, Release);
        Ok(id)
    }

    /// `EDU_DMA_IOC_SUBMIT`: queues requests in order; returns how many.
    fn submit(&self, req: &EduDmaSubmit) -> Result<isize> {
        if req.count == 0 || req.flags != 0 {
            return Err(EINVAL);
        }
        let count = req.count as usize;
        let bytes = count.checked_mul(size_of::<EduDmaReq>()).ok_or(EINVAL)?;
        let addr = usize::try_from(req.reqs).map_err(|_| EFAULT)?;
        let id = self.queue_id()?;
        let mut reader = UserSlice::new(UserPtr::from_addr(addr), bytes).reader();
        let mut queued = 0isize;
        for _ in 0..count {
            let one = reader
                .read::<EduDmaReq>()
                .and_then(|r| self.submit_one(id, &r, |live, q| live.submit(id, q)));
            match one {
                Ok(()) => queued += 1,
                Err(e) if queued == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(queued)
    }

    /// Parses and builds one request for file queue `id` (its room checked first), and queues it
    /// with `queue`.
    fn submit_one(
        &self,
        id: u64,
        r: &EduDmaReq,
        queue: impl FnOnce(&Live<'_>, Request) -> Result,
    ) -> Result {
        if r.reserved != 0 {
            return Err(EINVAL);
        }
        let tmo = self.timeout(r.timeout_ms);
        let cookie = r.cookie;
        let room = || {
            if self.edu.engine.readiness(Some(id)).room {
                Ok(())
            } else {
                Err(EAGAIN)
            }
        };
        match r.op {
            EDU_DMA_OP_XFER => {
                let dir = direction(r.flags)?;
                if r.dst != 0 || r.dst_handle != 0 {
                    return Err(EINVAL);
                }
                let count = u32::try_from(r.len).map_err(|_| EINVAL)?;
                let (win, count) = window_range(r.win_offset, count)?;
                let (off, _) = self.check_buffer(r.handle, r.addr, count as u64)?;
                self.edu.bound(|live| {
                    room()?;
                    let buf = self.buffer(r.handle)?;
                    let q = xfer::queued_buffer_xfer(buf, off, win, count, dir, cookie, tmo)?;
                    queue(live, q)
                })
            }
            EDU_DMA_OP_REG_XFER => {
                let dir = direction(r.flags)?;
                if r.dst != 0 || r.dst_handle != 0 {
                    return Err(EINVAL);
                }
                let count = u32::try_from(r.len).map_err(|_| EINVAL)?;
                let (win, count) = window_range(r.win_offset, count)?;
                self.edu.bound(|live| {
                    let reg = self.registration(r.handle)?;
                    let (off, _) = reg.check_range(r.addr, count as u64)?;
                    room()?;
                    let q = xfer::queued_reg_xfer(reg, off, win, count, dir, cookie, tmo)?;
                    live.submit(id, q)
                })
            }
            EDU_DMA_OP_USER_XFER => {
                let dir = direction(r.flags)?;
                if r.dst != 0 || r.handle != 0 || r.dst_handle != 0 {
                    return Err(EINVAL);
                }
                let count = u32::try_from(r.len).map_err(|_| EINVAL)?;
                let (addr, len) = user_range(r.addr, r.len)?;
                let (win, _) = window_range(r.win_offset, count)?;
                self.edu.bound(|live| {
                    room()?;
                    let q = xfer::queued_user_xfer(live, addr, len, win, dir, cookie, tmo)?;
                    queue(live, q)
                })
            }
            EDU_DMA_OP_COPY => {
                let (src_buf, dst_buf) = (
                    r.flags & EDU_DMA_COPY_SRC_BUF != 0,
                    r.flags & EDU_DMA_COPY_DST_BUF != 0,
                );
                if r.flags & !(EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF) != 0
                    || r.len == 0
                    || r.win_offset != 0
                    || (!src_buf && r.handle != 0)
                    || (!dst_buf && r.dst_handle != 0)
                {
                    return Err(EINVAL);
                }
                let max = xfer::queued_copy_max(self.edu.params.pin_pages);
                if r.len > max as u64 {
                    return Err(E2BIG);
                }
                let src = self.side(r.addr, r.len, src_buf, r.handle)?;
                let dst = self.side(r.dst, r.len, dst_buf, r.dst_handle)?;
                let len = usize::try_from(r.len).map_err(|_| E2BIG)?;
                self.edu.bound(|live| {
                    room()?;
                    let (src, dst) = (self.resolve(src)?, self.resolve(dst)?);
                    let q = xfer::queued_copy(live, src, dst, len, cookie, tmo)?;
                    queue(live, q)
                })
            }
            _ => Err(EINVAL),
        }
    }

    /// An `EDU_DMA_URING_CMD_XFER` request: parsed, built and queued like a `SUBMIT` request, on
    /// the file's io_uring queue, with its command; refused, the command comes back with the
    /// error (its CQE result). The cookie must be 0: the command's `user_data` names it.
    fn uring_submit(
        &self,
        r: &EduDmaReq,
        cmd: UringCmd,
    ) -> core::result::Result<(), (Error, UringCmd)> {
        if r.cookie != 0 {
            return Err((EINVAL, cmd));
        }
        let id = match self.uring_queue_id() {
            Ok(id) => id,
            Err(e) => return Err((e, cmd)),
        };
        let mut cmd = Some(cmd);
        let ret = self.submit_one(id, r, |live, q| {
            let c = cmd.take().ok_or(EINVAL)?;
            live.submit_cmd(id, q, c).map_err(|(e, c)| {
                cmd = c;
                e
            })
        });
        // The engine has the command unless it gave it back (or it was never offered).
        match cmd {
            None => Ok(()),
            Some(c) => Err((ret.err().unwrap_or(EINVAL), c)),
        }
    }

    /// Task work of the io_uring command with tag `tag`, which the engine ended: takes its
    /// completion, drops its hold inside `bound` (once the device is gone, unbind released it:
    /// waits for that) and returns the CQE's results: bytes done or the request's errno, and
    /// the bytes done (for a 32-byte CQE's `big_cqe[0]`).
    fn uring_done(&self, tag: u64) -> Completion {
        let id = self.uqid.load(Acquire);
        let engine = &self.edu.engine;
        let mut taken = None;
        let bound = self.edu.bound(|_| {
            taken = engine.take(id, tag).map(|(d, hold)| {
                drop(hold);
                d
            });
            Ok(())
        });
        if bound.is_err() {
            engine.wait_released_uninterruptible();
            // Unbind released the hold: `None` here.
            taken = engine.take(id, tag).map(|(d, _)| d);
        }
        // `res`: the bytes done or the error; `res2` (32-byte CQEs): the bytes done in any case,
        // what landed before an error included.
        match taken {
            Some(d) => Completion {
                res: match d.status {
                    0 => i32::try_from(d.done).unwrap_or(i32::MAX),
                    e => e,
                },
                res2: d.done,
            },
            // Not reached: the engine ends a request before it queues this task work.
            None => Completion {
                res: EINVAL.to_errno(),
                res2: 0,
            },
        }
    }

    /// `EDU_DMA_IOC_SET_EVENTFD`: the eventfd signalled per completion of this file's queue
    /// (`fd` -1: none), which the queue (created now if need be) holds until replaced, removed
    /// or the file is closed.
    fn set_eventfd(&self, r: &EduDmaSetEventfd) -> Result {
        if r.flags != 0 {
            return Err(EINVAL);
        }
        let mut eventfd = match r.fd {
            -1 => None,
            fd if fd < 0 => return Err(EBADF),
            fd => Some(EventFd::from_fd(fd)?),
        };
        let id = self.queue_id()?;
        let ret = self
            .edu
            .bound(|_| self.edu.engine.set_eventfd(id, &mut eventfd));
        // The replaced one (or, on error, the new one): outside the engine lock.
        drop(eventfd);
        ret
    }

    /// `EDU_DMA_IOC_REAP`: waits for and copies out completions; returns how many.
    fn reap(&self, r: &EduDmaReap) -> Result<isize> {
        if r.max == 0 || r.min > r.max || r.flags & !EDU_DMA_REAP_NONBLOCK != 0 {
            return Err(EINVAL);
        }
        let nonblock = r.flags & EDU_DMA_REAP_NONBLOCK != 0;
        let addr = usize::try_from(r.cqes).map_err(|_| EFAULT)?;
        let _guard = self.queue.lock();
        let id = self.qid.load(Acquire);
        if id == 0 {
            return if nonblock { Err(EAGAIN) } else { Ok(0) };
        }
        let engine = &self.edu.engine;
        if !nonblock {
            engine.wait_done(id, r.min as usize, r.timeout_ms)?;
        }
        let max = (r.max as usize).min(self.edu.params.queue_depth);
        let mut got = KVec::with_capacity(max, GFP_KERNEL)?;
        let out = |got: &KVec<Done>| -> Result {
            let mut writer =
                UserSlice::new(UserPtr::from_addr(addr), got.len() * size_of::<EduDmaCqe>())
                    .writer();
            for d in got.iter() {
                writer.write(&EduDmaCqe {
                    cookie: d.cookie,
                    status: d.status,
                    reserved: 0,
                    done: d.done,
                })?;
            }
            Ok(())
        };
        // Copied out first, removed after: an unwritable array loses no completion. Holds are
        // dropped inside `bound`; once the device is gone, unbind released them.
        let mut entered = false;
        let ret = self.edu.bound(|_| {
            entered = true;
            engine.peek_done(id, &mut got, true);
            out(&got)?;
            engine.remove_done(id, &got, drop);
            Ok(())
        });
        if !entered {
            engine.wait_released()?;
            engine.peek_done(id, &mut got, false);
            if got.is_empty() {
                return Err(ENODEV);
            }
            out(&got)?;
            engine.remove_done(id, &got, drop);
        } else {
            ret?;
        }
        if got.is_empty() && nonblock {
            return Err(EAGAIN);
        }
        Ok(got.len() as isize)
    }

    /// DMA between the window at `*pos` and `total` bytes of an I/O iterator, whose pages
    /// `next(live, max_len)` extracts (pinning user memory) two pages at a time. An error after
    /// some bytes moved (a signal, or task work: `ERESTARTSYS`, included) is a short count: a
    /// restart could not know what was consumed, so only a call that moved nothing restarts.
    fn rw<'a>(
        &self,
        total: usize,
        pos: &mut i64,
        dir: Dir,
        mut next: impl FnMut(usize) -> Result<Pinned<'a>>,
    ) -> Result<usize> {
        let mut done = 0;
        let tmo = self.timeout(0);
        let start = usize::try_from(*pos).map_err(|_| EINVAL)?;
        let ret = self.edu.bound(|live: &Live<'_>| {
            while done < total {
                let pinned = next(total - done)?;
                let n = pinned.len();
                if n == 0 {
                    break;
                }
                // Exact: bytes that landed count even when the transfer failed part way.
                let (landed, ret) = xfer::pinned_xfer(live, pinned, start + done, dir, tmo);
                done += landed.min(n);
                ret?;
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

/// An ioctl that creates a handle (BUF_ALLOC, BUF_IMPORT): reads the argument, runs `make`, and
/// writes the argument back. The caller must learn the handle, or nobody could ever free it:
/// when the write fails (`EFAULT`), `forget` frees the new handle again.
fn with_new_handle<T: FromBytes + AsBytes>(
    arg: usize,
    make: impl FnOnce(&mut T) -> Result,
    handle: impl FnOnce(&T) -> u32,
    forget: impl FnOnce(u32),
) -> Result<isize> {
    let (mut reader, mut writer) =
        UserSlice::new(UserPtr::from_addr(arg), size_of::<T>()).reader_writer();
    let mut req: T = reader.read()?;
    make(&mut req)?;
    writer.write(&req).inspect_err(|_| forget(handle(&req)))?;
    Ok(0)
}

#[vtable]
impl MiscDevice for EduFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let edu = EduNode::data_of(misc).clone();
        KBox::try_pin_init(
            try_pin_init!(EduFile {
                edu,
                bufs <- new_mutex!(Bufs { live: KVec::new(), zombies: KVec::new(), next: 1, regs: KVec::new(), next_reg: 1 }, "EduFile::bufs"),
                qid: Atomic::new(0),
                queue <- new_mutex!((), "EduFile::queue"),
                uqid: Atomic::new(0),
                uring <- new_mutex!((), "EduFile::uring"),
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
            EDU_DMA_IOC_BUF_ALLOC => with_new_handle(
                arg,
                |r: &mut EduDmaBufAlloc| me.buf_alloc(r),
                |r| r.handle,
                |handle| {
                    let _ = me.buf_free(&EduDmaBufFree { handle, flags: 0 });
                },
            ),
            EDU_DMA_IOC_BUF_FREE => with_arg(arg, Out::Never, |r| me.buf_free(r)),
            EDU_DMA_IOC_BUF_EXPORT => {
                let (mut reader, mut writer) =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<EduDmaBufExport>())
                        .reader_writer();
                let mut req: EduDmaBufExport = reader.read()?;
                let flags = export_flags(req.flags)?;
                if req.reserved != 0 {
                    return Err(EINVAL);
                }
                let fd = FileDescriptorReservation::get_unused_fd_flags(if flags.cloexec {
                    O_CLOEXEC
                } else {
                    0
                })?;
                let dmabuf = me.buf_export(req.handle, flags.access)?;
                req.fd = i32::try_from(fd.reserved_fd()).map_err(|_| EMFILE)?;
                // The fd is installed only once the caller can learn it: on `EFAULT` the
                // reservation and the dma-buf (released with its last reference) both go.
                writer.write(&req)?;
                dmabuf.install(fd);
                Ok(0)
            }
            EDU_DMA_IOC_BUF_IMPORT => with_new_handle(
                arg,
                |r: &mut EduDmaBufImport| me.buf_import(r),
                |r| r.handle,
                |handle| {
                    let _ = me.buf_free(&EduDmaBufFree { handle, flags: 0 });
                },
            ),
            EDU_DMA_IOC_BUF_SYNC => with_arg(arg, Out::Never, |r| me.buf_sync(r)),
            EDU_DMA_IOC_XFER => with_arg(arg, Out::Never, |r| me.xfer(r)),
            EDU_DMA_IOC_USER_XFER => with_arg(arg, Out::Never, |r| me.user_xfer(r)),
            EDU_DMA_IOC_COPY => with_arg(arg, Out::Always, |r| me.copy(r)),
            EDU_DMA_IOC_FAULT => with_arg(arg, Out::Never, |r| me.fault(r)),
            EDU_DMA_IOC_SUBMIT => {
                let req: EduDmaSubmit =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<EduDmaSubmit>())
                        .reader()
                        .read()?;
                me.submit(&req)
            }
            EDU_DMA_IOC_REAP => {
                let req: EduDmaReap =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<EduDmaReap>())
                        .reader()
                        .read()?;
                me.reap(&req)
            }
            EDU_DMA_IOC_SET_EVENTFD => with_arg(arg, Out::Never, |r| me.set_eventfd(r)),
            EDU_DMA_IOC_REG_USER => with_new_handle(
                arg,
                |r: &mut EduDmaRegUser| me.reg_user(r),
                |r| r.id,
                |id| {
                    let _ = me.unreg_user(&EduDmaUnregUser { id, flags: 0 });
                },
            ),
            EDU_DMA_IOC_UNREG_USER => with_arg(arg, Out::Never, |r| me.unreg_user(r)),
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
        let pages = (vma.end() - vma.start()) / PAGE_SIZE;
        let mut bufs = me.bufs.lock();
        let live = &mut bufs.live;
        // The handle's entry, found once: `mmap_request` looks up its size through it.
        let mut at = None;
        let (handle, first) = split::mmap_request(vma_pgoff(vma), pages, PAGE_SHIFT as u32, |h| {
            let i = live.iter().position(|e| e.handle == h)?;
            at = Some(i);
            live.get(i).map(|e| e.buf.size() / PAGE_SIZE)
        })
        .ok_or(EINVAL)?;
        let entry = at.and_then(|i| live.get_mut(i)).ok_or(EINVAL)?;
        let base = split::mmap_offset(handle);
        let buf = &entry.buf;
        me.edu
            .bound(|live| buf.mmap(live.dev, file, vma, first, base))?;
        entry.mapped = true;
        Ok(())
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let me = kiocb.file();
        let pos = kiocb.ki_pos();
        if pos < 0 {
            return Err(EINVAL);
        }
        if pos >= WINDOW as i64 || iov.is_empty() {
            return Ok(0);
        }
        let total = iov.len().min(WINDOW - pos as usize);
        me.rw(total, kiocb.ki_pos_mut(), Dir::FromDevice, |max| {
            Pinned::from_dest(iov, max, 2)
        })
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
        if pos >= WINDOW as i64 {
            return Err(ENOSPC);
        }
        let total = iov.len().min(WINDOW - pos as usize);
        me.rw(total, kiocb.ki_pos_mut(), Dir::ToDevice, |max| {
            Pinned::from_source(iov, max, 2)
        })
    }
}
