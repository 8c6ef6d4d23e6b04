//! Group `timeouts`: lost interrupts (fault injection) end in ETIMEDOUT, signals in EINTR, and
//! the device works normally afterwards.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Dir};
use nix::sys::pthread::{pthread_kill, pthread_self};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("xfer_timeout", xfer_timeout),
        test("signal_eintr", signal_eintr),
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
            let _ = tx.send(pthread_self());
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
                if pthread_kill(tid, Signal::SIGUSR1).is_ok() {
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
