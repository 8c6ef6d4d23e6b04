//! A device going away under a running COPY, the body of `unplug.inflight` (group `unplug`,
//! opt-in: the host hot-unplugs edu-dma1 when the guest prints `EDU-UNPLUG-NOW 1`, as
//! `scripts/vm --hotplug` does) and of `unbind.inflight` (group `unbind`: the test unbinds
//! through sysfs itself, then rebinds).
//!
//! Both open /dev/edu-dma1, map a coherent and a streaming buffer, start a 4 MiB COPY in a
//! thread, and once the device is gone require: the COPY ended with ENODEV (or success) with the
//! bytes it reports done copied exactly; the node disappeared within 10 s of guest time; every
//! later call on the open file is ENODEV; the streaming mapping still holds its data; touching the
//! coherent mapping raises SIGBUS (it was zapped; checked in a forked child); closing everything
//! is clean. A second file queues 16 requests once the COPY is in flight, and 8 io_uring
//! commands (a ring with 32-byte CQEs): each ends exactly once, done or `ENODEV` (a command's
//! `big_cqe[0]` saying the same bytes), the requests reapable after the device left; a command
//! issued after it is `ENODEV`, and the ring closes cleanly.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use edu_dma::uapi::*;
use edu_dma::{BufKind, Device, Dir, Queue, SyncDir};

use super::sysfs::unbind;
use super::*;
use crate::onward::uring::ring_with;
use crate::queue::uring_cmd::{sqe, submit, wait32, Ring32};

/// How the device leaves.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum How {
    /// Hot unplug by the host.
    Unplug,
    /// sysfs unbind by the test (rebound at the end).
    Unbind,
}

const COPY_LEN: usize = 4 << 20;
/// Requests queued on a second file beside the copy.
const QUEUED: u64 = 16;
/// io_uring commands on that file beside them.
const CMDS: u64 = 8;
const BUF: usize = 4 * 4096;

/// Every call that needs the device must answer ENODEV on a file of a departed device.
fn all_enodev(dev: &Device, coh: u32, st: u32) -> TestResult {
    let e = libc::ENODEV;
    expect_errno(dev.info(), e, "INFO")?;
    expect_errno(dev.factorial(4), e, "FACTORIAL")?;
    expect_errno(dev.alloc(4096, BufKind::Coherent), e, "BUF_ALLOC")?;
    expect_errno(dev.xfer(coh, 0, 0, 64, Dir::ToDevice, 0), e, "XFER")?;
    expect_errno(dev.sync(st, 0, 4096, SyncDir::ForDevice), e, "BUF_SYNC")?;
    let mut b = vec![0u8; 64];
    expect_errno(dev.read_window_into(&mut b, 0), e, "USER_XFER")?;
    let src = vec![1u8; 64];
    expect_errno(dev.copy(&src, &mut b), e, "COPY")?;
    expect_errno(dev.file().read_at(&mut b, 0), e, "pread")?;
    expect_errno(dev.file().write_at(&src, 0), e, "pwrite")?;
    expect_errno(dev.map(u64::from(coh) << 32, 4096), e, "mmap")?;
    Ok(())
}

/// A node that works: factorial, verified buffer round trip and COPY.
fn works(dev: &Device, seed: u64) -> TestResult {
    ensure_eq(dev.factorial(7).ctx("7!")?, 5040, "7!")?;
    round_trip_on(dev, seed, "after the device left")
}

/// Unplugs or unbinds edu-dma1 under a running 4 MiB COPY and checks what happened (see the
/// module documentation).
pub fn inflight(how: How) -> TestResult {
    let path = Device::instance_path(1);
    let dev = open(1)?;
    let info = dev.info().ctx("info")?;
    let addr = info.pci_address();
    diag(format!("{how:?}: edu-dma1 is {addr}"));
    let coh = dev
        .alloc(BUF as u64, BufKind::Coherent)
        .ctx("alloc coherent")?;
    let st = dev
        .alloc(BUF as u64, BufKind::Streaming)
        .ctx("alloc streaming")?;
    let mut cm = coh.map().ctx("mmap coherent")?;
    let mut sm = st.map().ctx("mmap streaming")?;
    fill_pattern(&mut cm, 2100);
    fill_pattern(&mut sm, 2101);
    st.sync(0, BUF as u64, SyncDir::ForDevice).ctx("sync")?;

    // Queued work beside the copy (the window's upper half; a copy chunk holds the engine for
    // both its halves, so the queue never runs between them).
    let qdev = open(1)?;
    let qbuf = qdev
        .alloc(4096, BufKind::Coherent)
        .ctx("alloc for the queue")?;
    let qreqs: Vec<_> = (0..QUEUED)
        .map(|i| EduDmaReq {
            timeout_ms: 3000,
            ..EduDmaReq::buffer_xfer(i, qbuf.handle(), 0, 2048, 2048, Dir::ToDevice)
        })
        .collect();
    let mut ring: Ring32 = ring_with(16)?;
    let sqes: Vec<_> = (0..CMDS).map(|i| sqe(&qdev, &qreqs[0], 100 + i)).collect();

    let src = pattern(COPY_LEN, 2102);
    let mut dst = vec![GUARD; COPY_LEN];
    let (sa, da) = (src.as_ptr() as u64, dst.as_mut_ptr() as u64);
    let mut rebind = None;
    let (copy, trigger_at, gone, waited) = std::thread::scope(|s| -> Result<_, String> {
        let devr = &dev;
        let h = s.spawn(move || {
            let mut req = EduDmaCopy {
                src: sa,
                dst: da,
                len: COPY_LEN as u64,
                // A loaded host may run the emulated device late: allow 10 s per command, so
                // that the only way this copy ends early is the device leaving.
                timeout_ms: 10_000,
                ..Default::default()
            };
            // SAFETY: `dst` is not touched by the other thread until this one is joined.
            let r = unsafe { devr.copy_raw(&mut req) };
            (r, req.done, Instant::now())
        });
        // The copy is in flight once the device completed a few of its commands.
        let t = Instant::now();
        loop {
            let n = dev.info().map(|i| i.dma_count).unwrap_or(0);
            if n >= info.dma_count + 4 {
                break;
            }
            if t.elapsed() > Duration::from_secs(10) || h.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The queue is filled once the copy is in flight (queued beside it from the start, a
        // slow kernel could run all of it before the copy's first pin window is even pinned).
        let queued = Queue::new(&qdev)
            .submit_buffers(&qreqs)
            .ctx("submit beside the copy")?;
        ensure_eq(queued, QUEUED as usize, "queued beside the copy")?;
        // SAFETY: the commands name the file's buffer only, which it keeps until they ended.
        unsafe { submit(&mut ring, &sqes) }?;
        let trigger_at = Instant::now();
        match how {
            How::Unplug => {
                println!("EDU-UNPLUG-NOW 1");
                let _ = std::io::stdout().flush();
            }
            How::Unbind => rebind = Some(unbind(&addr)?),
        }
        // Busy polling keeps a vCPU running, so guest time does not jump ahead of the host's
        // unplug (under -icount sleep=off an idle guest skips to its next timer).
        let t = Instant::now();
        while path.exists() && t.elapsed() < Duration::from_secs(10) {
            std::thread::yield_now();
        }
        let gone = !path.exists();
        let waited = t.elapsed();
        let copy = h.join().map_err(|_| "copy thread panicked".to_string())?;
        Ok((copy, trigger_at, gone, waited))
    })?;
    let (r, done, ended) = copy;
    diag(format!(
        "{how:?}: copy ended {} ms after the trigger with {}, done {done} of {COPY_LEN}; \
         node gone: {gone} after {} ms",
        ended.saturating_duration_since(trigger_at).as_millis(),
        match &r {
            Ok(_) => "success".to_string(),
            Err(e) => errno_name(e.raw_os_error().unwrap_or(-1)),
        },
        waited.as_millis()
    ));
    ensure(gone, || {
        format!("{} still exists 10 s after the {how:?}", path.display())
    })?;
    match r {
        Ok(_) => ensure_eq(done, COPY_LEN as u64, "done after a successful copy")?,
        Err(e) => {
            expect_errno(Err::<(), _>(e), libc::ENODEV, "the in-flight COPY")?;
            ensure(done < COPY_LEN as u64, || {
                format!("failed with done {done}")
            })?;
        }
    }
    ensure(done >= 4096, || {
        format!("done {done}: the copy was not in flight at the {how:?}")
    })?;
    let d = done as usize;
    check_same(&dst[..d], &src[..d], "bytes reported done")?;
    check_fill(&dst[d..], GUARD, "bytes after done")?;

    // Every queued request ended exactly once: done, or ENODEV with nothing done.
    let cqes = Queue::new(&qdev)
        .reap_n(QUEUED as usize, 10_000)
        .ctx("reap after the device left")?;
    let mut cookies: Vec<u64> = cqes.iter().map(|c| c.cookie).collect();
    cookies.sort_unstable();
    ensure(cookies == (0..QUEUED).collect::<Vec<_>>(), || {
        format!("queued cookies reaped {cookies:?}, want each of 0..{QUEUED} once")
    })?;
    for c in &cqes {
        let ok = (c.status == 0 && c.done == 2048) || (c.status == -libc::ENODEV && c.done == 0);
        ensure(ok, || {
            format!("queued {}: status {} done {}", c.cookie, c.status, c.done)
        })?;
    }
    // The same for the io_uring commands, and one more after the device left.
    let mut got = wait32(&mut ring, CMDS as usize)?;
    got.sort_unstable();
    let ids: Vec<u64> = got.iter().map(|c| c.0).collect();
    ensure(ids == (100..100 + CMDS).collect::<Vec<_>>(), || {
        format!(
            "io_uring commands completed {ids:?}, want each of 100..{} once",
            100 + CMDS
        )
    })?;
    for &(id, res, done) in &got {
        let ok = (res == 2048 && done == 2048) || (res == -libc::ENODEV && done == 0);
        ensure(ok, || {
            format!("io_uring command {id}: res {res}, big_cqe[0] {done}")
        })?;
    }
    let late = sqe(&qdev, &qreqs[0], 999);
    // SAFETY: as above.
    unsafe { submit(&mut ring, &[late]) }?;
    let after = wait32(&mut ring, 1)?;
    ensure(after == [(999, -libc::ENODEV, 0)], || {
        format!("an io_uring command after the {how:?}: {after:?}, want res -ENODEV")
    })?;
    drop(ring);
    drop(qbuf);
    drop(qdev);

    all_enodev(&dev, coh.handle(), st.handle())?;
    // The streaming buffer's pages belong to the mapping: intact, in this process.
    check_pattern(&sm, 2101, "streaming mapping after the device left")?;
    // ... refcounted apart from the device mappings: a zap faults them back in.
    match madvise_dontneed(sm.as_ptr() as usize, sm.len()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => diag("no madvise: zap not tried"),
        r => {
            r.ctx(format!("madvise(MADV_DONTNEED) after the {how:?}"))?;
            check_pattern(
                &sm,
                2101,
                "streaming mapping after the device left and a zap",
            )?;
        }
    }
    // Documented (docs/reliability.md): the device's DMA memory is freed when it goes away, and
    // a coherent mapping is zapped first, so touching it raises SIGBUS (in a child, so that only
    // the child dies). Anything else (the old memory still readable, SIGSEGV) fails.
    expect_zapped(&cm, 2100, &format!("after the {how:?}"))?;
    // Close: buffers (free answers whatever it answers), mappings, file.
    drop(coh);
    drop(st);
    drop(cm);
    drop(sm);
    drop(dev);

    match how {
        How::Unbind => {
            let mut rb = rebind.ok_or("no rebind guard")?;
            works(&rb.bind_and_open()?, 2110)
        }
        How::Unplug => {
            ensure(
                !Path::new(&format!("/sys/bus/pci/devices/{addr}")).exists(),
                || format!("{addr} still in sysfs after the unplug"),
            )?;
            works(&open(0)?, 2120)
        }
    }
}
