//! Group `queue`: the asynchronous queue (`EDU_DMA_IOC_SUBMIT` / `EDU_DMA_IOC_REAP`, `poll`).
//! Completion order and data per file, round robin between files, the queue-full `EAGAIN` and
//! `POLLOUT`, `poll`/`epoll` wakeups (level and edge), `REAP` timeout and non-blocking, every bad
//! request's errno (`errors.rs`), close and `SIGKILL` with queued work (the buffer budget comes
//! back), lost interrupts in the middle of a queue, a synchronous caller beside the queue; with
//! the driver's other features (`interplay.rs`): a dma-buf of a buffer queued requests write,
//! io_uring task work during a blocking `REAP`; the eventfd counting completions (`eventfd.rs`);
//! registered user memory (`reg.rs`), io_uring's `IORING_OP_URING_CMD` carrying requests
//! (`uring_cmd.rs`, `uring_*`). Unbind with a full queue is `unbind.queue`, with io_uring
//! commands in flight `unbind.uring` (the opt-in group). About 300 DMA commands.

mod errors;
mod eventfd;
mod interplay;
mod reg;
pub mod uring_cmd;

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use edu_dma::uapi::*;
use edu_dma::{BufKind, Device, Dir, Queue};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("order", order),
        test("user_and_copy", user_and_copy),
        test("fairness", fairness),
        test("full", full),
        test("poll", poll_level),
        test("epoll", epoll_level_edge),
        test("reap_timeout_nonblock", reap_timeout_nonblock),
        test("reap_wakes_once", reap_wakes_once),
        test("gaps_switch", gaps_switch),
        test("errors", errors::errors),
        test("lost_irq", lost_irq),
        test("sync_beside", sync_beside),
        test("close_queued", close_queued),
        test("kill9", kill9),
        test("dmabuf_free", interplay::dmabuf_free),
        test("taskwork_reap", interplay::taskwork_reap),
        test("signal_reap", interplay::signal_reap),
        test("eventfd_counts", eventfd::counts),
        test("eventfd_errors", eventfd::errors),
        test("reg_data", reg::data),
        test("reg_errors", reg::errors),
        test("reg_memlock", reg::memlock),
        test("reg_unreg_queued", reg::unreg_queued),
        test("reg_close", reg::close),
        test("uring_xfer", uring_cmd::xfer),
        test("uring_inflight16", uring_cmd::inflight16),
        test("uring_errors", uring_cmd::errors),
        test("uring_full", uring_cmd::full),
        test("uring_cqe32", uring_cmd::cqe32),
        test("uring_ring_close", uring_cmd::ring_close),
        test("uring_close_file_first", uring_cmd::close_file_first),
        test("uring_task_exit", uring_cmd::task_exit),
    ]
}

/// A module parameter of the driver: the module's default, or `EDU_TEST_<NAME>` for a job that
/// loads it with another value (the parameters are not visible in sysfs).
pub fn param(name: &str) -> Result<u64, String> {
    let default = match name {
        "queue_depth" => 64,
        "pin_window" => 256,
        "file_cap_kib" | "buf_cap_kib" => 8192,
        _ => return Err(format!("unknown parameter {name}")),
    };
    let var = format!("EDU_TEST_{}", name.to_uppercase());
    match std::env::var(&var) {
        Ok(v) => v.parse().map_err(|e| format!("{var}={v}: {e}")),
        Err(_) => Ok(default),
    }
}

/// Reaps exactly `n` completions (each wait up to 10 s of guest time).
pub fn reap_all(q: &Queue<'_>, n: usize) -> Result<Vec<EduDmaCqe>, String> {
    q.reap_n(n, 10_000).ctx(format!("reap {n}"))
}

/// Checks one completion: its cookie, status (0 or -errno) and bytes done.
pub fn check_cqe(c: &EduDmaCqe, cookie: u64, status: i32, done: u64, what: &str) -> TestResult {
    ensure(
        c.cookie == cookie && c.status == status && c.done == done,
        || {
            format!(
                "{what}: completion {{cookie {}, status {}, done {}}}, want {{cookie {cookie}, \
                 status {status}, done {done}}}",
                c.cookie, c.status, c.done
            )
        },
    )
}

fn order() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(6 * 4096, BufKind::Coherent).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    m[..4096].copy_from_slice(&pattern(4096, 31));
    m[8192..12288].copy_from_slice(&pattern(4096, 32));
    m[16384..20480].copy_from_slice(&pattern(4096, 33));
    // Each read-back depends on the write before it: only in-order execution passes.
    let h = buf.handle();
    let reqs: Vec<EduDmaReq> = (0..6u64)
        .map(|i| {
            let dir = if i % 2 == 0 {
                Dir::ToDevice
            } else {
                Dir::FromDevice
            };
            EduDmaReq::buffer_xfer(100 + i, h, i * 4096, 0, 4096, dir)
        })
        .collect();
    ensure_eq(q.submit_buffers(&reqs).ctx("submit 6")?, 6, "queued")?;
    let cqes = reap_all(&q, 6)?;
    for (i, c) in cqes.iter().enumerate() {
        check_cqe(c, 100 + i as u64, 0, 4096, &format!("completion {i}"))?;
    }
    check_pattern(&m[4096..8192], 31, "read back 1")?;
    check_pattern(&m[12288..16384], 32, "read back 2")?;
    check_pattern(&m[20480..24576], 33, "read back 3")
}

/// This thread's voluntary context switches so far (`getrusage(RUSAGE_THREAD)`): one per sleep.
fn voluntary_switches() -> Result<i64, String> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Err(format!("getrusage: {}", std::io::Error::last_os_error()));
    }
    Ok(ru.ru_nvcsw)
}

/// A reaper waiting for N completions sleeps until the N-th is there, not once per completion:
/// one `REAP` with `min` 8 for 8 queued transfers (800 ms on the device) returns all 8, and the
/// thread slept at most twice meanwhile (once is the design; a reaper woken at every completion
/// sleeps 8 times).
fn reap_wakes_once() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let reqs: Vec<_> = (0..8)
        .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), 0, 0, 4096, Dir::ToDevice))
        .collect();
    let mut out = [EduDmaCqe::default(); 8];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit 8")?, 8, "queued")?;
    let before = voluntary_switches()?;
    let got = q.reap(&mut out, 8, 10_000).ctx("reap min 8")?;
    let slept = voluntary_switches()? - before;
    ensure_eq(got, 8, "completions of the one reap")?;
    for (i, c) in out.iter().enumerate() {
        check_cqe(c, i as u64, 0, 4096, &format!("completion {i}"))?;
    }
    diag(format!(
        "the reaper slept {slept} time(s) for 8 completions"
    ));
    ensure(slept <= 2, || {
        format!("the reaper slept {slept} times for 8 completions (woken per completion?)")
    })
}

/// The gaps' header line, `(gaps recorded, interrupts timed)` (`src/gaps.rs`, `write_text`).
fn gaps_head(path: &str) -> Result<(u64, u64), String> {
    let text = std::fs::read_to_string(path).ctx("read gaps")?;
    let head: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    match head[..] {
        ["gaps", total, "kept", _, "irqs", irqs, "irq_ns", _] => Ok((
            total
                .parse()
                .map_err(|e| format!("gaps total {total}: {e}"))?,
            irqs.parse().map_err(|e| format!("irqs {irqs}: {e}"))?,
        )),
        _ => Err(format!("unparsable gaps header {head:?}")),
    }
}

/// debugfs `gaps` records only while switched `on` (each switch clears it); `off` by default in
/// the driver; anything but `on`/`off` is `EINVAL`.
fn gaps_switch() -> TestResult {
    let path = "/sys/kernel/debug/edu-dma0/gaps";
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let run = |n: u64| -> TestResult {
        let reqs: Vec<_> = (0..n)
            .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), 0, 0, 4096, Dir::ToDevice))
            .collect();
        ensure_eq(q.submit_buffers(&reqs).ctx("submit")? as u64, n, "queued")?;
        reap_all(&q, n as usize).map(|_| ())
    };
    std::fs::write(path, "on\n").ctx("switch on")?;
    run(3)?;
    let (gaps, irqs) = gaps_head(path)?;
    // Three completion interrupts; the second and third commands started after one (at least:
    // nothing else should use edu-dma0 meanwhile).
    ensure(irqs >= 3 && gaps >= 2, || {
        format!("while on: {gaps} gaps, {irqs} interrupts recorded for 3 queued commands")
    })?;
    std::fs::write(path, "off").ctx("switch off")?;
    ensure_eq(gaps_head(path)?, (0, 0), "gaps and interrupts after off")?;
    run(2)?;
    ensure_eq(
        gaps_head(path)?,
        (0, 0),
        "gaps and interrupts recorded while off",
    )?;
    for bad in ["1\n", "onn", "offff", "0\n"] {
        expect_errno(
            std::fs::write(path, bad),
            libc::EINVAL,
            &format!("write {bad:?}"),
        )?;
    }
    Ok(())
}

fn user_and_copy() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let src = pattern(16384, 41);
    let dst = Anon::new(16384).ctx("mmap dst")?;
    // A streaming buffer at an odd offset (pieces split at pages), user memory both ways, and
    // a 16 KiB user copy (8 commands, 4 steps).
    let st = dev.alloc(3 * 4096, BufKind::Streaming).ctx("alloc")?;
    let mut back = Anon::new(4096).ctx("mmap back")?;
    let reqs = [
        EduDmaReq::user_xfer(1, src.as_ptr() as u64 + 100, 3000, 500, Dir::ToDevice),
        EduDmaReq::user_xfer(2, back.addr(), 3000, 500, Dir::FromDevice),
        EduDmaReq::buffer_xfer(3, st.handle(), 4000, 0, 4096, Dir::FromDevice),
        EduDmaReq::copy_user(4, src.as_ptr() as u64, dst.addr(), 16384),
    ];
    // SAFETY: `src` stays alive and `dst`/`back` are not referenced until the completions are
    // reaped below.
    let n = unsafe { q.submit(&reqs) }.ctx("submit")?;
    ensure_eq(n, 4, "queued")?;
    let cqes = reap_all(&q, 4)?;
    check_cqe(&cqes[0], 1, 0, 3000, "user to device")?;
    check_cqe(&cqes[1], 2, 0, 3000, "user from device")?;
    check_cqe(&cqes[2], 3, 0, 4096, "streaming from device")?;
    check_cqe(&cqes[3], 4, 0, 16384, "copy")?;
    check_same(&back.bytes()[..3000], &src[100..3100], "user round trip")?;
    check_pattern(dst.bytes(), 41, "queued copy")?;
    let _ = back.bytes_mut();
    Ok(())
}

fn fairness() -> TestResult {
    let (a, b) = (open(0)?, open(0)?);
    let (qa, qb) = (Queue::new(&a), Queue::new(&b));
    let ba = a.alloc(4096, BufKind::Coherent).ctx("alloc a")?;
    let bb = b.alloc(4096, BufKind::Coherent).ctx("alloc b")?;
    let ra: Vec<_> = (0..8)
        .map(|i| EduDmaReq::buffer_xfer(i, ba.handle(), 0, 0, 64, Dir::ToDevice))
        .collect();
    let rb: Vec<_> = (0..4)
        .map(|i| EduDmaReq::buffer_xfer(i, bb.handle(), 0, 64, 64, Dir::ToDevice))
        .collect();
    ensure_eq(qa.submit_buffers(&ra).ctx("submit a")?, 8, "a queued")?;
    ensure_eq(qb.submit_buffers(&rb).ctx("submit b")?, 4, "b queued")?;
    // Round robin: a0 b0 a1 b1 a2 b2 a3 b3 ... so when b's four are done, a has four done and
    // a4 runs; first come first served would have finished all of a first.
    let cb = reap_all(&qb, 4)?;
    for (i, c) in cb.iter().enumerate() {
        check_cqe(c, i as u64, 0, 64, "b")?;
    }
    let mut out = [EduDmaCqe::default(); 8];
    let got = qa.reap_nonblock(&mut out).ctx("reap a at once")?;
    ensure((4..=5).contains(&got), || {
        format!("file a had {got} of 8 done when file b's 4 were done (round robin: 4)")
    })?;
    let rest = reap_all(&qa, 8 - got)?;
    for (i, c) in out[..got].iter().chain(rest.iter()).enumerate() {
        check_cqe(c, i as u64, 0, 64, "a")?;
    }
    Ok(())
}

fn full() -> TestResult {
    let depth = param("queue_depth")? as usize;
    let dev = open(1)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let reqs: Vec<_> = (0..depth as u64 + 3)
        .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), 0, 0, 1, Dir::ToDevice))
        .collect();
    ensure_eq(
        q.submit_buffers(&reqs).ctx("submit depth + 3")?,
        depth,
        "queued of depth + 3",
    )?;
    expect_errno(
        q.submit_buffers(&reqs[..1]),
        libc::EAGAIN,
        "submit to a full queue",
    )?;
    let fd = PollFd::new(dev.as_fd(), PollFlags::POLLOUT);
    let mut fds = [fd];
    let n = poll(&mut fds, PollTimeout::ZERO).map_err(|e| format!("poll: {e}"))?;
    ensure_eq(n, 0, "POLLOUT of a full queue")?;
    let mut one = [EduDmaCqe::default(); 1];
    ensure_eq(q.reap(&mut one, 1, 10_000).ctx("reap 1")?, 1, "reaped")?;
    check_cqe(&one[0], 0, 0, 1, "first")?;
    let n = poll(&mut fds, PollTimeout::ZERO).map_err(|e| format!("poll: {e}"))?;
    ensure(
        n == 1
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLOUT)),
        || "no POLLOUT after a reap".to_string(),
    )?;
    ensure_eq(
        q.submit_buffers(&reqs[depth..depth + 1])
            .ctx("submit after a reap")?,
        1,
        "queued",
    )?;
    // Closing with the rest queued cancels them (`close_queued` checks what is released).
    Ok(())
}

fn poll_in(dev: &Device, ms: u16) -> Result<bool, String> {
    let mut fds = [PollFd::new(dev.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(ms)).map_err(|e| format!("poll: {e}"))?;
    Ok(n == 1
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN)))
}

fn poll_level() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    // Before any submit the file is a plain node (read/write never wait for data): POLLIN.
    ensure(poll_in(&dev, 0)?, || {
        "no POLLIN before any submit (a plain node is readable)".to_string()
    })?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let r = [EduDmaReq::buffer_xfer(
        7,
        buf.handle(),
        0,
        0,
        128,
        Dir::ToDevice,
    )];
    q.submit_buffers(&r).ctx("submit")?;
    ensure(!poll_in(&dev, 0)?, || {
        "POLLIN while the command runs".to_string()
    })?;
    let t = Instant::now();
    ensure(poll_in(&dev, 5000)?, || "no POLLIN within 5 s".to_string())?;
    diag(format!("POLLIN after {:?}", t.elapsed()));
    ensure(poll_in(&dev, 0)?, || {
        "POLLIN gone before the reap (level)".to_string()
    })?;
    let mut out = [EduDmaCqe::default(); 4];
    ensure_eq(q.reap_nonblock(&mut out).ctx("reap")?, 1, "reaped")?;
    check_cqe(&out[0], 7, 0, 128, "completion")?;
    ensure(!poll_in(&dev, 0)?, || "POLLIN after the reap".to_string())
}

fn epoll_level_edge() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let r = |c| {
        [EduDmaReq::buffer_xfer(
            c,
            buf.handle(),
            0,
            0,
            16,
            Dir::ToDevice,
        )]
    };
    let ep = |flags| -> Result<Epoll, String> {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(|e| format!("epoll: {e}"))?;
        ep.add(dev.as_fd(), EpollEvent::new(flags, 1))
            .map_err(|e| format!("epoll_ctl ADD: {e}"))?;
        Ok(ep)
    };
    let level = ep(EpollFlags::EPOLLIN)?;
    let edge = ep(EpollFlags::EPOLLIN | EpollFlags::EPOLLET)?;
    let wait = |ep: &Epoll, ms: u16| -> Result<usize, String> {
        let mut ev = [EpollEvent::empty(); 2];
        ep.wait(&mut ev, EpollTimeout::from(ms))
            .map_err(|e| format!("epoll_wait: {e}"))
    };
    // Before the first submit the file is a plain node: readable.
    ensure_eq(
        wait(&level, 0)?,
        1,
        "level events before submit (a plain node)",
    )?;
    q.submit_buffers(&r(1)).ctx("submit")?;
    ensure_eq(wait(&level, 5000)?, 1, "level event after the completion")?;
    ensure_eq(wait(&level, 0)?, 1, "level event again (not reaped)")?;
    ensure_eq(wait(&edge, 0)?, 1, "edge event")?;
    ensure_eq(wait(&edge, 0)?, 0, "edge event once")?;
    q.submit_buffers(&r(2)).ctx("submit 2")?;
    ensure_eq(
        wait(&edge, 5000)?,
        1,
        "edge event for the second completion",
    )?;
    let mut out = [EduDmaCqe::default(); 4];
    ensure_eq(q.reap_nonblock(&mut out).ctx("reap")?, 2, "reaped")?;
    check_cqe(&out[0], 1, 0, 16, "first")?;
    check_cqe(&out[1], 2, 0, 16, "second")?;
    ensure_eq(wait(&level, 0)?, 0, "level events after the reap")?;
    let _ = dev.as_raw_fd();
    Ok(())
}

fn reap_timeout_nonblock() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let mut out = [EduDmaCqe::default(); 2];
    expect_errno(
        q.reap_nonblock(&mut out),
        libc::EAGAIN,
        "non-blocking reap, nothing submitted",
    )?;
    ensure_eq(
        q.reap(&mut out, 1, 0).ctx("reap, nothing in flight")?,
        0,
        "reaped",
    )?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    q.submit_buffers(&[EduDmaReq::buffer_xfer(
        9,
        buf.handle(),
        0,
        0,
        8,
        Dir::ToDevice,
    )])
    .ctx("submit")?;
    expect_errno(
        q.reap_nonblock(&mut out),
        libc::EAGAIN,
        "non-blocking reap, command running",
    )?;
    // A DMA command takes 100 ms of guest time: a 20 ms wait ends first.
    let t = Instant::now();
    expect_errno(
        q.reap(&mut out, 1, 20),
        libc::ETIMEDOUT,
        "reap with a 20 ms timeout",
    )?;
    ensure(t.elapsed() >= Duration::from_millis(15), || {
        format!("timed out after {:?}", t.elapsed())
    })?;
    ensure_eq(q.reap(&mut out, 1, 0).ctx("reap, no timeout")?, 1, "reaped")?;
    check_cqe(&out[0], 9, 0, 8, "completion")?;
    ensure_eq(q.reap(&mut out, 2, 0).ctx("reap, all reaped")?, 0, "reaped")?;
    Ok(())
}

fn lost_irq() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let before = dev.info().ctx("info")?;
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    let mut reqs: Vec<_> = (0..3)
        .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), 0, 0, 4096, Dir::ToDevice))
        .collect();
    for r in reqs.iter_mut() {
        r.timeout_ms = 300;
    }
    let t = Instant::now();
    ensure_eq(q.submit_buffers(&reqs).ctx("submit")?, 3, "queued")?;
    let c = reap_all(&q, 3)?;
    diag(format!("3 completions after {:?}", t.elapsed()));
    // The first command finished without its interrupt: ETIMEDOUT, and its bytes landed.
    check_cqe(
        &c[0],
        0,
        -libc::ETIMEDOUT,
        4096,
        "the command whose interrupt was lost",
    )?;
    check_cqe(&c[1], 1, 0, 4096, "the next")?;
    check_cqe(&c[2], 2, 0, 4096, "the last")?;
    ensure(t.elapsed() >= Duration::from_millis(250), || {
        format!(
            "the lost interrupt was noticed after {:?} (timeout 300 ms)",
            t.elapsed()
        )
    })?;
    let after = dev.info().ctx("info")?;
    ensure_eq(
        after.timeout_count,
        before.timeout_count + 1,
        "timeout_count increase",
    )?;
    round_trip_on(&dev, 0x51, "sync transfer after the lost interrupt")
}

fn sync_beside() -> TestResult {
    let (a, b) = (open(0)?, open(0)?);
    let qa = Queue::new(&a);
    let ba = a.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    // The queue uses the window's upper half, the synchronous calls its lower half.
    let reqs: Vec<_> = (0..4)
        .map(|i| EduDmaReq::buffer_xfer(i, ba.handle(), 0, 2048, 2048, Dir::ToDevice))
        .collect();
    ensure_eq(qa.submit_buffers(&reqs).ctx("submit")?, 4, "queued")?;
    let data = pattern(2048, 61);
    let mut back = vec![0u8; 2048];
    b.write_window_from(&data, 0)
        .ctx("sync write beside the queue")?;
    b.read_window_into(&mut back, 0)
        .ctx("sync read beside the queue")?;
    check_same(&back, &data, "sync round trip beside the queue")?;
    ensure_eq(b.factorial(5).ctx("factorial beside the queue")?, 120, "5!")?;
    let c = reap_all(&qa, 4)?;
    for (i, c) in c.iter().enumerate() {
        check_cqe(c, i as u64, 0, 2048, "queued")?;
    }
    Ok(())
}

/// The largest buffer one file may hold on a device: both caps.
fn cap_bytes() -> Result<u64, String> {
    Ok(param("file_cap_kib")?.min(param("buf_cap_kib")?) * 1024)
}

/// Fills a file's queue with work on a buffer of the whole cap (its handle freed while queued:
/// the requests keep it) and user memory, then returns the file.
fn busy_file(d: u32, n: usize) -> Result<(Device, Anon), String> {
    let dev = open(d)?;
    let q = Queue::new(&dev);
    let cap = cap_bytes()?;
    let buf = dev
        .alloc(cap, BufKind::Streaming)
        .ctx("alloc the whole cap")?;
    let user = Anon::new(64 * 1024).ctx("mmap")?;
    let mut reqs = Vec::new();
    for i in 0..n as u64 {
        reqs.push(if i % 2 == 0 {
            EduDmaReq::buffer_xfer(i, buf.handle(), (i * 4096) % cap, 0, 4096, Dir::FromDevice)
        } else {
            EduDmaReq::user_xfer(i, user.addr() + (i * 4096) % 65536, 4096, 0, Dir::ToDevice)
        });
    }
    // SAFETY: `user` outlives the requests (the caller keeps it until the file is closed).
    let got = unsafe { q.submit(&reqs) }.ctx("submit")?;
    ensure_eq(got, n, "queued")?;
    buf.free().ctx("free the handle with requests queued")?;
    Ok((dev, user))
}

/// The device's whole buffer cap can be allocated again and a transfer works.
fn budget_back(d: u32, what: &str) -> TestResult {
    let dev = open(d)?;
    let cap = cap_bytes()?;
    let b = dev
        .alloc(cap, BufKind::Streaming)
        .ctx(format!("alloc the whole cap {what}"))?;
    drop(b);
    round_trip_on(&dev, 0x61, what)
}

fn close_queued() -> TestResult {
    let (dev, user) = busy_file(1, 10)?;
    let t = Instant::now();
    drop(dev);
    diag(format!(
        "close with 10 requests queued took {:?}",
        t.elapsed()
    ));
    drop(user);
    budget_back(1, "after close with queued requests")
}

fn kill9() -> TestResult {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, read, write, ForkResult};
    let (rx, tx) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child opens the device, queues work and sleeps; it never returns.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = match busy_file(1, 12) {
                Ok(held) => {
                    let _ = write(&tx, b"R");
                    std::thread::sleep(Duration::from_secs(3600));
                    drop(held);
                    0
                }
                Err(e) => {
                    let _ = write(&tx, e.as_bytes());
                    1
                }
            };
            // SAFETY: leaving the child without the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(tx);
            let mut b = [0u8; 256];
            let n = read(&rx, &mut b).map_err(|e| format!("read: {e}"))?;
            let msg = String::from_utf8_lossy(&b[..n]).to_string();
            if msg != "R" {
                let _ = waitpid(child, None);
                return Err(format!("child: {msg}"));
            }
            kill(child, Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
            match waitpid(child, None) {
                Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {}
                other => return Err(format!("child ended with {other:?}")),
            }
            budget_back(1, "after SIGKILL of a submitter with queued requests")
        }
    }
}
