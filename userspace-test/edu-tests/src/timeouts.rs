//! Group `timeouts`: lost interrupts (fault injection) end in ETIMEDOUT, signals in EINTR, task
//! work that is no signal (io_uring's) restarts the call transparently, and the device works
//! normally afterwards.

use std::time::{Duration, Instant};

use edu_dma::{BufKind, Dir};

use crate::harness::interrupt::{signalled, ArmedRead};
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

fn signal_eintr() -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    dev.inject_fault(1).ctx("inject_fault(1)")?;
    // No SA_RESTART: the interrupted ioctl must come back with EINTR.
    let (r, took, signals) = signalled(60, || buf.xfer(0, 0, 4096, Dir::ToDevice, 5000))?;
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
    let armed = ArmedRead::new()?;
    let before = dev.info().ctx("info")?.dma_count;
    let (r, took) = armed.during(TW_DELAY, |start| {
        start();
        dev.copy(src.bytes(), dst.bytes_mut())
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
    armed.reap()?;
    ensure(cmds > 32, || {
        format!("{cmds} DMA commands: the task work did not break the COPY's wait (no restart)")
    })?;
    round_trip_on(&dev, 0x7b, "transfer after closing the ring")?;
    round_trip_on(&dev, 0x7c, "second transfer after closing the ring")
}
