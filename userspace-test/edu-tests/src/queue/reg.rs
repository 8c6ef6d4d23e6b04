//! `queue.reg_*`: registered user memory (`EDU_DMA_IOC_REG_USER` / `UNREG_USER`, requests
//! `REG_XFER`): data both ways, byte for byte, in the user's own pages (a memfd read back
//! through the file; the device reads what the CPU wrote after the registration); every errno of
//! the two ioctls and of a bad `REG_XFER`; `RLIMIT_MEMLOCK` (`ENOMEM` above it without
//! `CAP_IPC_LOCK`, `VmPin` exact after each register, unregister and close); unregister while
//! requests are queued (the pages stay pinned and mapped until they are reaped); close with
//! registrations and a queued request. Unbind with registrations is `unbind.reg`. About 12 DMA
//! commands.

use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;

use edu_dma::uapi::*;
use edu_dma::{dmabuf, Device, Dir, Mapping, Queue};

use super::{check_cqe, reap_all};
use crate::harness::*;

/// Registers `[addr, addr + len)` of memory the test owns and only reads after the reaps.
fn reg_raw(dev: &Device, addr: u64, len: u64) -> std::io::Result<u32> {
    let mut r = EduDmaRegUser {
        addr,
        len,
        ..Default::default()
    };
    // SAFETY: the tests register only memory they own (or none: errno cases), and read what the
    // device wrote only after reaping the requests that wrote it.
    unsafe { dev.reg_user_raw(&mut r) }?;
    Ok(r.id)
}

/// Data both ways through a registered memfd mapping; what the device wrote is in the memfd's
/// own pages (read back with `pread`), and the device reads what the CPU wrote after the
/// registration, not a snapshot of it.
pub fn data() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let len = 4 * page();
    let memfd = dmabuf::sealed_memfd(len as u64).ctx("memfd")?;
    let mem = Mapping::shared_file(memfd.as_fd(), len).ctx("mmap memfd")?;
    let mut reg = dev.register(mem).ctx("REG_USER")?;
    let before = vm_pin_kib()?;
    // Written after the registration: the device must see these bytes.
    fill_pattern(&mut reg.mem_mut()[..2 * page()], 61);
    let src = 1000u64; // 4096 bytes from 1000: across a page boundary
    let dst = 2 * page() as u64 + 900; // 4096 bytes into pages 2 and 3
    let reqs = [
        reg.req(1, src, 0, 4096, Dir::ToDevice),
        reg.req(2, dst, 0, 4096, Dir::FromDevice),
        reg.req(3, 7, 100, 3000, Dir::FromDevice),
    ];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit")?, 3, "queued")?;
    let cqes = reap_all(&q, 3)?;
    check_cqe(&cqes[0], 1, 0, 4096, "registered to device")?;
    check_cqe(&cqes[1], 2, 0, 4096, "device to registered")?;
    check_cqe(&cqes[2], 3, 0, 3000, "device to registered, offset 7")?;
    // The model of the memory: the pattern in pages 0-1, then the two device writes.
    let mut want = vec![0u8; len];
    fill_pattern(&mut want[..2 * page()], 61);
    let window: Vec<u8> = want[src as usize..src as usize + 4096].to_vec();
    want[dst as usize..dst as usize + 4096].copy_from_slice(&window);
    want[7..3007].copy_from_slice(&window[100..3100]);
    check_same(reg.mem(), &want, "registered memory")?;
    let mut file = vec![0u8; len];
    std::fs::File::from(memfd)
        .read_exact_at(&mut file, 0)
        .ctx("pread memfd")?;
    check_same(&file, &want, "the memfd's pages")?;
    // The device still reads the live pages: new CPU bytes, a window read back synchronously.
    fill_pattern(&mut reg.mem_mut()[..page()], 62);
    q.submit_buffers(&[reg.req(4, 0, 0, 4096, Dir::ToDevice)])
        .ctx("submit 4")?;
    check_cqe(
        &reap_all(&q, 1)?[0],
        4,
        0,
        4096,
        "registered to device again",
    )?;
    let mut back = vec![0u8; 4096];
    dev.read_window_into(&mut back, 0).ctx("read window")?;
    check_pattern(&back, 62, "window after the second write")?;
    ensure_eq(vm_pin_kib()?, before, "VmPin across the transfers")?;
    reg.unregister().ctx("UNREG_USER")?;
    ensure_eq(
        vm_pin_kib()?,
        before - (len / 1024) as u64,
        "VmPin after unregistering",
    )
}

/// Every errno of REG_USER, UNREG_USER and of bad REG_XFER requests.
pub fn errors() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let pg = page() as u64;
    // One page per registration of the cap check below (DMA-API debug warns beyond 7 mappings
    // of one cacheline).
    let mem = Anon::new(EDU_DMA_REG_MAX as usize * page()).ctx("mmap")?;
    let ro = Anon::with(page(), libc::PROT_READ, 0).ctx("mmap read-only")?;
    let bad = unmapped_addr()?;
    let raw = |addr: u64, len: u64, flags: u32| {
        let mut r = EduDmaRegUser {
            addr,
            len,
            flags,
            id: 0,
        };
        // SAFETY: the memory is the test's own (or none), and no request writes it.
        unsafe { dev.reg_user_raw(&mut r) }.map(|()| r.id)
    };
    let a = mem.addr();
    let cases: [(&str, u64, u64, u32, i32); 10] = [
        ("flags 1", a, pg, 1, libc::EINVAL),
        ("len 0", a, 0, 0, libc::EINVAL),
        ("unaligned addr", a + 8, pg, 0, libc::EINVAL),
        ("unaligned len", a, pg + 1, 0, libc::EINVAL),
        ("len below a page", a, 100, 0, libc::EINVAL),
        ("wrapping range", u64::MAX - pg + 1, 2 * pg, 0, libc::EINVAL),
        (
            "len above EDU_DMA_REG_MAX_LEN",
            a,
            u64::from(EDU_DMA_REG_MAX_LEN) + pg,
            0,
            libc::E2BIG,
        ),
        ("unmapped", bad, pg, 0, libc::EFAULT),
        ("read-only", ro.addr(), pg, 0, libc::EFAULT),
        ("partly unmapped", bad - pg, 2 * pg, 0, libc::EFAULT),
    ];
    let pin0 = vm_pin_kib()?;
    for (what, addr, len, flags, errno) in cases {
        expect_errno(raw(addr, len, flags), errno, &format!("REG_USER {what}"))?;
    }
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after the failed registrations")?;
    let id = reg_raw(&dev, a, 2 * pg).ctx("REG_USER")?;
    ensure(id != 0, || "registration id 0".to_string())?;
    // Bad requests naming it.
    let good = EduDmaReq::reg_xfer(1, id, 0, 0, 64, Dir::ToDevice);
    let with = |f: &dyn Fn(&mut EduDmaReq)| {
        let mut r = good;
        f(&mut r);
        r
    };
    let reqs: [(&str, EduDmaReq, i32); 11] = [
        ("unknown id", with(&|r| r.handle = id + 100), libc::ENOENT),
        ("id 0", with(&|r| r.handle = 0), libc::ENOENT),
        (
            "past the registration",
            with(&|r| r.addr = 2 * pg - 63),
            libc::EINVAL,
        ),
        ("offset wraps", with(&|r| r.addr = u64::MAX), libc::EINVAL),
        ("len 0", with(&|r| r.len = 0), libc::EINVAL),
        ("len 4097", with(&|r| r.len = 4097), libc::EINVAL),
        (
            "past the window",
            with(&|r| r.win_offset = 4090),
            libc::EINVAL,
        ),
        ("flags 0", with(&|r| r.flags = 0), libc::EINVAL),
        ("dst set", with(&|r| r.dst = 1), libc::EINVAL),
        ("dst_handle set", with(&|r| r.dst_handle = 1), libc::EINVAL),
        ("reserved set", with(&|r| r.reserved = 1), libc::EINVAL),
    ];
    for (what, r, errno) in reqs {
        expect_errno(q.submit_buffers(&[r]), errno, &format!("REG_XFER {what}"))?;
    }
    // The per-file cap: EDU_DMA_REG_MAX in all, then ENOSPC.
    let mut ids = vec![id];
    for i in 1..EDU_DMA_REG_MAX {
        let at = a + (u64::from(i) + 1) * pg;
        ids.push(reg_raw(&dev, at.min(a + 15 * pg), pg).ctx(format!("REG_USER {i}"))?);
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    ensure_eq(sorted.len(), ids.len(), "distinct registration ids")?;
    expect_errno(
        raw(a, pg, 0),
        libc::ENOSPC,
        "REG_USER beyond EDU_DMA_REG_MAX",
    )?;
    // UNREG_USER.
    let unreg = |id: u32, flags: u32| dev.unreg_user_raw(&EduDmaUnregUser { id, flags });
    expect_errno(unreg(id, 1), libc::EINVAL, "UNREG_USER flags 1")?;
    expect_errno(unreg(9999, 0), libc::ENOENT, "UNREG_USER unknown id")?;
    unreg(id, 0).ctx("UNREG_USER")?;
    expect_errno(unreg(id, 0), libc::ENOENT, "UNREG_USER twice")?;
    expect_errno(
        q.submit_buffers(&[good]),
        libc::ENOENT,
        "REG_XFER of an unregistered id",
    )?;
    // A slot is free again; ids are not reused.
    let again = reg_raw(&dev, a + 15 * pg, pg).ctx("REG_USER after an UNREG")?;
    ensure(!ids.contains(&again), || format!("id {again} reused"))?;
    for id in ids.iter().skip(1).chain([&again]) {
        unreg(*id, 0).ctx("UNREG_USER")?;
    }
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after unregistering all")
}

/// `RLIMIT_MEMLOCK`, restored on drop.
struct MemlockLimit(libc::rlimit);

impl MemlockLimit {
    fn set(bytes: u64) -> Result<MemlockLimit, String> {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) } != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        let new = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: old.rlim_max.max(bytes),
        };
        // SAFETY: a valid limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &new) } != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
        Ok(MemlockLimit(old))
    }
}

impl Drop for MemlockLimit {
    fn drop(&mut self) {
        // SAFETY: the limit read before.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &self.0) };
    }
}

/// `VmPin` rises by exactly each registration and falls back at unregister and close; above
/// `RLIMIT_MEMLOCK` a registration fails with `ENOMEM` (without `CAP_IPC_LOCK`; with it, the
/// limit does not apply).
pub fn memlock() -> TestResult {
    let pg = page() as u64;
    let kib = |pages: u64| pages * pg / 1024;
    let mem = Anon::new(16 * page()).ctx("mmap")?;
    let a = mem.addr();
    let pin0 = vm_pin_kib()?;
    {
        let dev = open(0)?;
        let r8 = reg_raw(&dev, a, 8 * pg).ctx("register 8 pages")?;
        ensure_eq(vm_pin_kib()?, pin0 + kib(8), "VmPin after 8 pages")?;
        // The same pages again: each registration pins (and is charged) on its own.
        let _r4 = reg_raw(&dev, a + 4 * pg, 4 * pg).ctx("register 4 pages")?;
        ensure_eq(vm_pin_kib()?, pin0 + kib(12), "VmPin after 8 + 4 pages")?;
        // Room for 4 more pages.
        let _limit = MemlockLimit::set((pin0 * 1024) + 16 * pg)?;
        let (r, over) = without_cap_ipc_lock(|| {
            let r = reg_raw(&dev, a + 8 * pg, 4 * pg);
            let over = reg_raw(&dev, a + 12 * pg, pg);
            (r, over)
        })?;
        r.ctx("register 4 pages up to the limit")?;
        expect_errno(over, libc::ENOMEM, "register 1 page above RLIMIT_MEMLOCK")?;
        ensure_eq(vm_pin_kib()?, pin0 + kib(16), "VmPin at the limit")?;
        if has_cap_ipc_lock()? {
            let bypass =
                reg_raw(&dev, a + 12 * pg, pg).ctx("register above the limit with CAP_IPC_LOCK")?;
            ensure_eq(vm_pin_kib()?, pin0 + kib(17), "VmPin with CAP_IPC_LOCK")?;
            dev.unreg_user(bypass).ctx("unregister the bypass")?;
        } else {
            diag("no CAP_IPC_LOCK: bypass not checked");
        }
        dev.unreg_user(r8).ctx("unregister 8 pages")?;
        ensure_eq(
            vm_pin_kib()?,
            pin0 + kib(8),
            "VmPin after unregistering 8 pages",
        )?;
        // Two registrations left for the close.
    }
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after close")
}

/// Unregister while requests using the registration are queued: the id goes at once, the pages
/// stay pinned and mapped until the requests are reaped, and their data is right.
pub fn unreg_queued() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let pg = page() as u64;
    let mut mem = Anon::new(2 * page()).ctx("mmap")?;
    fill_pattern(&mut mem.bytes_mut()[..page()], 63);
    let pin0 = vm_pin_kib()?;
    let id = reg_raw(&dev, mem.addr(), 2 * pg).ctx("REG_USER")?;
    let reqs = [
        EduDmaReq::reg_xfer(1, id, 0, 0, 4096, Dir::ToDevice),
        EduDmaReq::reg_xfer(2, id, pg, 0, 4096, Dir::FromDevice),
    ];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit")?, 2, "queued")?;
    dev.unreg_user(id).ctx("UNREG_USER with requests queued")?;
    expect_errno(
        q.submit_buffers(&reqs[..1]),
        libc::ENOENT,
        "REG_XFER after UNREG_USER",
    )?;
    // Until the reap, the requests hold the registration (and its charge).
    ensure_eq(
        vm_pin_kib()?,
        pin0 + 2 * pg / 1024,
        "VmPin after UNREG_USER, requests not reaped",
    )?;
    let cqes = reap_all(&q, 2)?;
    check_cqe(&cqes[0], 1, 0, 4096, "to device")?;
    check_cqe(&cqes[1], 2, 0, 4096, "from device")?;
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after the reap")?;
    check_pattern(&mem.bytes()[page()..], 63, "data written after UNREG_USER")
}

/// Close with registrations, one of them used by a queued request: everything is released.
pub fn close() -> TestResult {
    let pg = page() as u64;
    let mem = Anon::new(4 * page()).ctx("mmap")?;
    let pin0 = vm_pin_kib()?;
    {
        let dev = open(0)?;
        let q = Queue::new(&dev);
        let id = reg_raw(&dev, mem.addr(), 2 * pg).ctx("REG_USER 1")?;
        reg_raw(&dev, mem.addr() + 2 * pg, 2 * pg).ctx("REG_USER 2")?;
        let reqs = [
            EduDmaReq::reg_xfer(1, id, 0, 0, 4096, Dir::FromDevice),
            EduDmaReq::reg_xfer(2, id, pg, 0, 4096, Dir::FromDevice),
        ];
        ensure_eq(q.submit_buffers(&reqs).ctx("submit")?, 2, "queued")?;
        ensure_eq(vm_pin_kib()?, pin0 + 4 * pg / 1024, "VmPin before close")?;
    }
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after close")?;
    // The device works for the next user.
    round_trip_on(&open(0)?, 64, "round trip after close")
}
