//! `stress.kill9`: children busy with long COPYs, USER_XFER and XFER loops on both devices, all
//! holding mapped buffers, are SIGKILLed at random (seeded) moments. After every batch both
//! devices must do a verified round trip, and the children's buffers must have been released:
//! every child of the next batch allocates again, and at the end the whole buffer cap (8 x 1 MiB
//! coherent per device) can be allocated.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use edu_dma::{BufKind, CopyDst, CopySrc, Device, Dir, SyncDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::*;

const BATCHES: usize = 5;
const PER_BATCH: usize = 8;
const MIB: u64 = 1 << 20;

/// What a child does until it is killed.
#[derive(Clone, Copy, Debug)]
enum Work {
    /// 4 MiB COPY heap -> heap, in a loop (each one takes minutes of guest time).
    LongCopy,
    /// USER_XFER of 4096 bytes, both directions, in a loop.
    UserXfer,
    /// 1 MiB COPY coherent buffer -> streaming buffer, in a loop.
    BufCopy,
    /// XFER loops on a streaming buffer plus verified 64 KiB COPYs into it.
    XferMix,
}

const WORKS: [Work; 4] = [Work::LongCopy, Work::UserXfer, Work::BufCopy, Work::XferMix];

/// The child: set up buffers (1 MiB coherent + 512 KiB streaming, mapped and touched), report
/// readiness, then work forever. Any failure is written to `msgs` and ends the child with 1.
fn child(d: u32, work: Work, seed: u64, ready: &OwnedFd, msgs: &OwnedFd) -> i32 {
    let fail = |m: String| {
        pipe_send(msgs, &format!("edu-dma{d} {work:?}: {m}\n"));
        1
    };
    let dev = match Device::open_instance(d) {
        Ok(dev) => dev,
        Err(e) => return fail(format!("open: {e}")),
    };
    // Buffers charged to the device: the next batch (and the final cap check) find out whether
    // they were released when the process died.
    let coh = match dev.alloc(MIB, BufKind::Coherent) {
        Ok(b) => b,
        Err(e) => return fail(format!("alloc 1 MiB coherent: {e}")),
    };
    let st = match dev.alloc(MIB / 2, BufKind::Streaming) {
        Ok(b) => b,
        Err(e) => return fail(format!("alloc 512 KiB streaming: {e}")),
    };
    let (mut cm, mut sm) = match (coh.map(), st.map()) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => return fail(format!("mmap: {e}")),
    };
    fill_pattern(&mut cm, seed);
    sm.fill(1);
    pipe_send(ready, "R");
    let mut rng = Rng::new(seed);
    let r: Result<(), String> = (|| loop {
        match work {
            Work::LongCopy => {
                let n = 4 << 20;
                let src = pattern(n, seed);
                let mut dst = vec![0u8; n];
                let done = dev.copy(&src, &mut dst).ctx("4 MiB copy")?;
                ensure_eq(done, n as u64, "done")?;
                check_pattern(&dst, seed, "4 MiB copy")?;
            }
            Work::UserXfer => {
                let mut buf = pattern(4096, rng.next_u64());
                dev.write_window_from(&buf, 0).ctx("USER_XFER to device")?;
                dev.read_window_into(&mut buf, 0)
                    .ctx("USER_XFER from device")?;
            }
            Work::BufCopy => {
                let done = dev
                    .copy_buffers(coh.handle(), 0, st.handle(), 0, MIB / 2)
                    .ctx("copy coherent -> streaming")?;
                ensure_eq(done, MIB / 2, "done")?;
                st.sync(0, MIB / 2, SyncDir::ForCpu).ctx("sync")?;
                check_pattern(&sm[..], seed, "buffer copy")?;
            }
            Work::XferMix => {
                let off = rng.below(64) * 4096;
                st.xfer(off, 0, 4096, Dir::ToDevice, 0)
                    .ctx("xfer to device")?;
                st.xfer(off, 0, 4096, Dir::FromDevice, 0)
                    .ctx("xfer from device")?;
                let v = pattern(65536, seed ^ off);
                let done = dev
                    .copy_with(
                        CopySrc::User(&v),
                        CopyDst::Buffer {
                            handle: st.handle(),
                            offset: off,
                        },
                        65536,
                        0,
                    )
                    .ctx("copy 64 KiB into the streaming buffer")?;
                ensure_eq(done, 65536, "done")?;
                st.sync(off, 65536, SyncDir::ForCpu).ctx("sync")?;
                let o = off as usize;
                check_pattern(&sm[o..o + 65536], seed ^ off, "copy into buffer")?;
            }
        }
    })();
    match r {
        Ok(()) => 0,
        Err(e) => fail(e),
    }
}

fn drain(fd: &OwnedFd) -> String {
    // SAFETY: a non-blocking read loop on our own pipe.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    String::from_utf8_lossy(&out).trim().replace('\n', "; ")
}

/// Reads `n` readiness bytes within `limit`.
fn wait_ready(fd: &OwnedFd, n: usize, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("only {got} of {n} children got ready in {limit:?}"));
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 16];
        let want = (n - got).min(buf.len());
        // SAFETY: `buf` is valid for `want` bytes.
        let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), want) };
        if r <= 0 {
            return Err("readiness pipe closed".to_string());
        }
        got += r as usize;
    }
    Ok(())
}

pub fn kill9() -> TestResult {
    let seed = seed_from_env("EDU_KILL_SEED")?;
    diag(format!("seed {seed}"));
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let avail0 = mem_available_kib()?;
    let before = [info_of(0)?, info_of(1)?];
    let mut kills = 0;
    for batch in 0..BATCHES {
        let (ready_rx, ready_tx) = pipe()?;
        let (msg_rx, msg_tx) = pipe()?;
        let mut kids: Vec<(Pid, u32, Work)> = Vec::new();
        for i in 0..PER_BATCH {
            let d = (i % 2) as u32;
            let work = WORKS[(i / 2 + batch) % WORKS.len()];
            let cseed = rng.next_u64();
            let pid = fork_child(|| child(d, work, cseed, &ready_tx, &msg_tx))?;
            kids.push((pid, d, work));
        }
        drop(ready_tx);
        drop(msg_tx);
        let kill_all = |kids: &[(Pid, u32, Work)]| {
            for &(pid, _, _) in kids {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = wait_child(pid, Duration::from_secs(10));
            }
        };
        if let Err(e) = wait_ready(&ready_rx, PER_BATCH, Duration::from_secs(30)) {
            kill_all(&kids);
            return Err(format!("batch {batch}: {e}; {}", drain(&msg_rx)));
        }
        // Kill in a random order at random moments.
        while !kids.is_empty() {
            let i = rng.below(kids.len() as u64) as usize;
            let (pid, d, work) = kids.swap_remove(i);
            std::thread::sleep(Duration::from_millis(rng.range(0, 700)));
            let _ = kill(pid, Signal::SIGKILL);
            let t = Instant::now();
            let st = wait_child(pid, Duration::from_secs(10));
            let took = t.elapsed();
            let bad = match &st {
                Ok(ChildStatus::Signaled(s)) if *s == libc::SIGKILL => None,
                Ok(other) => Some(format!("ended {other:?} instead of by SIGKILL")),
                Err(e) => Some(e.clone()),
            };
            if let Some(why) = bad {
                kill_all(&kids);
                return Err(format!(
                    "batch {batch}: child on edu-dma{d} doing {work:?}: {why}; {}",
                    drain(&msg_rx)
                ));
            }
            ensure(took < Duration::from_secs(5), || {
                format!("a SIGKILLed child took {took:?} to die")
            })?;
            kills += 1;
        }
        for d in 0..2 {
            verified_round_trip(d, 3000 + batch as u64, &format!("after batch {batch}"))?;
        }
    }
    // The buffer cap (8 MiB per device) is entirely available again.
    for d in 0..2 {
        let dev = open(d)?;
        let mut held = Vec::new();
        for k in 0..8 {
            held.push(dev.alloc(MIB, BufKind::Coherent).ctx(format!(
                "edu-dma{d}: coherent 1 MiB #{k} after {kills} kills (buffers of killed children leaked?)"
            ))?);
        }
        expect_errno(
            dev.alloc(4096, BufKind::Streaming),
            libc::ENOMEM,
            &format!("edu-dma{d}: one more page at the cap"),
        )?;
    }
    let after = [info_of(0)?, info_of(1)?];
    let avail1 = mem_available_kib()?;
    diag(format!(
        "kill9: {kills} kills in {BATCHES} batches, {:.1} s guest time, DMA commands {}/{}, \
         timeouts {}/{}, MemAvailable {avail0} -> {avail1} KiB",
        t0.elapsed().as_secs_f64(),
        after[0].dma_count - before[0].dma_count,
        after[1].dma_count - before[1].dma_count,
        after[0].timeout_count - before[0].timeout_count,
        after[1].timeout_count - before[1].timeout_count,
    ));
    no_new_timeouts(&before, &after)?;
    // Pinned pages or buffers of killed children that were never released would show here.
    ensure(avail1 + 16 * 1024 >= avail0, || {
        format!("MemAvailable fell from {avail0} to {avail1} KiB over the kills")
    })?;
    ensure(kills == BATCHES * PER_BATCH, || format!("{kills} kills"))
}
