//! `queue.uring_*`: `IORING_OP_URING_CMD` (`EDU_DMA_URING_CMD_XFER`), one queue request per
//! 128-byte SQE, its completion the CQE (`res`: bytes done or `-errno`). Transfers both ways with
//! buffers and user memory, 16 in flight, every bad request's errno in its CQE, the queue-full
//! `EAGAIN`; the ring torn down with commands in flight (closed, or its task exiting), and the
//! edu fd closed first. The same under unbind is `unbind.uring` ([`unbind_inflight`]).
//!
//! A command holds its edu file until it completed; so once the module's reference count is
//! back to what it was before the test opened its file, every command ended and its pins,
//! mappings and buffer references are gone ([`wait_released`]).

use std::time::{Duration, Instant};

use edu_dma::uapi::*;
use edu_dma::{BufKind, Device, Dir, Queue};
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::{budget_back, cap_bytes, param};
use crate::harness::sysfs::unbind;
use crate::harness::*;
use crate::onward::uring::{ring_with, run};

/// An `IORING_SETUP_SQE128` ring.
type Ring = IoUring<squeue::Entry128>;

/// How long a wait for completions may take (guest time; a command takes 100 ms).
const WAIT: Duration = Duration::from_secs(20);

fn cmd_ring(entries: u32) -> Result<Ring, String> {
    ring_with(entries)
}

/// The 80-byte command area holding `req`.
fn cmd_area(req: &EduDmaReq) -> [u8; 80] {
    let mut cmd = [0u8; 80];
    // SAFETY: `EduDmaReq` is `#[repr(C)]`, integers only and without padding (`make check-uapi`
    // checks its layout against the C header): all its bytes are initialised.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (req as *const EduDmaReq).cast::<u8>(),
            size_of::<EduDmaReq>(),
        )
    };
    cmd[..bytes.len()].copy_from_slice(bytes);
    cmd
}

/// The SQE of `EDU_DMA_URING_CMD_XFER` carrying `req` to `dev`, named `user_data`.
pub(crate) fn sqe(dev: &Device, req: &EduDmaReq, user_data: u64) -> squeue::Entry128 {
    sqe_op(dev, EDU_DMA_URING_CMD_XFER, req, user_data)
}

/// [`sqe`] with `cmd_op` `op` (also for the fuzzer, `stress/fuzz/uring.rs`).
pub(crate) fn sqe_op(dev: &Device, op: u32, req: &EduDmaReq, user_data: u64) -> squeue::Entry128 {
    opcode::UringCmd80::new(types::Fd(dev.fd()), op)
        .cmd(cmd_area(req))
        .build()
        .user_data(user_data)
}

/// An `IORING_SETUP_SQE128 | IORING_SETUP_CQE32` ring: `big_cqe[0]` has the bytes done.
pub(crate) type Ring32 = IoUring<squeue::Entry128, cqueue::Entry32>;

/// Queues `sqes` and submits them, without waiting.
///
/// # Safety
/// The memory every request names must stay valid until its command completed (its CQE was
/// seen, or [`wait_released`] returned).
pub(crate) unsafe fn submit<C: cqueue::EntryMarker>(
    ring: &mut IoUring<squeue::Entry128, C>,
    sqes: &[squeue::Entry128],
) -> TestResult {
    for e in sqes {
        // SAFETY: forwarded to the caller.
        unsafe { ring.submission().push(e) }.map_err(|_| "submission queue full".to_string())?;
    }
    let n = ring.submit().ctx("io_uring_enter (submit)")?;
    ensure_eq(n, sqes.len(), "SQEs submitted")
}

/// Waits for `n` completions (each wait up to [`WAIT`]), each as `f` makes of it, in completion
/// order; later ones stay in the ring.
fn wait_with<C: cqueue::EntryMarker, T>(
    ring: &mut IoUring<squeue::Entry128, C>,
    n: usize,
    mut f: impl FnMut(C) -> T,
) -> Result<Vec<T>, String> {
    let mut out = Vec::new();
    let ts = types::Timespec::from(WAIT);
    while out.len() < n {
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {
                return Err(format!("{} of {n} completions after {WAIT:?}", out.len()));
            }
            r => r.ctx("io_uring_enter (wait)")?,
        };
        // At most `n`: later ones stay in the ring for the next wait.
        let more = n - out.len();
        out.extend(ring.completion().take(more).map(&mut f));
    }
    Ok(out)
}

/// Waits for `n` completions: `(user_data, res)` in completion order.
pub(crate) fn wait(ring: &mut Ring, n: usize) -> Result<Vec<(u64, i32)>, String> {
    wait_with(ring, n, |c| (c.user_data(), c.result()))
}

/// [`wait`] on a [`Ring32`]: `(user_data, res, big_cqe[0])`.
pub(crate) fn wait32(ring: &mut Ring32, n: usize) -> Result<Vec<(u64, i32, u64)>, String> {
    wait_with(ring, n, |c| (c.user_data(), c.result(), c.big_cqe()[0]))
}

/// Checks completions against `want` (`(user_data, res)`, in order).
fn check_cqes(got: &[(u64, i32)], want: &[(u64, i32)], what: &str) -> TestResult {
    ensure(got == want, || {
        format!("{what}: completions (user_data, res) {got:?}, want {want:?}")
    })
}

/// The module's reference count (one per open file of the driver, among others).
fn module_refs() -> Result<u64, String> {
    let s = std::fs::read_to_string("/sys/module/edu_dma/refcnt").ctx("read refcnt")?;
    s.trim().parse().map_err(|e| format!("refcnt {s:?}: {e}"))
}

/// Waits (up to [`WAIT`]) until the module's reference count is back to `base`: every file the
/// test closed is released, so every io_uring command on it ended and let go of its memory.
fn wait_released(base: u64, what: &str) -> TestResult {
    let t = Instant::now();
    loop {
        let n = module_refs()?;
        if n == base {
            diag(format!("{what}: files released after {:?}", t.elapsed()));
            return Ok(());
        }
        if t.elapsed() > WAIT {
            return Err(format!(
                "{what}: module refcount {n} after {WAIT:?}, want {base} (a command never ended)"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A verified round trip through io_uring commands on `dev`: user memory -> window -> user.
fn uring_round_trip(dev: &Device, seed: u64, what: &str) -> TestResult {
    let mut ring = cmd_ring(8)?;
    let src = pattern(4096, seed);
    let back = Anon::new(4096).ctx("mmap")?;
    let sqes = [
        sqe(
            dev,
            &EduDmaReq::user_xfer(0, src.as_ptr() as u64, 4096, 0, Dir::ToDevice),
            1,
        ),
        sqe(
            dev,
            &EduDmaReq::user_xfer(0, back.addr(), 4096, 0, Dir::FromDevice),
            2,
        ),
    ];
    // SAFETY: `src` and `back` outlive the completions waited for below.
    unsafe { submit(&mut ring, &sqes) }?;
    check_cqes(&wait(&mut ring, 2)?, &[(1, 4096), (2, 4096)], what)?;
    check_same(back.bytes(), &src, what)
}

/// Buffer -> window -> buffer, user memory both ways at odd offsets, a 16 KiB user copy; a
/// `SUBMIT` request of the same file beside them is reaped alone (REAP does not see commands).
pub fn xfer() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(2 * 4096, BufKind::Coherent).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m[..4096], 3601);
    m[4096..].fill(0);
    let h = buf.handle();
    let src = pattern(16384, 3602);
    let back = Anon::new(4096).ctx("mmap back")?;
    let dst = Anon::new(16384).ctx("mmap dst")?;
    // The SUBMIT request writes window bytes no command reads (4000..4016).
    ensure_eq(
        q.submit_buffers(&[EduDmaReq::buffer_xfer(77, h, 0, 4000, 16, Dir::ToDevice)])
            .ctx("SUBMIT beside")?,
        1,
        "queued",
    )?;
    let reqs = [
        EduDmaReq::buffer_xfer(0, h, 0, 0, 3584, Dir::ToDevice),
        EduDmaReq::buffer_xfer(0, h, 4096, 0, 3584, Dir::FromDevice),
        EduDmaReq::user_xfer(0, src.as_ptr() as u64 + 100, 3000, 500, Dir::ToDevice),
        EduDmaReq::user_xfer(0, back.addr() + 7, 3000, 500, Dir::FromDevice),
        EduDmaReq::copy_user(0, src.as_ptr() as u64, dst.addr(), 16384),
    ];
    let sqes: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| sqe(&dev, r, 10 + i as u64))
        .collect();
    let mut ring = cmd_ring(8)?;
    // SAFETY: `m`, `src`, `back` and `dst` outlive the completions waited for below.
    unsafe { submit(&mut ring, &sqes) }?;
    let got = wait(&mut ring, 5)?;
    check_cqes(
        &got,
        &[(10, 3584), (11, 3584), (12, 3000), (13, 3000), (14, 16384)],
        "five commands",
    )?;
    check_same(
        &m[4096..4096 + 3584],
        &pattern(4096, 3601)[..3584],
        "buffer -> window -> buffer",
    )?;
    check_fill(&m[4096 + 3584..], 0, "the buffer past the transfer")?;
    check_same(
        &back.bytes()[7..3007],
        &src[100..3100],
        "user -> window -> user",
    )?;
    check_fill(&back.bytes()[..7], 0, "user memory before the transfer")?;
    check_fill(&back.bytes()[3007..], 0, "user memory after the transfer")?;
    check_same(dst.bytes(), &src, "16 KiB user copy")?;
    let c = super::reap_all(&q, 1)?;
    super::check_cqe(&c[0], 77, 0, 16, "the SUBMIT request")?;
    let mut out = [EduDmaCqe::default(); 4];
    expect_errno(
        q.reap_nonblock(&mut out),
        libc::EAGAIN,
        "REAP after the SUBMIT request (commands are not reaped)",
    )
}

/// 16 commands in flight at once: 8 user -> window (a 512-byte slice each), then 8 window ->
/// user; each CQE in submission order with its exact count, every byte back.
pub fn inflight16() -> TestResult {
    let dev = open(0)?;
    let src = pattern(4096, 3610);
    let dst = Anon::new(4096).ctx("mmap dst")?;
    let mut sqes = Vec::new();
    for i in 0..8u64 {
        let r = EduDmaReq::user_xfer(
            0,
            src.as_ptr() as u64 + i * 512,
            512,
            i as u32 * 512,
            Dir::ToDevice,
        );
        sqes.push(sqe(&dev, &r, i));
    }
    for i in 0..8u64 {
        // Read back in reverse slice order: only the right slice in the right place passes.
        let s = 7 - i;
        let r = EduDmaReq::user_xfer(
            0,
            dst.addr() + s * 512,
            512,
            s as u32 * 512,
            Dir::FromDevice,
        );
        sqes.push(sqe(&dev, &r, 8 + i));
    }
    let mut ring = cmd_ring(16)?;
    let t = Instant::now();
    // SAFETY: `src` and `dst` outlive the completions waited for below.
    unsafe { submit(&mut ring, &sqes) }?;
    let got = wait(&mut ring, 16)?;
    diag(format!("16 commands in {:?}", t.elapsed()));
    let want: Vec<_> = (0..16u64).map(|i| (i, 512)).collect();
    check_cqes(&got, &want, "16 in flight")?;
    check_same(dst.bytes(), &src, "16 in flight, read back")
}

/// Every bad command's errno in its CQE; a good one afterwards works.
pub fn errors() -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(8192, BufKind::Coherent).ctx("alloc")?;
    let h = buf.handle();
    let good = EduDmaReq::buffer_xfer(0, h, 0, 0, 64, Dir::ToDevice);
    let with = |f: &dyn Fn(&mut EduDmaReq)| {
        let mut r = good;
        f(&mut r);
        r
    };
    let max_copy = param("pin_window")? * page() as u64;
    let bad_addr = unmapped_addr()?;
    let cases: Vec<(&str, u32, EduDmaReq, i32)> = vec![
        (
            "reserved",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.reserved = 1),
            libc::EINVAL,
        ),
        (
            "cookie set",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.cookie = 5),
            libc::EINVAL,
        ),
        (
            "op 0",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.op = 0),
            libc::EINVAL,
        ),
        (
            "op 99",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.op = 99),
            libc::EINVAL,
        ),
        (
            "flags 3",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.flags = 3),
            libc::EINVAL,
        ),
        (
            "unknown handle",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.handle = 999),
            libc::ENOENT,
        ),
        (
            "len 0",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.len = 0),
            libc::EINVAL,
        ),
        (
            "len 4097",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.len = 4097),
            libc::EINVAL,
        ),
        (
            "past the buffer",
            EDU_DMA_URING_CMD_XFER,
            with(&|r| r.addr = 8190),
            libc::EINVAL,
        ),
        (
            "unmapped user memory",
            EDU_DMA_URING_CMD_XFER,
            EduDmaReq::user_xfer(0, bad_addr, 64, 0, Dir::FromDevice),
            libc::EFAULT,
        ),
        (
            "copy above pin_window",
            EDU_DMA_URING_CMD_XFER,
            EduDmaReq::copy_buffers(0, h, 0, h, 4096, max_copy + 1),
            libc::E2BIG,
        ),
        ("cmd_op 0", 0, good, libc::ENOTTY),
        ("cmd_op SUBMIT", EDU_DMA_IOC_SUBMIT, good, libc::ENOTTY),
        (
            "cmd_op nr 0x49",
            EDU_DMA_URING_CMD_XFER + 1,
            good,
            libc::ENOTTY,
        ),
    ];
    let mut ring = cmd_ring(8)?;
    for (what, op, r, errno) in &cases {
        // SAFETY: the requests name the buffer (alive) or unmapped memory.
        let got = unsafe { run(&mut ring, sqe_op(&dev, *op, r, 1)) };
        expect_errno(got, *errno, what)?;
    }
    // A 16-byte command area cannot hold a request: a plain ring's SQE is EINVAL.
    let mut plain = ring_with::<squeue::Entry, cqueue::Entry>(8)?;
    let e = opcode::UringCmd16::new(types::Fd(dev.fd()), EDU_DMA_URING_CMD_XFER).build();
    // SAFETY: the command names no memory.
    expect_errno(unsafe { run(&mut plain, e) }, libc::EINVAL, "64-byte SQE")?;
    // SAFETY: the request names the buffer, alive.
    let n = unsafe { run(&mut ring, sqe(&dev, &good, 2)) }.ctx("a good command after them")?;
    ensure_eq(n, 64, "res of the good command")
}

/// A full queue: depth commands are queued, the next one's CQE is `-EAGAIN` at once (before the
/// first completion); then the ring is closed with the rest in flight, and they are cancelled.
pub fn full() -> TestResult {
    let depth = param("queue_depth")?;
    let base = module_refs()?;
    let dev = open(1)?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let r = EduDmaReq::buffer_xfer(0, buf.handle(), 0, 0, 1, Dir::ToDevice);
    let sqes: Vec<_> = (0..=depth).map(|i| sqe(&dev, &r, i)).collect();
    let mut ring = cmd_ring((depth as u32 + 1).next_power_of_two())?;
    // SAFETY: the requests name the buffer, which the file keeps until the commands ended.
    unsafe { submit(&mut ring, &sqes) }?;
    let got = wait(&mut ring, 2)?;
    check_cqes(
        &got,
        &[(depth, -libc::EAGAIN), (0, 1)],
        "the command past the depth, then the first",
    )?;
    drop(ring);
    drop(buf);
    drop(dev);
    wait_released(base, "queue full, ring closed")?;
    uring_round_trip(&open(1)?, 3615, "a new ring after the full one")
}

/// A ring with 32-byte CQEs (`IORING_SETUP_CQE32`): `big_cqe[0]` is the bytes done, also when
/// the command failed. A lost interrupt (fault injection) ends the first command `-ETIMEDOUT`
/// with its 4096 bytes counted (they landed: the data is checked), the next one succeeds; a bad
/// request's CQE says 0 bytes.
pub fn cqe32() -> TestResult {
    let dev = open(0)?;
    let mut ring: Ring32 = ring_with(8)?;
    let buf = dev.alloc(2 * 4096, BufKind::Coherent).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m[..4096], 3630);
    m[4096..].fill(0);
    let h = buf.handle();
    let mut lost = EduDmaReq::buffer_xfer(0, h, 0, 0, 4096, Dir::ToDevice);
    lost.timeout_ms = 300;
    let sqes = [
        sqe(&dev, &lost, 1),
        sqe(
            &dev,
            &EduDmaReq::buffer_xfer(0, h, 4096, 0, 4096, Dir::FromDevice),
            2,
        ),
        // Past the buffer's end: EINVAL at submit, nothing done.
        sqe(
            &dev,
            &EduDmaReq::buffer_xfer(0, h, 4096, 0, 8192, Dir::FromDevice),
            3,
        ),
    ];
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    // SAFETY: the buffer outlives the completions waited for below.
    unsafe { submit(&mut ring, &sqes) }?;
    let mut got = wait32(&mut ring, 3)?;
    got.sort_by_key(|c| c.0);
    let want = [
        (1, -libc::ETIMEDOUT, 4096),
        (2, 4096, 4096),
        (3, -libc::EINVAL, 0),
    ];
    ensure(got == want, || {
        format!("completions (user_data, res, big_cqe[0]) {got:?}, want {want:?}")
    })?;
    check_same(
        &m[4096..],
        &pattern(4096, 3630),
        "what the timed-out command moved",
    )
}

/// The ring closed with 16 commands in flight (the edu fd closed as well): the running one
/// finishes its step, the others are cancelled before they start; no transfer is partial, the
/// buffer the first one used (its handle freed) comes back, and the device and a new ring work.
pub fn ring_close() -> TestResult {
    let base = module_refs()?;
    let dev = open(1)?;
    let cap = cap_bytes()?;
    let big = dev
        .alloc(cap, BufKind::Streaming)
        .ctx("alloc the whole cap")?;
    dev.write_window_from(&pattern(4096, 3620), 0)
        .ctx("window := pattern")?;
    let mut dst = Anon::new(15 * 4096).ctx("mmap dst")?;
    dst.bytes_mut().fill(0xAA);
    let mut sqes = vec![sqe(
        &dev,
        &EduDmaReq::buffer_xfer(0, big.handle(), 0, 0, 4096, Dir::FromDevice),
        0,
    )];
    for i in 0..15u64 {
        let r = EduDmaReq::user_xfer(0, dst.addr() + i * 4096, 4096, 0, Dir::FromDevice);
        sqes.push(sqe(&dev, &r, 1 + i));
    }
    let mut ring = cmd_ring(16)?;
    // SAFETY: `dst` outlives the commands (`wait_released` below); the buffer is the file's.
    unsafe { submit(&mut ring, &sqes) }?;
    big.free().ctx("free the handle with a command on it")?;
    drop(dev);
    let t = Instant::now();
    drop(ring);
    wait_released(base, "ring closed with 16 in flight")?;
    diag(format!("ring close to release: {:?}", t.elapsed()));
    let want = pattern(4096, 3620);
    let mut cancelled = 0;
    for (i, page) in dst.bytes().chunks(4096).enumerate() {
        if page.iter().all(|&b| b == 0xAA) {
            cancelled += 1;
        } else {
            check_same(
                page,
                &want,
                &format!("page {i}: done, so all of the window"),
            )?;
        }
    }
    diag(format!("{cancelled} of 15 user commands cancelled"));
    ensure(cancelled > 0, || {
        "every command completed: the ring's close cancelled none".to_string()
    })?;
    budget_back(1, "after a ring closed with commands in flight")?;
    uring_round_trip(&open(1)?, 3621, "a new ring after the closed one")
}

/// The edu fd closed first, with 4 commands in flight: they complete as if nothing happened
/// (each holds the file), with exact results and data; then the file is released.
pub fn close_file_first() -> TestResult {
    let base = module_refs()?;
    let dev = open(0)?;
    let src = pattern(4096, 3630);
    let dst = Anon::new(4096).ctx("mmap dst")?;
    let sqes = [
        sqe(
            &dev,
            &EduDmaReq::user_xfer(0, src.as_ptr() as u64, 2048, 0, Dir::ToDevice),
            1,
        ),
        sqe(
            &dev,
            &EduDmaReq::user_xfer(0, src.as_ptr() as u64 + 2048, 2048, 2048, Dir::ToDevice),
            2,
        ),
        sqe(
            &dev,
            &EduDmaReq::user_xfer(0, dst.addr(), 4096, 0, Dir::FromDevice),
            3,
        ),
        sqe(
            &dev,
            &EduDmaReq::copy_user(0, src.as_ptr() as u64, dst.addr(), 1),
            4,
        ),
    ];
    let mut ring = cmd_ring(8)?;
    // SAFETY: `src` and `dst` outlive the completions waited for below.
    unsafe { submit(&mut ring, &sqes) }?;
    drop(dev);
    let got = wait(&mut ring, 4)?;
    check_cqes(
        &got,
        &[(1, 2048), (2, 2048), (3, 4096), (4, 1)],
        "after the edu fd was closed",
    )?;
    check_same(dst.bytes(), &src, "the data")?;
    drop(ring);
    wait_released(base, "edu fd closed first")
}

/// A child submits 16 commands (a whole-cap buffer, its handle freed, and user memory) and
/// exits without waiting: its exit cancels them; everything comes back.
pub fn task_exit() -> TestResult {
    let base = module_refs()?;
    // The runner is single-threaded: the child may allocate (as `queue.kill9`'s does).
    let status = in_child(|| {
        let run = || -> TestResult {
            let dev = open(1)?;
            let big = dev
                .alloc(cap_bytes()?, BufKind::Streaming)
                .ctx("alloc the whole cap")?;
            let user = Anon::new(8 * 4096).ctx("mmap")?;
            let mut sqes = Vec::new();
            for i in 0..8u64 {
                let r = EduDmaReq::buffer_xfer(0, big.handle(), i * 4096, 0, 4096, Dir::FromDevice);
                sqes.push(sqe(&dev, &r, i));
                let r = EduDmaReq::user_xfer(0, user.addr() + i * 4096, 4096, 0, Dir::ToDevice);
                sqes.push(sqe(&dev, &r, 8 + i));
            }
            let mut ring = cmd_ring(16)?;
            // SAFETY: the process exits right after; the pins keep the pages.
            unsafe { submit(&mut ring, &sqes) }?;
            big.into_handle();
            std::mem::forget((ring, user, dev));
            Ok(())
        };
        match run() {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("# child: {e}");
                1
            }
        }
    })?;
    ensure(matches!(status, ChildStatus::Exited(0)), || {
        format!("child: {status:?}")
    })?;
    wait_released(base, "submitter exited with 16 in flight")?;
    budget_back(1, "after the submitter exited with commands in flight")?;
    uring_round_trip(&open(1)?, 3640, "a new ring after the exit")
}

/// `unbind.uring`: edu-dma1 unbound with 16 commands in flight: each ends exactly once, with its
/// bytes or `-ENODEV` (most of them); a command after the unbind is `-ENODEV`; after a rebind a
/// new ring works.
pub fn unbind_inflight() -> TestResult {
    let dev = open(1)?;
    let addr = dev.info().ctx("info")?.pci_address();
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let user = Anon::new(8 * 4096).ctx("mmap")?;
    let mut sqes = Vec::new();
    for i in 0..8u64 {
        let r = EduDmaReq::buffer_xfer(0, buf.handle(), 0, 0, 4096, Dir::ToDevice);
        sqes.push(sqe(&dev, &r, 2 * i));
        let r = EduDmaReq::user_xfer(0, user.addr() + i * 4096, 4096, 0, Dir::FromDevice);
        sqes.push(sqe(&dev, &r, 2 * i + 1));
    }
    let mut ring = cmd_ring(32)?;
    // SAFETY: `user` outlives the completions waited for below; the buffer is the file's.
    unsafe { submit(&mut ring, &sqes) }?;
    diag(format!("unbinding {addr}"));
    let mut rebind = unbind(&addr)?;
    let got = wait(&mut ring, 16)?;
    let mut seen = [0u32; 16];
    let mut completed = 0;
    for &(ud, res) in &got {
        ensure(ud < 16 && (res == 4096 || res == -libc::ENODEV), || {
            format!("completion (user_data {ud}, res {res})")
        })?;
        seen[ud as usize] += 1;
        completed += usize::from(res == 4096);
    }
    ensure(seen.iter().all(|&n| n == 1), || {
        format!("completions per command: {seen:?}")
    })?;
    diag(format!("{completed} of 16 completed before the unbind"));
    ensure(completed < 16, || {
        "all 16 completed: the unbind drained the queue".to_string()
    })?;
    // SAFETY: the request names the buffer handle only (the device is gone).
    let after = unsafe { run(&mut ring, sqes[0].clone()) };
    expect_errno(after, libc::ENODEV, "a command after the unbind")?;
    drop(ring);
    drop(buf);
    drop(dev);
    let d = rebind.bind_and_open()?;
    uring_round_trip(&d, 3650, "after rebind")
}
