//! `stress.mem_pressure`: a 2 MiB COPY (user pages pinned a window at a time) runs in one thread
//! while another allocates and touches anonymous memory up to ~60% of MemAvailable, frees it, and
//! starts over; the copy must be exact and the pressure thread must have completed rounds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

pub fn mem_pressure() -> TestResult {
    let dev = open(0)?;
    let n = 2 << 20;
    // Page-aligned: one command per page each way (1024 in all, ~100 s of device time).
    let pg = page();
    let mut srcm = Anon::new(n).ctx("mmap")?;
    fill_pattern(srcm.bytes_mut(), 1900);
    let mut dstm = Anon::new(n + 2 * pg).ctx("mmap")?;
    dstm.bytes_mut().fill(GUARD);
    let off = pg;
    dstm.bytes_mut()[off..off + n].fill(!GUARD);
    let (src, dst) = (srcm.bytes(), dstm.bytes_mut());
    let avail = mem_available_kib()?;
    let target = (avail as usize * 1024) / 10 * 6;
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (copy, pressure) = std::thread::scope(|s| {
        let p = s.spawn(|| -> Result<(u32, u64), String> {
            let (mut rounds, mut peak) = (0u32, 0u64);
            let chunk = 4 << 20;
            while !stop.load(Ordering::Relaxed) {
                let mut held = Vec::new();
                let mut got = 0;
                while got < target && !stop.load(Ordering::Relaxed) {
                    let mut m = match Anon::new(chunk) {
                        Ok(m) => m,
                        Err(_) => break,
                    };
                    // Touch every page (distinct values, so nothing can be shared).
                    for (i, b) in m.bytes_mut().iter_mut().step_by(4096).enumerate() {
                        *b = i as u8 | 1;
                    }
                    held.push(m);
                    got += chunk;
                }
                let now = mem_available_kib().unwrap_or(0);
                peak = peak.max((avail.saturating_sub(now)) / 1024);
                // Hold the memory for a while, then let go and breathe: touching 60% of RAM
                // costs host time under TCG.
                std::thread::sleep(Duration::from_millis(1500));
                drop(held);
                rounds += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok((rounds, peak))
        });
        // A per-command timeout well above the device's 100 ms: this test loads the emulated
        // machine on purpose, and a late completion is not what it checks.
        let r = dev.copy_with(
            edu_dma::CopySrc::User(src),
            edu_dma::CopyDst::User(&mut dst[off..off + n]),
            n as u64,
            10_000,
        );
        stop.store(true, Ordering::Relaxed);
        let pr = p
            .join()
            .unwrap_or_else(|_| Err("pressure thread panicked".into()));
        (r, pr)
    });
    let (rounds, peak_mib) = pressure?;
    diag(format!(
        "mem_pressure: MemAvailable {} MiB, target {} MiB, {rounds} rounds (peak use ~{peak_mib} MiB), \
         copy of 2 MiB took {:.1} s guest time",
        avail / 1024,
        target >> 20,
        t0.elapsed().as_secs_f64()
    ));
    let done = copy.ctx("copy 2 MiB under memory pressure")?;
    ensure_eq(done, n as u64, "done")?;
    check_guarded(dst, off, n, 1900, "copied data")?;
    ensure(rounds >= 2, || {
        format!("the pressure thread completed only {rounds} round(s)")
    })
}
