//! Group `stress` (opt-in): SIGKILL of busy processes, a multi-process load with verification
//! and a fairness bound, a random ioctl fuzzer, and a copy under memory pressure. Shared helpers
//! live here; each test has its own file.

mod fuzz;
mod fuzz_overlap;
mod kill9;
mod load;
mod mem_pressure;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use edu_dma::Device;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("kill9", kill9::kill9),
        test("load", load::load),
        test("fuzz", fuzz::fuzz),
        test("fuzz_overlapping_dest", fuzz_overlap::fuzz_overlapping_dest),
        test("mem_pressure", mem_pressure::mem_pressure),
    ]
}

/// A small deterministic generator (splitmix64): runs are reproducible from their seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// A seed from the environment variable `var`, or from the clock.
pub fn seed_from_env(var: &str) -> Result<u64, String> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{var}={v:?} is not a number")),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(t.as_nanos() as u64 ^ u64::from(std::process::id()) << 32)
        }
    }
}

/// A number from the environment variable `var`, or `default`.
pub fn num_from_env(var: &str, default: u64) -> Result<u64, String> {
    match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{var}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Forks a child that runs `f` and `_exit`s with its result (101 if it panics). Call only while
/// this process has no other thread (the child runs ordinary Rust code).
pub fn fork_child(f: impl FnOnce() -> i32) -> Result<Pid, String> {
    // SAFETY: the caller has no other thread, so the child's copy of every lock is free; the
    // child never returns into the parent's code.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or(101);
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// Waits up to `limit` for `pid` to end.
pub fn wait_child(pid: Pid, limit: Duration) -> Result<ChildStatus, String> {
    let start = Instant::now();
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(ChildStatus::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ChildStatus::Signaled(sig as i32)),
            Ok(WaitStatus::StillAlive) => {}
            Ok(other) => return Err(format!("waitpid {pid}: unexpected {other:?}")),
            Err(e) => return Err(format!("waitpid {pid}: {e}")),
        }
        if start.elapsed() > limit {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return Err(format!("child {pid} still running after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A pipe: (read end, write end), close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes `msg` to a pipe in one `write` (atomic below PIPE_BUF).
pub fn pipe_send(fd: &OwnedFd, msg: &str) {
    let b = msg.as_bytes();
    let n = b.len().min(libc::PIPE_BUF);
    // SAFETY: `b` is valid for `n` bytes.
    unsafe { libc::write(fd.as_raw_fd(), b.as_ptr().cast(), n) };
}

/// Reads from `fd` until EOF or until `limit` passes.
pub fn pipe_read_all(fd: &OwnedFd, limit: Duration) -> Result<String, String> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!(
                "no EOF on the result pipe after {limit:?}; read so far: {:?}",
                String::from_utf8_lossy(&out)
            ));
        }
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left.as_millis().min(1000) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if r == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(format!("read: {}", std::io::Error::last_os_error()));
        }
        if n == 0 {
            return Ok(String::from_utf8_lossy(&out).into_owned());
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

/// `MemAvailable` of /proc/meminfo, in KiB.
pub fn mem_available_kib() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/meminfo").ctx("read /proc/meminfo")?;
    s.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no MemAvailable in /proc/meminfo".to_string())
}

/// `info` of `/dev/edu-dma<d>`.
pub fn info_of(d: u32) -> Result<edu_dma::Info, String> {
    open(d)?.info().ctx(format!("info edu-dma{d}"))
}

/// Fails if a device counted a command timeout between the `before` and `after` INFO of
/// edu-dma0 and edu-dma1 (no interrupt is dropped on purpose under stress).
pub fn no_new_timeouts(before: &[edu_dma::Info; 2], after: &[edu_dma::Info; 2]) -> TestResult {
    for d in 0..2 {
        ensure_eq(
            after[d].timeout_count,
            before[d].timeout_count,
            &format!("edu-dma{d}: timeout_count"),
        )?;
    }
    Ok(())
}

/// Opens both devices.
pub fn open_both() -> Result<[Device; 2], String> {
    Ok([open(0)?, open(1)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let (mut a, mut b) = (Rng::new(5), Rng::new(5));
        let va: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(va, vb);
        let mut r = Rng::new(1);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[r.below(10) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
        assert!((0..1000).all(|_| (3..=7).contains(&r.range(3, 7))));
    }

    #[test]
    fn children_and_pipes() {
        let (rx, tx) = pipe().expect("pipe");
        let pid = fork_child(|| {
            pipe_send(&tx, "hello\n");
            3
        })
        .expect("fork");
        drop(tx);
        assert_eq!(
            wait_child(pid, Duration::from_secs(10)),
            Ok(ChildStatus::Exited(3))
        );
        assert_eq!(
            pipe_read_all(&rx, Duration::from_secs(5)).as_deref(),
            Ok("hello\n")
        );
        assert!(mem_available_kib().expect("meminfo") > 0);
    }
}
