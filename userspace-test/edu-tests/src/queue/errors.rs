//! `queue.errors`: every bad request and bad argument of SUBMIT and REAP gets its exact errno.

use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, Queue};

use super::{check_cqe, param, reap_all};
use crate::harness::*;

pub fn errors() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(8192, BufKind::Coherent).ctx("alloc")?;
    let h = buf.handle();
    let bad_addr = unmapped_addr()?;
    let user = Anon::new(8192).ctx("mmap")?;
    let good = EduDmaReq::buffer_xfer(1, h, 0, 0, 64, Dir::ToDevice);
    let max_copy = param("pin_window")? * page() as u64;

    // SUBMIT's own argument.
    let submit = |reqs: u64, count: u32, flags: u32| {
        // SAFETY: requests named only buffers or unmapped memory.
        unsafe { q.submit_raw(&EduDmaSubmit { reqs, count, flags }) }
    };
    let one = [good];
    expect_errno(
        submit(one.as_ptr() as u64, 0, 0),
        libc::EINVAL,
        "submit count 0",
    )?;
    expect_errno(
        submit(one.as_ptr() as u64, 1, 1),
        libc::EINVAL,
        "submit flags 1",
    )?;
    expect_errno(
        submit(bad_addr, 1, 0),
        libc::EFAULT,
        "submit, unmapped request array",
    )?;
    expect_errno(submit(0, 1, 0), libc::EFAULT, "submit, NULL request array")?;

    // One bad request each.
    let with = |f: &dyn Fn(&mut EduDmaReq)| {
        let mut r = good;
        f(&mut r);
        r
    };
    let user_req = EduDmaReq::user_xfer(2, user.addr(), 64, 0, Dir::ToDevice);
    let copy_req = EduDmaReq::copy_buffers(3, h, 0, h, 4096, 4096);
    let cases: Vec<(&str, EduDmaReq, i32)> = vec![
        ("reserved", with(&|r| r.reserved = 1), libc::EINVAL),
        ("op 0", with(&|r| r.op = 0), libc::EINVAL),
        ("op 99", with(&|r| r.op = 99), libc::EINVAL),
        ("xfer flags 0", with(&|r| r.flags = 0), libc::EINVAL),
        ("xfer flags 3", with(&|r| r.flags = 3), libc::EINVAL),
        (
            "xfer unknown handle",
            with(&|r| r.handle = 999),
            libc::ENOENT,
        ),
        ("xfer len 0", with(&|r| r.len = 0), libc::EINVAL),
        ("xfer len 4097", with(&|r| r.len = 4097), libc::EINVAL),
        ("xfer len 2^32", with(&|r| r.len = 1 << 32), libc::EINVAL),
        (
            "xfer past the window",
            with(&|r| r.win_offset = 4090),
            libc::EINVAL,
        ),
        (
            "xfer past the buffer",
            with(&|r| r.addr = 8190),
            libc::EINVAL,
        ),
        ("xfer dst set", with(&|r| r.dst = 1), libc::EINVAL),
        (
            "xfer dst_handle set",
            with(&|r| r.dst_handle = h),
            libc::EINVAL,
        ),
        (
            "user_xfer unmapped",
            EduDmaReq {
                addr: bad_addr,
                ..user_req
            },
            libc::EFAULT,
        ),
        (
            "user_xfer handle set",
            EduDmaReq {
                handle: h,
                ..user_req
            },
            libc::EINVAL,
        ),
        (
            "user_xfer len 0",
            EduDmaReq { len: 0, ..user_req },
            libc::EINVAL,
        ),
        (
            "user_xfer wraps",
            EduDmaReq {
                addr: u64::MAX - 10,
                ..user_req
            },
            libc::EINVAL,
        ),
        (
            "user_xfer flags 0",
            EduDmaReq {
                flags: 0,
                ..user_req
            },
            libc::EINVAL,
        ),
        ("copy len 0", EduDmaReq { len: 0, ..copy_req }, libc::EINVAL),
        (
            "copy flags 4",
            EduDmaReq {
                flags: 4 | copy_req.flags,
                ..copy_req
            },
            libc::EINVAL,
        ),
        (
            "copy unknown src",
            EduDmaReq {
                handle: 999,
                ..copy_req
            },
            libc::ENOENT,
        ),
        (
            "copy unknown dst",
            EduDmaReq {
                dst_handle: 999,
                ..copy_req
            },
            libc::ENOENT,
        ),
        (
            "copy past the buffer",
            EduDmaReq {
                dst: 8000,
                ..copy_req
            },
            libc::EINVAL,
        ),
        (
            "copy win_offset set",
            EduDmaReq {
                win_offset: 1,
                ..copy_req
            },
            libc::EINVAL,
        ),
        (
            "copy user src with a handle",
            EduDmaReq {
                flags: EDU_DMA_COPY_DST_BUF,
                addr: user.addr(),
                ..copy_req
            },
            libc::EINVAL,
        ),
        (
            "copy user src unmapped",
            EduDmaReq {
                flags: EDU_DMA_COPY_DST_BUF,
                addr: bad_addr,
                handle: 0,
                ..copy_req
            },
            libc::EFAULT,
        ),
        (
            "copy above pin_window pages",
            EduDmaReq::copy_user(4, user.addr(), user.addr(), max_copy + 4096),
            libc::E2BIG,
        ),
    ];
    for (what, r, errno) in &cases {
        // SAFETY: every request is refused before any memory is used.
        expect_errno(unsafe { q.submit(&[*r]) }, *errno, what)?;
    }
    // A bad request after a good one: the good one is queued, the call returns 1.
    // SAFETY: the bad request is refused; the good one names a buffer.
    let n = unsafe { q.submit(&[good, cases[0].1]) }.ctx("submit good + bad")?;
    ensure_eq(n, 1, "queued of good + bad")?;

    // REAP's argument.
    let reap = |cqes: u64, max: u32, min: u32, flags: u32| {
        let arg = EduDmaReap {
            cqes,
            max,
            min,
            timeout_ms: 0,
            flags,
        };
        // SAFETY: `cqes` is unmapped or unused.
        unsafe { q.reap_raw(&arg) }
    };
    expect_errno(reap(bad_addr, 0, 0, 0), libc::EINVAL, "reap max 0")?;
    expect_errno(reap(bad_addr, 1, 2, 0), libc::EINVAL, "reap min > max")?;
    expect_errno(reap(bad_addr, 1, 0, 2), libc::EINVAL, "reap flags 2")?;
    // An unwritable completion array loses nothing.
    expect_errno(
        reap(bad_addr, 4, 1, 0),
        libc::EFAULT,
        "reap into unmapped memory",
    )?;
    let c = reap_all(&q, 1)?;
    check_cqe(&c[0], 1, 0, 64, "the completion after EFAULT")?;
    // A bad ioctl argument pointer.
    // SAFETY: the driver only reads the (unmapped) argument.
    let r = unsafe { dev.ioctl_raw(EDU_DMA_IOC_SUBMIT, bad_addr as *mut _) };
    expect_errno(r, libc::EFAULT, "submit with an unmapped argument")?;
    // SAFETY: as above.
    let r = unsafe { dev.ioctl_raw(EDU_DMA_IOC_REAP, bad_addr as *mut _) };
    expect_errno(r, libc::EFAULT, "reap with an unmapped argument")
}
