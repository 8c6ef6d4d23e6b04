//! The asynchronous queue of an open file: `EDU_DMA_IOC_SUBMIT` / `EDU_DMA_IOC_REAP`, and the
//! file descriptor for `poll`/`epoll` (`POLLIN`: a completion waits; `POLLOUT`: room to submit),
//! or an eventfd counting completions (`EDU_DMA_IOC_SET_EVENTFD`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use crate::uapi::*;
use crate::{Device, Dir};

nix::ioctl_write_ptr_bad!(ioc_submit, EDU_DMA_IOC_SUBMIT, EduDmaSubmit);
nix::ioctl_write_ptr_bad!(ioc_reap, EDU_DMA_IOC_REAP, EduDmaReap);
nix::ioctl_write_ptr_bad!(ioc_set_eventfd, EDU_DMA_IOC_SET_EVENTFD, EduDmaSetEventfd);

/// One request for [`Queue::submit`]: constructors for each kind of transfer.
impl EduDmaReq {
    /// Buffer `handle` at `buf_offset` <-> window at `win_offset`, `len` bytes (1..=4096).
    pub fn buffer_xfer(
        cookie: u64,
        handle: u32,
        buf_offset: u64,
        win_offset: u32,
        len: u32,
        dir: Dir,
    ) -> Self {
        EduDmaReq {
            cookie,
            op: EDU_DMA_OP_XFER,
            flags: dir.raw(),
            addr: buf_offset,
            len: len.into(),
            handle,
            win_offset,
            ..Default::default()
        }
    }

    /// User memory at `addr` <-> window at `win_offset`, `len` bytes (1..=4096). The memory is
    /// pinned at submit: see [`Queue::submit`]'s safety rule.
    pub fn user_xfer(cookie: u64, addr: u64, len: u32, win_offset: u32, dir: Dir) -> Self {
        EduDmaReq {
            cookie,
            op: EDU_DMA_OP_USER_XFER,
            flags: dir.raw(),
            addr,
            len: len.into(),
            win_offset,
            ..Default::default()
        }
    }

    /// Copy of `len` bytes from buffer `src_handle` at `src_offset` to buffer `dst_handle` at
    /// `dst_offset` through the window.
    pub fn copy_buffers(
        cookie: u64,
        src_handle: u32,
        src_offset: u64,
        dst_handle: u32,
        dst_offset: u64,
        len: u64,
    ) -> Self {
        EduDmaReq {
            cookie,
            op: EDU_DMA_OP_COPY,
            flags: EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF,
            addr: src_offset,
            dst: dst_offset,
            len,
            handle: src_handle,
            dst_handle,
            ..Default::default()
        }
    }

    /// Copy of `len` bytes of user memory from `src` to `dst` through the window.
    pub fn copy_user(cookie: u64, src: u64, dst: u64, len: u64) -> Self {
        EduDmaReq {
            cookie,
            op: EDU_DMA_OP_COPY,
            addr: src,
            dst,
            len,
            ..Default::default()
        }
    }
}

impl EduDmaCqe {
    /// The request's result: `Ok(())` or its errno.
    pub fn result(&self) -> Result<(), i32> {
        if self.status == 0 {
            Ok(())
        } else {
            Err(-self.status)
        }
    }
}

/// The queue of one open file. Requests of different files of a device share it round robin;
/// a file's requests run in submission order.
#[derive(Debug, Clone, Copy)]
pub struct Queue<'d> {
    dev: &'d Device,
}

impl<'d> Queue<'d> {
    /// The queue of `dev`'s file (created by the driver at the first submit).
    pub fn new(dev: &'d Device) -> Self {
        Queue { dev }
    }

    /// The file.
    pub fn device(&self) -> &'d Device {
        self.dev
    }

    /// `EDU_DMA_IOC_SUBMIT` with the argument as given; returns how many were queued.
    ///
    /// # Safety
    /// User memory named by the requests (`USER_XFER`, plain `COPY` sides) is pinned at submit
    /// and written by the device (device-to-RAM sides) until the request completes: it must stay
    /// mapped and must not be memory that Rust code holds a reference to until then. The
    /// `reqs` pointer may be anything (the driver checks it: `EFAULT`).
    pub unsafe fn submit_raw(&self, arg: &EduDmaSubmit) -> io::Result<usize> {
        // SAFETY: `arg` is a valid `struct edu_dma_submit`; the memory rules are the caller's.
        let n = unsafe { ioc_submit(self.dev.fd(), arg) }?;
        Ok(n as usize)
    }

    /// Queues `reqs` in order; returns how many were queued (fewer than `reqs.len()` when one
    /// fails or the queue fills: resubmit the rest to learn the errno). `EAGAIN`: the queue is
    /// full.
    ///
    /// # Safety
    /// See [`Queue::submit_raw`]: user memory named by the requests must stay valid and
    /// unreferenced until their completions are reaped. Buffer-only requests are always safe.
    pub unsafe fn submit(&self, reqs: &[EduDmaReq]) -> io::Result<usize> {
        let arg = EduDmaSubmit {
            reqs: reqs.as_ptr() as u64,
            count: u32::try_from(reqs.len())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
            flags: 0,
        };
        // SAFETY: `reqs` is a readable array of `count` requests; the rest is the caller's.
        unsafe { self.submit_raw(&arg) }
    }

    /// Queues requests that name buffers or registrations only (no plain user memory): safe
    /// (a registration's memory rule was its registration's).
    pub fn submit_buffers(&self, reqs: &[EduDmaReq]) -> io::Result<usize> {
        if reqs.iter().any(|r| {
            r.op == EDU_DMA_OP_USER_XFER
                || (r.op == EDU_DMA_OP_COPY
                    && r.flags & (EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF)
                        != (EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF))
        }) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: buffer requests name no user memory.
        unsafe { self.submit(reqs) }
    }

    /// `EDU_DMA_IOC_REAP` with the argument as given; returns how many completions it wrote.
    ///
    /// # Safety
    /// `arg.cqes` must be valid for writes of `arg.max` completions, or invalid (`EFAULT`).
    pub unsafe fn reap_raw(&self, arg: &EduDmaReap) -> io::Result<usize> {
        // SAFETY: `arg` is a valid `struct edu_dma_reap`; the array is the caller's.
        let n = unsafe { ioc_reap(self.dev.fd(), arg) }?;
        Ok(n as usize)
    }

    /// Waits until `min` completions are available (at most the requests in flight) or
    /// `timeout_ms` passes (0: no timeout), then returns up to `out.len()` of them.
    /// `ETIMEDOUT`/`EINTR` when none arrived.
    pub fn reap(&self, out: &mut [EduDmaCqe], min: u32, timeout_ms: u32) -> io::Result<usize> {
        self.reap_with(out, min, timeout_ms, 0)
    }

    /// Returns the completions available now; `EAGAIN` if there is none.
    pub fn reap_nonblock(&self, out: &mut [EduDmaCqe]) -> io::Result<usize> {
        self.reap_with(out, 0, 0, EDU_DMA_REAP_NONBLOCK)
    }

    fn reap_with(
        &self,
        out: &mut [EduDmaCqe],
        min: u32,
        timeout_ms: u32,
        flags: u32,
    ) -> io::Result<usize> {
        let arg = EduDmaReap {
            cqes: out.as_mut_ptr() as u64,
            max: u32::try_from(out.len()).unwrap_or(u32::MAX),
            min,
            timeout_ms,
            flags,
        };
        // SAFETY: `out` is writable for `max` completions.
        unsafe { self.reap_raw(&arg) }
    }

    /// `EDU_DMA_IOC_SET_EVENTFD` with the argument as given (`fd` -1 removes the eventfd).
    pub fn set_eventfd_raw(&self, arg: &EduDmaSetEventfd) -> io::Result<()> {
        // SAFETY: `arg` is a valid `struct edu_dma_set_eventfd`; the driver only reads it.
        unsafe { ioc_set_eventfd(self.dev.fd(), arg) }?;
        Ok(())
    }

    /// Has the driver add 1 to eventfd `fd` each time one of this file's requests ends (`None`:
    /// stop). The driver keeps its own reference: closing `fd` afterwards changes nothing.
    pub fn set_eventfd(&self, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        self.set_eventfd_raw(&EduDmaSetEventfd {
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
            flags: 0,
        })
    }

    /// Reaps until `n` completions arrived (each wait up to `timeout_ms`); returns them in
    /// completion order.
    pub fn reap_n(&self, n: usize, timeout_ms: u32) -> io::Result<Vec<EduDmaCqe>> {
        let mut all = Vec::with_capacity(n);
        let mut buf = vec![EduDmaCqe::default(); n.max(1)];
        while all.len() < n {
            let want = n - all.len();
            let got = self.reap(&mut buf[..want], want as u32, timeout_ms)?;
            if got == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            all.extend_from_slice(&buf[..got]);
        }
        Ok(all)
    }
}

impl AsFd for Queue<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dev.as_fd()
    }
}

impl AsRawFd for Queue<'_> {
    fn as_raw_fd(&self) -> RawFd {
        self.dev.fd()
    }
}
