//! The queue beside the driver's other features: a dma-buf of a buffer that queued requests
//! write (`dmabuf_free`), io_uring task work during a blocking `REAP` (`taskwork_reap`), and, for
//! comparison, real signals during one (`signal_reap`).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edu_dma::dmabuf::{self, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START};
use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, Queue};
use io_uring::{opcode, types, IoUring};

use super::{check_cqe, reap_all};
use crate::harness::*;

/// Two queued device-to-RAM transfers into a streaming buffer whose handle is freed while they
/// are queued: the requests keep the buffer (and its device mappings) until they are reaped, and
/// the bytes land in the buffer's own pages, which a dma-buf exported before the free reads after
/// `DMA_BUF_IOCTL_SYNC` START (under `swiotlb=force` that sync is what copies the bounce buffer
/// back). The bytes outside the transfers stay zero.
pub fn dmabuf_free() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(2 * 4096, BufKind::Streaming).ctx("alloc")?;
    let fd = buf.export().ctx("export")?;
    let h = buf.handle();
    let want = pattern(4096, 0x51);
    dev.write_window_from(&want, 0).ctx("window <- pattern")?;
    let reqs = [
        EduDmaReq::buffer_xfer(1, h, 0, 0, 4096, Dir::FromDevice),
        EduDmaReq::buffer_xfer(2, h, 4096 + 100, 100, 3996, Dir::FromDevice),
    ];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit 2")?, 2, "queued")?;
    buf.free().ctx("free the handle with the requests queued")?;
    let c = reap_all(&q, 2)?;
    check_cqe(&c[0], 1, 0, 4096, "first page")?;
    check_cqe(&c[1], 2, 0, 3996, "second page")?;
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ).ctx("SYNC START")?;
    let m = dmabuf::map(fd.as_fd(), 0, 8192).ctx("mmap the dma-buf")?;
    check_same(&m[..4096], &want, "first page through the dma-buf")?;
    check_same(
        &m[4096..4196],
        &[0; 100],
        "second page's head (not transferred)",
    )?;
    check_same(&m[4196..8192], &want[100..], "second page's rest")?;
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ).ctx("SYNC END")?;
    drop(m);
    drop(fd);
    round_trip_on(&dev, 0x52, "after the dma-buf went")
}

/// How long the queued work of [`taskwork_reap`] takes: 4 commands of 100 ms guest time.
const TW_REQS: u64 = 4;
/// When the pipe is written: within the second request.
const TW_DELAY: Duration = Duration::from_millis(150);

/// io_uring task work is no signal, also for the queue: this thread arms an `IORING_OP_READ` on
/// an empty pipe in a plain ring (completions are `TWA_SIGNAL` task work), queues four
/// device-to-RAM transfers and blocks in `REAP` for all four; another thread writes the pipe
/// 150 ms in. The task work breaks the reap's interruptible wait; the reap must not end in
/// `EINTR`: it ends in `ERESTARTSYS`, the task work runs, and the restarted reap returns the four
/// completions (status 0, every byte verified). The queued requests do not notice: a signal or
/// task work never ends a queued request.
pub fn taskwork_reap() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let n = TW_REQS as usize;
    let buf = dev.alloc(TW_REQS * 4096, BufKind::Coherent).ctx("alloc")?;
    let m = buf.map().ctx("mmap")?;
    let want = pattern(4096, 0x53);
    dev.write_window_from(&want, 0).ctx("window <- pattern")?;
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors, owned here only.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut ring = IoUring::new(8).ctx("io_uring_setup (no flags)")?;
    let mut byte = [0u8; 1];
    let read = opcode::Read::new(types::Fd(rd.as_raw_fd()), byte.as_mut_ptr(), 1)
        .offset(u64::MAX)
        .build();
    // SAFETY: `byte` outlives the request: the completion is reaped below before it goes.
    unsafe { ring.submission().push(&read) }.map_err(|_| "submission queue full".to_string())?;
    ring.submit().ctx("io_uring_enter (submit the pipe read)")?;
    ensure(ring.completion().is_empty(), || {
        "the read of an empty pipe completed at once".to_string()
    })?;
    let reqs: Vec<EduDmaReq> = (0..TW_REQS)
        .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), i * 4096, 0, 4096, Dir::FromDevice))
        .collect();
    let (tx, rx) = mpsc::channel::<()>();
    let (r, took) = std::thread::scope(|s| {
        let wr = &wr;
        s.spawn(move || {
            if rx.recv().is_ok() {
                std::thread::sleep(TW_DELAY);
                // SAFETY: writes one byte from a valid buffer to the pipe.
                let _ = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            }
        });
        let t = Instant::now();
        let r = q.submit_buffers(&reqs).and_then(|got| {
            let _ = tx.send(());
            let mut out = vec![EduDmaCqe::default(); n];
            q.reap(&mut out, n as u32, 10_000)
                .map(|k| (got, out[..k].to_vec()))
        });
        (r, t.elapsed())
    });
    diag(format!(
        "REAP of {n} while io_uring task work arrives returned after {took:?}"
    ));
    let (got, cqes) =
        r.ctx("SUBMIT + blocking REAP while io_uring task work arrives (no signal)")?;
    ensure_eq(got, n, "queued")?;
    ensure_eq(cqes.len(), n, "completions of the one REAP")?;
    for (i, c) in cqes.iter().enumerate() {
        check_cqe(c, i as u64, 0, 4096, &format!("completion {i}"))?;
        check_same(
            &m[i * 4096..(i + 1) * 4096],
            &want,
            &format!("request {i}'s bytes"),
        )?;
    }
    ring.submit_and_wait(1)
        .ctx("io_uring_enter (reap the pipe read)")?;
    let res = ring.completion().next().map(|c| c.result());
    ensure_eq(res, Some(1), "the pipe read's completion")?;
    drop(ring);
    round_trip_on(&dev, 0x54, "transfer after closing the ring")
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Runs a blocking REAP of `q` for `min` completions (timeout 10 s) on a thread that is sent
/// SIGUSR1 (handler without `SA_RESTART`) every 50 ms until the reap returns; returns its result
/// and the completions.
fn reap_signalled(q: &Queue<'_>, min: u32) -> (std::io::Result<Vec<EduDmaCqe>>, u32) {
    use nix::sys::signal::Signal;
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            let _ = tx.send(ThreadHandle::current());
            let mut out = vec![EduDmaCqe::default(); 4];
            q.reap(&mut out, min, 10_000).map(|k| out[..k].to_vec())
        });
        let mut signals = 0;
        if let Ok(tid) = rx.recv() {
            // Until the thread leaves the ioctl (a signal before it blocks is only handled).
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(50));
                if h.is_finished() {
                    break;
                }
                if tid.signal(Signal::SIGUSR1).is_ok() {
                    signals += 1;
                }
            }
        }
        let r = h
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("thread panicked")));
        (r, signals)
    })
}

/// A real signal ends a blocking REAP's wait, never a queued request. Request A completes;
/// request B's interrupt is lost (fault injection), so it ends only by the watchdog, 3 s in
/// (`ETIMEDOUT`, its bytes landed). A REAP for both, signalled every 50 ms once A's completion
/// waits (`poll` said so), returns A's alone; a REAP for B, signalled the same way, fails with
/// `EINTR`; then B still ends exactly once, by the watchdog, reaped by a third REAP.
pub fn signal_reap() -> TestResult {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(2 * 4096, BufKind::Coherent).ctx("alloc")?;
    let m = buf.map().ctx("mmap")?;
    let want = pattern(4096, 0x55);
    dev.write_window_from(&want, 0).ctx("window <- pattern")?;
    let mut a = EduDmaReq::buffer_xfer(1, buf.handle(), 0, 0, 4096, Dir::FromDevice);
    a.timeout_ms = 3000;
    let mut b = EduDmaReq::buffer_xfer(2, buf.handle(), 4096, 0, 4096, Dir::FromDevice);
    b.timeout_ms = 3000;
    ensure_eq(q.submit_buffers(&[a]).ctx("submit A")?, 1, "queued")?;
    // A runs now (the device was idle); the next command programmed is B's.
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    ensure_eq(q.submit_buffers(&[b]).ctx("submit B")?, 1, "queued")?;
    let mut fds = [nix::poll::PollFd::new(
        q.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let n = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16))
        .map_err(|e| format!("poll: {e}"))?;
    ensure_eq(n, 1, "A's completion is waiting (POLLIN)")?;
    // No SA_RESTART: an interrupted ioctl comes back with EINTR.
    let sa = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    let old = unsafe { sigaction(Signal::SIGUSR1, &sa) }.map_err(|e| format!("sigaction: {e}"))?;
    let (first, s1) = reap_signalled(&q, 2);
    let (second, s2) = reap_signalled(&q, 1);
    // SAFETY: restoring the previous disposition.
    let _ = unsafe { sigaction(Signal::SIGUSR1, &old) };
    diag(format!(
        "signals sent: {s1} to the first reap, {s2} to the second"
    ));
    let first = first.ctx("REAP for two, signalled with one waiting")?;
    ensure_eq(first.len(), 1, "completions returned by the signalled reap")?;
    check_cqe(&first[0], 1, 0, 4096, "A")?;
    check_same(&m[..4096], &want, "A's bytes")?;
    expect_errno(
        second,
        libc::EINTR,
        "REAP for B, signalled with none waiting",
    )?;
    let last = reap_all(&q, 1)?;
    check_cqe(
        &last[0],
        2,
        -libc::ETIMEDOUT,
        4096,
        "B (its interrupt lost: the watchdog ended it)",
    )?;
    check_same(&m[4096..8192], &want, "B's bytes")?;
    round_trip_on(&dev, 0x56, "after the signalled reaps")
}
