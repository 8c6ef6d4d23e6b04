//! `stress.load`: 3 processes x 2 threads on both devices doing mixed, verified transfers for a
//! bounded guest-time budget (`EDU_LOAD_SECS`, default 40): buffer XFER round trips (coherent
//! and streaming), USER_XFER round trips, COPYs between user memory and buffers, factorials.
//!
//! The device window is shared by every user of a device, and a round trip (to the window, then
//! back) is two commands: another process may overwrite the window in between. Round trips
//! therefore hold a per-device exclusive `flock`, COPYs (whose chunks the driver keeps atomic)
//! a shared one; a turnstile lock keeps the exclusive side from starving. Any corruption or
//! error fails the test, and so does an unfair split (one device < 25% of the other's count).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Buffer, CopyDst, CopySrc, Device, Dir, Mapping, SyncDir};

use super::*;

const PROCS: usize = 3;
const THREADS: usize = 2;
/// Size of each per-thread buffer: source half, destination half.
const BUF: usize = 16384;
const HALF: usize = BUF / 2;

const FACTORIALS: [u64; 13] = [
    1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800, 479001600,
];

fn flock(f: &File, op: i32) {
    // SAFETY: flock on an open file; retried on EINTR.
    while unsafe { libc::flock(f.as_raw_fd(), op) } != 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
}

/// The window lock of one device: exclusive for round trips, shared for COPYs.
struct WinLock {
    main: File,
    turn: File,
}

struct Held<'a>(&'a File);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        flock(self.0, libc::LOCK_UN);
    }
}

impl WinLock {
    fn open(d: usize) -> Result<WinLock, String> {
        let f = |n: &str| {
            let p = format!("/tmp/edu-load-{d}.{n}");
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&p)
                .ctx(format!("open {p}"))
        };
        Ok(WinLock {
            main: f("lock")?,
            turn: f("turn")?,
        })
    }

    fn exclusive(&self) -> Held<'_> {
        flock(&self.turn, libc::LOCK_EX);
        flock(&self.main, libc::LOCK_EX);
        flock(&self.turn, libc::LOCK_UN);
        Held(&self.main)
    }

    fn shared(&self) -> Held<'_> {
        flock(&self.turn, libc::LOCK_EX);
        flock(&self.turn, libc::LOCK_UN);
        flock(&self.main, libc::LOCK_SH);
        Held(&self.main)
    }
}

/// One thread's resources on one device.
struct Side<'d> {
    dev: &'d Device,
    lock: WinLock,
    coh: Buffer<'d>,
    cm: Mapping,
    st: Buffer<'d>,
    sm: Mapping,
}

impl<'d> Side<'d> {
    fn new(dev: &'d Device, d: usize) -> Result<Side<'d>, String> {
        let coh = dev.alloc(BUF as u64, BufKind::Coherent).ctx("alloc")?;
        let st = dev.alloc(BUF as u64, BufKind::Streaming).ctx("alloc")?;
        Ok(Side {
            lock: WinLock::open(d)?,
            cm: coh.map().ctx("mmap")?,
            sm: st.map().ctx("mmap")?,
            dev,
            coh,
            st,
        })
    }
}

/// Buffer round trip: [so, so + n) of the source half -> window w -> [do, do + n) of the
/// destination half of the same buffer.
fn op_xfer(s: &mut Side<'_>, streaming: bool, rng: &mut Rng) -> TestResult {
    let n = rng.range(1, 4096) as usize;
    let so = rng.below((HALF - n + 1) as u64) as usize;
    let dof = rng.below((HALF - n + 1) as u64) as usize;
    let w = rng.below((4096 - n + 1) as u64) as u32;
    let seed = rng.next_u64();
    let what = format!(
        "{} xfer n {n} src {so} dst {} win {w}",
        if streaming { "streaming" } else { "coherent" },
        HALF + dof
    );
    let (buf, map) = if streaming {
        (&s.st, &mut s.sm)
    } else {
        (&s.coh, &mut s.cm)
    };
    fill_pattern(&mut map[so..so + n], seed);
    map[HALF..BUF].fill(GUARD);
    if streaming {
        buf.sync(0, BUF as u64, SyncDir::ForDevice).ctx("sync")?;
    }
    {
        let _g = s.lock.exclusive();
        buf.xfer(so as u64, w, n as u32, Dir::ToDevice, 0)
            .ctx(format!("{what}: to device"))?;
        buf.xfer((HALF + dof) as u64, w, n as u32, Dir::FromDevice, 0)
            .ctx(format!("{what}: from device"))?;
    }
    if streaming {
        buf.sync(HALF as u64, HALF as u64, SyncDir::ForCpu)
            .ctx("sync")?;
    }
    check_guarded(&map[HALF..BUF], dof, n, seed, &what)
}

fn op_user_xfer(s: &Side<'_>, rng: &mut Rng) -> TestResult {
    let n = rng.range(1, 4096) as usize;
    let w = rng.below((4096 - n + 1) as u64) as u32;
    let (sa, da) = (rng.below(64) as usize, rng.below(64) as usize);
    let seed = rng.next_u64();
    let what = format!("USER_XFER n {n} win {w} align {sa}->{da}");
    let mut src = vec![0u8; n + 64];
    fill_pattern(&mut src[sa..sa + n], seed);
    let mut dst = vec![GUARD; n + 128];
    let at = 32 + da;
    {
        let _g = s.lock.exclusive();
        s.dev
            .write_window_from(&src[sa..sa + n], w)
            .ctx(format!("{what}: to device"))?;
        s.dev
            .read_window_into(&mut dst[at..at + n], w)
            .ctx(format!("{what}: from device"))?;
    }
    check_guarded(&dst, at, n, seed, &what)
}

fn op_copy_user(s: &Side<'_>, rng: &mut Rng) -> TestResult {
    let n = rng.range(1, 24576) as usize;
    let (sa, da) = (rng.below(64) as usize, rng.below(64) as usize);
    let seed = rng.next_u64();
    let what = format!("COPY user n {n} align {sa}->{da}");
    let mut src = vec![0u8; n + 64];
    fill_pattern(&mut src[sa..sa + n], seed);
    let mut dst = vec![GUARD; n + 128];
    let at = 32 + da;
    let done = {
        let _g = s.lock.shared();
        s.dev
            .copy(&src[sa..sa + n], &mut dst[at..at + n])
            .ctx(&what)?
    };
    ensure_eq(done, n as u64, &format!("{what}: done"))?;
    check_guarded(&dst, at, n, seed, &what)
}

/// COPY with buffers: user -> coherent, streaming -> user, or coherent -> streaming.
fn op_copy_buf(s: &mut Side<'_>, rng: &mut Rng) -> TestResult {
    let n = rng.range(1, HALF as u64) as usize;
    let so = rng.below((HALF - n + 1) as u64) as usize;
    let dof = rng.below((HALF - n + 1) as u64) as usize;
    let seed = rng.next_u64();
    let how = rng.below(3);
    let what = format!("COPY kind {how} n {n} src {so} dst {dof}");
    let dst_half = |h: u32| CopyDst::Buffer {
        handle: h,
        offset: (HALF + dof) as u64,
    };
    match how {
        0 => {
            let mut src = vec![0u8; n];
            fill_pattern(&mut src, seed);
            s.cm[HALF..BUF].fill(GUARD);
            let done = {
                let _g = s.lock.shared();
                s.dev
                    .copy_with(CopySrc::User(&src), dst_half(s.coh.handle()), n as u64, 0)
                    .ctx(format!("{what}: user -> coherent"))?
            };
            ensure_eq(done, n as u64, &format!("{what}: done"))?;
            check_guarded(&s.cm[HALF..BUF], dof, n, seed, &what)
        }
        1 => {
            fill_pattern(&mut s.sm[so..so + n], seed);
            s.st.sync(0, HALF as u64, SyncDir::ForDevice).ctx("sync")?;
            let mut dst = vec![GUARD; n + 64];
            let done = {
                let _g = s.lock.shared();
                s.dev
                    .copy_with(
                        CopySrc::Buffer {
                            handle: s.st.handle(),
                            offset: so as u64,
                        },
                        CopyDst::User(&mut dst[32..32 + n]),
                        n as u64,
                        0,
                    )
                    .ctx(format!("{what}: streaming -> user"))?
            };
            ensure_eq(done, n as u64, &format!("{what}: done"))?;
            check_guarded(&dst, 32, n, seed, &what)
        }
        _ => {
            fill_pattern(&mut s.cm[so..so + n], seed);
            s.sm[HALF..BUF].fill(GUARD);
            s.st.sync(HALF as u64, HALF as u64, SyncDir::ForDevice)
                .ctx("sync")?;
            let done = {
                let _g = s.lock.shared();
                s.dev
                    .copy_with(
                        CopySrc::Buffer {
                            handle: s.coh.handle(),
                            offset: so as u64,
                        },
                        dst_half(s.st.handle()),
                        n as u64,
                        0,
                    )
                    .ctx(format!("{what}: coherent -> streaming"))?
            };
            ensure_eq(done, n as u64, &format!("{what}: done"))?;
            s.st.sync(HALF as u64, HALF as u64, SyncDir::ForCpu)
                .ctx("sync")?;
            check_guarded(&s.sm[HALF..BUF], dof, n, seed, &what)
        }
    }
}

#[derive(Default)]
struct Counts {
    per_dev: [u64; 2],
    facts: u64,
}

fn thread_body(devs: &[Device; 2], seed: u64, deadline: Instant) -> Result<Counts, String> {
    let mut rng = Rng::new(seed);
    let mut sides = [Side::new(&devs[0], 0)?, Side::new(&devs[1], 1)?];
    let mut c = Counts::default();
    while Instant::now() < deadline {
        let d = rng.below(2) as usize;
        let s = &mut sides[d];
        let op = rng.below(12);
        let r = match op {
            0..=1 => op_xfer(s, false, &mut rng),
            2..=3 => op_xfer(s, true, &mut rng),
            4..=5 => op_user_xfer(s, &mut rng),
            6..=7 => op_copy_user(s, &mut rng),
            8..=9 => op_copy_buf(s, &mut rng),
            _ => {
                let n = rng.below(13) as u32;
                let got = s.dev.factorial(n).ctx(format!("{n}!"))?;
                ensure_eq(got, FACTORIALS[n as usize], &format!("{n}!"))?;
                c.facts += 1;
                continue;
            }
        };
        r.map_err(|e| format!("edu-dma{d}: {e}"))?;
        c.per_dev[d] += 1;
    }
    Ok(c)
}

/// One process: THREADS threads sharing the two open files.
fn process_body(p: usize, seed: u64, secs: u64) -> Result<Counts, String> {
    let devs = open_both()?;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let results: Vec<Result<Counts, String>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let devs = &devs;
                let s = seed ^ ((p * THREADS + t) as u64).wrapping_mul(0x9e37_79b9);
                sc.spawn(move || thread_body(devs, s, deadline))
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    let mut total = Counts::default();
    for (t, r) in results.into_iter().enumerate() {
        let c = r.map_err(|e| format!("process {p} thread {t}: {e}"))?;
        total.per_dev[0] += c.per_dev[0];
        total.per_dev[1] += c.per_dev[1];
        total.facts += c.facts;
    }
    Ok(total)
}

pub fn load() -> TestResult {
    let secs = num_from_env("EDU_LOAD_SECS", 40)?;
    let seed = seed_from_env("EDU_LOAD_SEED")?;
    diag(format!("seed {seed}"));
    let before = [info_of(0)?, info_of(1)?];
    let t0 = Instant::now();
    let (rx, tx) = pipe()?;
    let mut pids = Vec::new();
    for p in 0..PROCS {
        let tx = &tx;
        pids.push(fork_child(move || match process_body(p, seed, secs) {
            Ok(c) => {
                pipe_send(
                    tx,
                    &format!("ok {} {} {}\n", c.per_dev[0], c.per_dev[1], c.facts),
                );
                0
            }
            Err(e) => {
                pipe_send(tx, &format!("fail {}\n", e.replace('\n', " | ")));
                1
            }
        })?);
    }
    drop(tx);
    let out = pipe_read_all(&rx, Duration::from_secs(secs + 300));
    let mut statuses = Vec::new();
    for pid in pids {
        statuses.push(wait_child(pid, Duration::from_secs(30)));
    }
    let out = out?;
    let secs_taken = t0.elapsed().as_secs_f64();
    let mut per_dev = [0u64; 2];
    let mut facts = 0;
    let mut oks = 0;
    let mut fails = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ok", a, b, c] => {
                per_dev[0] += a.parse::<u64>().unwrap_or(0);
                per_dev[1] += b.parse::<u64>().unwrap_or(0);
                facts += c.parse::<u64>().unwrap_or(0);
                oks += 1;
            }
            _ => fails.push(line.to_string()),
        }
    }
    let after = [info_of(0)?, info_of(1)?];
    let total = per_dev[0] + per_dev[1];
    diag(format!(
        "load: {total} transfers verified, per-device counts {}/{}, {facts} factorials, \
         {PROCS} processes x {THREADS} threads, {secs_taken:.1} s guest time, DMA commands {}/{}",
        per_dev[0],
        per_dev[1],
        after[0].dma_count - before[0].dma_count,
        after[1].dma_count - before[1].dma_count
    ));
    ensure(fails.is_empty(), || fails.join("; "))?;
    for (p, st) in statuses.into_iter().enumerate() {
        ensure_eq(st?, ChildStatus::Exited(0), &format!("process {p} exit"))?;
    }
    ensure_eq(oks, PROCS, "processes reporting")?;
    ensure(total >= 20, || {
        format!("only {total} transfers in {secs} s")
    })?;
    let (lo, hi) = (per_dev[0].min(per_dev[1]), per_dev[0].max(per_dev[1]));
    ensure(lo * 4 >= hi, || {
        format!("unfair: per-device counts {}/{}", per_dev[0], per_dev[1])
    })?;
    no_new_timeouts(&before, &after)?;
    Ok(())
}
