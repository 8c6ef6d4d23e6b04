//! Group `timeouts`: lost interrupts (fault injection) end in ETIMEDOUT, signals in EINTR, task
//! work that is no signal (io_uring's) restarts the call transparently, and the device works
//! normally afterwards.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Dir};
use io_uring::{opcode, types, IoUring};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("xfer_timeout", xfer_timeout),
        test("signal_eintr", signal_eintr),
        test("taskwork_restart", taskwork_restart),
    ]
}

fn xfer_timeout() -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let before = dev.info().ctx("info")?;
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    let t = Instant::now();
    let r = buf.xfer(0, 0, 4096, Dir::ToDevice, 300);
    let took = t.elapsed();
    expect_errno(
        r,
        libc::ETIMEDOUT,
        "xfer with a dropped interrupt, timeout 300 ms",
    )?;
    ensure(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        || format!("timed out after {took:?}, expected about 300 ms"),
    )?;
    let after = dev.info().ctx("info")?;
    ensure_eq(
        after.timeout_count,
        before.timeout_count + 1,
        "timeout_count increase",
    )?;
    round_trip_on(&dev, 0x7e, "next transfer")?;
    // USER_XFER times out the same way.
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    let data = pattern(512, 5);
    expect_errno(
        dev.write_window_from_timeout(&data, 0, 300),
        libc::ETIMEDOUT,
        "USER_XFER with a dropped interrupt",
    )?;
    round_trip_on(&dev, 0x7f, "transfer after the USER_XFER timeout")
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

fn signal_eintr() -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    // No SA_RESTART: the interrupted ioctl must come back with EINTR.
    let sa = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    let old = unsafe { sigaction(Signal::SIGUSR1, &sa) }.map_err(|e| format!("sigaction: {e}"))?;
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    let (tx, rx) = mpsc::channel();
    let (r, took, signals) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let _ = tx.send(ThreadHandle::current());
            let t = Instant::now();
            let r = buf.xfer(0, 0, 4096, Dir::ToDevice, 5000);
            (r, t.elapsed())
        });
        let mut signals = 0;
        if let Ok(tid) = rx.recv() {
            // Signal until the thread leaves the ioctl (a signal that arrives before it blocks
            // would be lost in the handler).
            for _ in 0..60 {
                std::thread::sleep(Duration::from_millis(50));
                if h.is_finished() {
                    break;
                }
                if tid.signal(Signal::SIGUSR1).is_ok() {
                    signals += 1;
                }
            }
        }
        match h.join() {
            Ok((r, took)) => (r, took, signals),
            Err(_) => (
                Err(std::io::Error::other("thread panicked")),
                Duration::ZERO,
                signals,
            ),
        }
    });
    // SAFETY: restoring the previous disposition.
    let _ = unsafe { sigaction(Signal::SIGUSR1, &old) };
    diag(format!(
        "xfer ended after {took:?}, {signals} signal(s) sent"
    ));
    expect_errno(r, libc::EINTR, "xfer interrupted by SIGUSR1")?;
    ensure(took < Duration::from_millis(4500), || {
        format!("EINTR only after {took:?}: the wait was not interruptible")
    })?;
    round_trip_on(&dev, 0x5e, "next transfer")
}

/// The COPY of [`taskwork_restart`]: 16 chunks, each a command to the window and one back, 100 ms
/// of guest time each: 3.2 s.
const TW_LEN: usize = 16 * 4096;
/// When the pipe is written, into the COPY: ten commands' margin on either side of its start and
/// its end (guest time is the instruction count, `-icount shift=2,sleep=off`).
const TW_DELAY: Duration = Duration::from_millis(300);

/// io_uring task work is not a signal. This thread arms an `IORING_OP_READ` on an empty pipe in a
/// plain ring (no `DEFER_TASKRUN`: completions are `TWA_SIGNAL` task work, `TIF_NOTIFY_SIGNAL`),
/// then runs a COPY of 64 KiB (32 DMA commands); another thread writes the pipe 300 ms into it,
/// and the completion queues task work on this thread, which breaks the driver's interruptible
/// wait (`signal_pending()` is true) though no signal was sent. The COPY must not end in `EINTR`:
/// the driver returns `ERESTARTSYS`, the return to user mode runs the task work and restarts the
/// ioctl, which copies everything again (the device counts more than 32 commands: the proof that
/// the wait was broken and the call restarted) and the bytes verify. Then the ring is closed
/// (its teardown queues `TWA_SIGNAL` work from a kworker) and transfers keep working.
fn taskwork_restart() -> TestResult {
    let dev = open(0)?;
    let want = pattern(TW_LEN, 0x7a);
    let mut src = Anon::new(TW_LEN).ctx("mmap src")?;
    src.bytes_mut().copy_from_slice(&want);
    let mut dst = Anon::new(TW_LEN).ctx("mmap dst")?;
    for (d, w) in dst.bytes_mut().iter_mut().zip(&want) {
        *d = !w;
    }
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
    let before = dev.info().ctx("info")?.dma_count;
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
        let _ = tx.send(());
        let t = Instant::now();
        let r = dev.copy(src.bytes(), dst.bytes_mut());
        (r, t.elapsed())
    });
    let cmds = dev.info().ctx("info")?.dma_count - before;
    diag(format!(
        "COPY of {TW_LEN} bytes ended after {took:?}, {cmds} DMA commands"
    ));
    ensure_eq(
        r.ctx("COPY while io_uring task work arrives (no signal)")?,
        TW_LEN as u64,
        "bytes copied",
    )?;
    check_same(dst.bytes(), &want, "the COPY's destination")?;
    ring.submit_and_wait(1)
        .ctx("io_uring_enter (reap the pipe read)")?;
    let res = ring.completion().next().map(|c| c.result());
    ensure_eq(res, Some(1), "the pipe read's completion")?;
    ensure(cmds > 32, || {
        format!("{cmds} DMA commands: the task work did not break the COPY's wait (no restart)")
    })?;
    drop(ring);
    round_trip_on(&dev, 0x7b, "transfer after closing the ring")?;
    round_trip_on(&dev, 0x7c, "second transfer after closing the ring")
}
