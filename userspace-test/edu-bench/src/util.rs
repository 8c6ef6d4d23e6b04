//! Clocks, page-aligned anonymous memory, statistics and the `@bench` record format. Sizes
//! (`4K`, `16M`) are parsed and printed by the library (`edu_dma::parse_size`, `format_size`).

use std::fmt::Write as _;
use std::io;

use edu_dma::{fill_pattern, page_size, Mapping};

/// One millisecond in nanoseconds.
pub const MS: u64 = 1_000_000;

/// `CLOCK_MONOTONIC` in nanoseconds.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until `CLOCK_MONOTONIC` reaches `t` (nanoseconds).
pub fn sleep_until(t: u64) {
    let ts = libc::timespec {
        tv_sec: (t / 1_000_000_000) as libc::time_t,
        tv_nsec: (t % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; no remainder is requested (absolute sleep).
        let r = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if r != libc::EINTR {
            return;
        }
    }
}

/// Timer slack of 1 ns, so that [`sleep_until`] wakes at the time asked for.
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an integer argument and touches no memory of ours.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Waits until `phase` nanoseconds after a millisecond boundary of the guest clock (one to two
/// milliseconds from now). Used to spread the start of a measured command uniformly over the
/// millisecond: edu's DMA timer has a millisecond-granular deadline (see docs/performance.md).
/// The kernel has no high-resolution timers (a sleep ends on a 4 ms tick), so this spins.
pub fn spin_to_phase(phase: u64) {
    let target = (now_ns() / MS + 1) * MS + phase % MS;
    while now_ns() < target {
        std::hint::spin_loop();
    }
}

/// `len` bytes (at least one page) of anonymous private memory filled with the pattern, so that
/// every page is present before anything is measured.
pub fn anon_mem(len: usize) -> io::Result<Mapping> {
    let mut m = Mapping::anonymous(len.max(1).next_multiple_of(page_size()))?;
    fill_pattern(&mut m, len as u64);
    Ok(m)
}

/// Summary of a set of samples (nanoseconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub min: u64,
    pub max: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
}

impl Stats {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [u64]) -> Stats {
        if samples.is_empty() {
            return Stats::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let pct = |p: f64| samples[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Stats {
            n,
            mean: samples.iter().map(|&x| x as f64).sum::<f64>() / n as f64,
            min: samples[0],
            max: samples[n - 1],
            p50: pct(50.0),
            p90: pct(90.0),
            p99: pct(99.0),
            p999: pct(99.9),
        }
    }
}

/// One machine-readable result: a flat JSON object printed on one line after `@bench `.
pub struct Rec(String);

impl Rec {
    pub fn new(kind: &str) -> Rec {
        Rec(format!("{{\"kind\":\"{kind}\""))
    }

    /// A string field (plain ASCII names only: no escaping is done).
    pub fn s(mut self, k: &str, v: &str) -> Rec {
        let _ = write!(self.0, ",\"{k}\":\"{v}\"");
        self
    }

    /// An integer field.
    pub fn u(mut self, k: &str, v: u64) -> Rec {
        let _ = write!(self.0, ",\"{k}\":{v}");
        self
    }

    /// A number field (non-finite values become null).
    pub fn f(mut self, k: &str, v: f64) -> Rec {
        if v.is_finite() {
            let _ = write!(self.0, ",\"{k}\":{v:.3}");
        } else {
            let _ = write!(self.0, ",\"{k}\":null");
        }
        self
    }

    /// The percentiles of `s` as `<prefix>_{mean,min,p50,p90,p99,p999,max}_ns` and `samples`.
    pub fn stats(self, s: &Stats) -> Rec {
        self.u("samples", s.n as u64)
            .f("mean_ns", s.mean)
            .u("min_ns", s.min)
            .u("p50_ns", s.p50)
            .u("p90_ns", s.p90)
            .u("p99_ns", s.p99)
            .u("p999_ns", s.p999)
            .u("max_ns", s.max)
    }

    /// Prints the record on stdout.
    pub fn emit(self) {
        println!("@bench {}}}", self.0);
    }
}

/// Progress and human-readable notes go to stderr (the console), results to stdout.
#[macro_export]
macro_rules! note {
    ($($t:tt)*) => { eprintln!("# {}", format_args!($($t)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).collect();
        let s = Stats::of(&mut v);
        assert_eq!((s.p50, s.p90, s.p99, s.min, s.max), (50, 90, 99, 1, 100));
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn record() {
        let r = Rec::new("x")
            .s("a", "b")
            .u("n", 3)
            .f("f", 1.5)
            .f("g", f64::NAN);
        assert_eq!(
            r.0,
            "{\"kind\":\"x\",\"a\":\"b\",\"n\":3,\"f\":1.500,\"g\":null"
        );
    }
}
