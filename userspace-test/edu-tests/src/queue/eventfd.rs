//! `queue.eventfd_*`: `EDU_DMA_IOC_SET_EVENTFD`. The eventfd's counter goes up by exactly one per
//! request that ends (done or cancelled), never for another file's requests; a replaced or removed
//! eventfd counts nothing more; the driver keeps the eventfd after its fd is closed. Every bad
//! argument's errno.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, Queue};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{check_cqe, reap_all};
use crate::harness::*;

/// A new non-blocking eventfd, counter 0.
fn eventfd() -> Result<OwnedFd, String> {
    // SAFETY: no pointer arguments; a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("eventfd: {}", io::Error::last_os_error()));
    }
    // SAFETY: a new descriptor, owned here only.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads (and so resets) the counter: `Ok(0)` when it is zero (`EAGAIN`).
fn count(fd: BorrowedFd<'_>) -> Result<u64, String> {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into `v`.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n == 8 {
        return Ok(v);
    }
    let e = io::Error::last_os_error();
    if n < 0 && e.raw_os_error() == Some(libc::EAGAIN) {
        return Ok(0);
    }
    Err(format!("read eventfd: {n} ({e})"))
}

pub fn counts() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4 * 4096, BufKind::Coherent).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    m[..4096].copy_from_slice(&pattern(4096, 71));
    let h = buf.handle();
    let efd = eventfd()?;
    q.set_eventfd(Some(efd.as_fd())).ctx("SET_EVENTFD")?;
    ensure_eq(count(efd.as_fd())?, 0, "count before any request")?;
    let reqs = [
        EduDmaReq::buffer_xfer(1, h, 0, 0, 4096, Dir::ToDevice),
        EduDmaReq::buffer_xfer(2, h, 4096, 0, 4096, Dir::FromDevice),
        EduDmaReq::buffer_xfer(3, h, 8192 + 100, 100, 3000, Dir::FromDevice),
    ];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit 3")?, 3, "queued")?;
    let mut fds = [PollFd::new(efd.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(10_000u16)).map_err(|e| format!("poll: {e}"))?;
    ensure_eq(n, 1, "the eventfd became readable")?;
    let c = reap_all(&q, 3)?;
    check_cqe(&c[0], 1, 0, 4096, "first")?;
    check_cqe(&c[1], 2, 0, 4096, "second")?;
    check_cqe(&c[2], 3, 0, 3000, "third")?;
    ensure_eq(count(efd.as_fd())?, 3, "count after three requests")?;
    check_pattern(&m[4096..8192], 71, "second request's bytes")?;
    check_same(
        &m[8192 + 100..8192 + 3100],
        &pattern(4096, 71)[100..3100],
        "third request's bytes",
    )?;

    // Another file's requests count on its own eventfd only; closing it with requests queued
    // ends each exactly once (ECANCELED or done): four counts.
    let other = open(0)?;
    let oq = Queue::new(&other);
    let obuf = other.alloc(4096, BufKind::Coherent).ctx("alloc (other)")?;
    let oefd = eventfd()?;
    oq.set_eventfd(Some(oefd.as_fd()))
        .ctx("SET_EVENTFD (other)")?;
    let oreqs: Vec<EduDmaReq> = (0..4)
        .map(|i| EduDmaReq::buffer_xfer(10 + i, obuf.handle(), 0, 0, 4096, Dir::ToDevice))
        .collect();
    ensure_eq(
        oq.submit_buffers(&oreqs).ctx("submit 4 (other)")?,
        4,
        "queued",
    )?;
    drop(obuf);
    drop(other);
    ensure_eq(
        count(oefd.as_fd())?,
        4,
        "count after closing a file with 4 requests",
    )?;
    ensure_eq(
        count(efd.as_fd())?,
        0,
        "this file's count (the other's work)",
    )?;

    // Replaced: the new one counts, the old one does not. Through a duplicate whose fd is closed
    // at once: the driver holds the eventfd itself.
    let efd2 = eventfd()?;
    let dup = efd2.try_clone().ctx("dup")?;
    q.set_eventfd(Some(dup.as_fd()))
        .ctx("SET_EVENTFD (replace)")?;
    drop(dup);
    ensure_eq(q.submit_buffers(&reqs[1..2]).ctx("submit 1")?, 1, "queued")?;
    check_cqe(&reap_all(&q, 1)?[0], 2, 0, 4096, "after replacing")?;
    ensure_eq(count(efd2.as_fd())?, 1, "new eventfd's count")?;
    ensure_eq(count(efd.as_fd())?, 0, "replaced eventfd's count")?;

    // Removed: nothing counts.
    q.set_eventfd(None).ctx("SET_EVENTFD -1")?;
    ensure_eq(q.submit_buffers(&reqs[1..2]).ctx("submit 1")?, 1, "queued")?;
    check_cqe(&reap_all(&q, 1)?[0], 2, 0, 4096, "after removing")?;
    ensure_eq(count(efd2.as_fd())?, 0, "removed eventfd's count")?;
    round_trip_on(&dev, 0x72, "after the eventfd tests")
}

pub fn errors() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let set = |fd: i32, flags: u32| q.set_eventfd_raw(&EduDmaSetEventfd { fd, flags });
    let efd = eventfd()?;
    expect_errno(set(efd.as_raw_fd(), 1), libc::EINVAL, "flags 1")?;
    expect_errno(set(-2, 0), libc::EBADF, "fd -2")?;
    expect_errno(set(i32::MIN, 0), libc::EBADF, "fd INT_MIN")?;
    expect_errno(set(1 << 20, 0), libc::EBADF, "fd not open")?;
    expect_errno(set(dev.fd(), 0), libc::EINVAL, "the device node's own fd")?;
    let (rd, _wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    expect_errno(set(rd.as_raw_fd(), 0), libc::EINVAL, "a pipe")?;
    // Removing when none is set, and setting twice, are fine.
    set(-1, 0).ctx("remove, none set")?;
    set(efd.as_raw_fd(), 0).ctx("set")?;
    set(efd.as_raw_fd(), 0).ctx("set the same again")?;
    // The errors above changed nothing: one request, one count.
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let r = [EduDmaReq::buffer_xfer(
        5,
        buf.handle(),
        0,
        0,
        64,
        Dir::ToDevice,
    )];
    ensure_eq(q.submit_buffers(&r).ctx("submit")?, 1, "queued")?;
    check_cqe(&reap_all(&q, 1)?[0], 5, 0, 64, "request")?;
    ensure_eq(count(efd.as_fd())?, 1, "count")
}
