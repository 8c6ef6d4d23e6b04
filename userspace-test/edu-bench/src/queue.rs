//! The queue against the synchronous calls (docs/performance.md, figures 5 and 6):
//! - `gaps`: the device's idle gap from a command's completion interrupt to the next command's
//!   start, recorded by the driver (debugfs `edu-dma<N>/gaps`, `src/gaps.rs`), and the CPU time
//!   per 4 KiB command (the process's and the interrupt handler's), for synchronous loops and for
//!   the queue;
//! - `qscale`: one thread driving N devices through their queues against one device alone.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use edu_dma::uapi::{EduDmaCqe, EduDmaReq};
use edu_dma::{BufKind, Buffer, Device, Dir, Mapping, Queue};

use crate::util::{anon_mem, now_ns, Rec, Stats};
use crate::{check_done, note, WINDOW};

/// Bytes of one synchronous `COPY` (`sync_copy`): 16 chunks, 32 commands in one call.
const COPY_LEN: u64 = 64 << 10;

/// The debugfs file of the driver's gaps for device node `dev` (`/dev/edu-dma<N>`).
fn gaps_path(dev: &Path) -> PathBuf {
    let name = dev
        .file_name()
        .map_or_else(Default::default, |n| n.to_os_string());
    Path::new("/sys/kernel/debug").join(name).join("gaps")
}

/// What the driver's debugfs `gaps` file holds (`src/gaps.rs`).
#[derive(Debug, PartialEq, Eq)]
pub struct DriverGaps {
    /// Gaps recorded since the last clear.
    pub total: u64,
    /// The gaps kept (the last ones), ns.
    pub gaps: Vec<u64>,
    /// Interrupts handled since the last clear.
    pub irqs: u64,
    /// Their summed time in the driver's engine, ns.
    pub irq_ns: u64,
}

/// Parses the driver's gaps text (`src/gaps.rs`, `write_text`).
pub fn parse_gaps(text: &str) -> Option<DriverGaps> {
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split_whitespace().collect();
    let ["gaps", total, "kept", kept, "irqs", irqs, "irq_ns", irq_ns] = head[..] else {
        return None;
    };
    let kept: usize = kept.parse().ok()?;
    let gaps = lines
        .map(|l| l.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    (gaps.len() == kept).then_some(DriverGaps {
        total: total.parse().ok()?,
        gaps,
        irqs: irqs.parse().ok()?,
        irq_ns: irq_ns.parse().ok()?,
    })
}

/// Clears the driver's gaps and switches their recording on or off (off by default: the
/// recording reads the clock twice per interrupt).
fn record_gaps(dev: &Path, on: bool) -> io::Result<()> {
    std::fs::write(gaps_path(dev), if on { "on\n" } else { "off\n" })
}

fn read_gaps(dev: &Path) -> io::Result<DriverGaps> {
    let text = std::fs::read_to_string(gaps_path(dev))?;
    parse_gaps(&text).ok_or_else(|| io::Error::other("unparsable debugfs gaps"))
}

/// Runs this thread on CPU `cpu` only.
fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t; CPU_SET ignores CPUs beyond the set's size.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// This process's user + system CPU time (`getrusage`: the scheduler's exact runtime), ns.
fn proc_cpu_ns() -> u64 {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// One synchronous or queued loop of `gaps`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `XFER` of a coherent buffer, 4 KiB, alternately to and from the device: one command per
    /// call.
    SyncXfer,
    /// `pwrite` and `pread` of 4 KiB, alternately: one command per call.
    SyncRw,
    /// `COPY` of 64 KiB between two coherent buffers: 32 commands per call (one request).
    SyncCopy,
    /// `SUBMIT` of 4 KiB `XFER` requests, `depth` kept queued, reaped at least `batch` at a time
    /// (fewer than `depth`: the device never waits for the reaper).
    Queue,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SyncXfer => "sync_xfer",
            Mode::SyncRw => "sync_rw",
            Mode::SyncCopy => "sync_copy",
            Mode::Queue => "queue",
        }
    }
}

/// Command `i` of a loop: even ones to the device, odd ones back.
fn dir(i: u32) -> Dir {
    if i.is_multiple_of(2) {
        Dir::ToDevice
    } else {
        Dir::FromDevice
    }
}

/// A 4 KiB `XFER` request of buffer `handle` at 0 <-> the window at 0, cookie and direction `i`.
fn xfer_req(i: u32, handle: u32) -> EduDmaReq {
    EduDmaReq::buffer_xfer(i.into(), handle, 0, 0, WINDOW as u32, dir(i))
}

/// Checks one completion of a 4 KiB request.
fn check_cqe(c: &EduDmaCqe) -> io::Result<()> {
    c.result().map_err(io::Error::from_raw_os_error)?;
    check_done(c.done, WINDOW)
}

/// What the loops use, allocated before anything is measured.
struct Mem<'d> {
    a: Buffer<'d>,
    b: Buffer<'d>,
    user: Mapping,
    out: Vec<EduDmaCqe>,
}

/// Runs `commands` device commands in `mode` on `d`.
fn run(
    d: &Device,
    m: &mut Mem<'_>,
    mode: Mode,
    commands: u32,
    depth: u32,
    batch: u32,
) -> io::Result<()> {
    let (a, b) = (&m.a, &m.b);
    match mode {
        Mode::SyncXfer => {
            for i in 0..commands {
                d.xfer(a.handle(), 0, 0, WINDOW as u32, dir(i), 0)?;
            }
        }
        Mode::SyncRw => {
            let f = d.file();
            for i in 0..commands {
                let n = if dir(i) == Dir::ToDevice {
                    f.write_at(m.user.as_slice(), 0)?
                } else {
                    f.read_at(m.user.as_mut_slice(), 0)?
                };
                check_done(n as u64, WINDOW)?;
            }
        }
        Mode::SyncCopy => {
            let per = (2 * COPY_LEN / WINDOW) as u32;
            for _ in 0..commands.div_ceil(per) {
                check_done(
                    d.copy_buffers(a.handle(), 0, b.handle(), 0, COPY_LEN)?,
                    COPY_LEN,
                )?;
            }
        }
        Mode::Queue => {
            let q = Queue::new(d);
            let out = &mut m.out;
            let (mut sent, mut done) = (0u32, 0u32);
            while done < commands {
                while sent < commands && sent - done < depth {
                    let reqs: Vec<EduDmaReq> = (sent..commands.min(done + depth))
                        .map(|i| xfer_req(i, a.handle()))
                        .collect();
                    sent += q.submit_buffers(&reqs)? as u32;
                }
                let min = batch.min(sent - done);
                let got = q.reap(out, min, 10_000)?;
                for c in &out[..got] {
                    check_cqe(c)?;
                }
                done += got as u32;
            }
        }
    }
    Ok(())
}

/// `edu-bench gaps`: for each mode, clears the driver's gaps, runs `commands` commands and
/// reports the gaps' percentiles and the CPU time per command: this process's (`getrusage`) plus
/// the interrupt handler's time in the driver (summed by the driver).
pub fn gaps(
    dev: &Path,
    modes: &[Mode],
    commands: u32,
    depth: u32,
    batch: u32,
    cpu: Option<usize>,
) -> io::Result<()> {
    if let Some(c) = cpu {
        pin_to_cpu(c)?;
    }
    let d = Device::open(dev)?;
    if batch == 0 || batch >= depth {
        // The queue would run dry before each reap returns: not the steady state measured.
        return Err(io::Error::other("gaps: --batch must be 1..depth-1"));
    }
    let mut m = Mem {
        a: d.alloc(COPY_LEN, BufKind::Coherent)?,
        b: d.alloc(COPY_LEN, BufKind::Coherent)?,
        user: anon_mem(WINDOW as usize)?,
        out: vec![EduDmaCqe::default(); depth as usize],
    };
    for &mode in modes {
        let (cmd0, _) = crate::counters(&d)?;
        record_gaps(dev, true)?;
        let (t0, p0) = (now_ns(), proc_cpu_ns());
        run(&d, &mut m, mode, commands, depth, batch)?;
        let (t1, p1) = (now_ns(), proc_cpu_ns());
        let (cmd1, _) = crate::counters(&d)?;
        let mut g = read_gaps(dev)?;
        let cmds = cmd1 - cmd0;
        let per = |ns: u64| ns as f64 / cmds as f64;
        let s = Stats::of(&mut g.gaps);
        note!(
            "gaps {}: {cmds} commands in {:.1} s, gap p50 {:.1} us p99 {:.1} us max {:.1} us ({} gaps, {} recorded); CPU per command {:.1} us = process {:.1} + interrupt {:.1} ({} interrupts)",
            mode.name(),
            (t1 - t0) as f64 / 1e9,
            s.p50 as f64 / 1e3,
            s.p99 as f64 / 1e3,
            s.max as f64 / 1e3,
            s.n,
            g.total,
            per(p1 - p0 + g.irq_ns) / 1e3,
            per(p1 - p0) / 1e3,
            per(g.irq_ns) / 1e3,
            g.irqs
        );
        let mut r = Rec::new("gaps")
            .s("mode", mode.name())
            .s(
                "cpu",
                &cpu.map_or_else(|| "any".to_string(), |c| c.to_string()),
            )
            .u("cmds", cmds)
            .f("seconds", (t1 - t0) as f64 / 1e9)
            .u("recorded", g.total)
            .stats(&s)
            .u("proc_ns", p1 - p0)
            .u("irqs", g.irqs)
            .u("irq_ns", g.irq_ns)
            .f("cpu_per_cmd_ns", per(p1 - p0 + g.irq_ns));
        if let Mode::Queue = mode {
            r = r.u("depth", depth.into()).u("batch", batch.into());
        }
        r.emit();
    }
    // The benchmarks after this one measure the driver as it runs by default.
    record_gaps(dev, false)
}

/// `edu-bench qscale`: one thread keeps `depth` 4 KiB `XFER` requests queued on each of
/// `devices` devices (`poll` on their files, non-blocking reaps) until each completed
/// `commands`; first on `/dev/edu-dma0` alone, then on all. Throughput = bytes / time from the
/// first submit to the last completion reaped.
pub fn qscale(devices: u32, commands: u32, depth: u32) -> io::Result<()> {
    let devs = (0..devices)
        .map(Device::open_instance)
        .collect::<io::Result<Vec<_>>>()?;
    for n in [1, devices] {
        let devs = &devs[..n as usize];
        let bufs = devs
            .iter()
            .map(|d| d.alloc(WINDOW, BufKind::Coherent))
            .collect::<io::Result<Vec<_>>>()?;
        let queues: Vec<Queue<'_>> = devs.iter().map(Queue::new).collect();
        let mut sent = vec![0u32; devs.len()];
        let mut done = vec![0u32; devs.len()];
        let mut out = vec![EduDmaCqe::default(); depth as usize];
        let mut wakeups = 0u64;
        let t0 = now_ns();
        let mut t1 = t0;
        while done.iter().any(|&x| x < commands) {
            for (i, q) in queues.iter().enumerate() {
                let h = bufs[i].handle();
                while sent[i] < commands && sent[i] - done[i] < depth {
                    let reqs: Vec<EduDmaReq> = (sent[i]..commands.min(done[i] + depth))
                        .map(|c| xfer_req(c, h))
                        .collect();
                    sent[i] += q.submit_buffers(&reqs)? as u32;
                }
            }
            let mut fds: Vec<libc::pollfd> = queues
                .iter()
                .map(|q| libc::pollfd {
                    fd: q.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 10_000) };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            if r == 0 {
                return Err(io::Error::other("qscale: no completion in 10 s"));
            }
            wakeups += 1;
            for (i, f) in fds.iter().enumerate() {
                if f.revents & libc::POLLIN == 0 {
                    continue;
                }
                let got = queues[i].reap_nonblock(&mut out)?;
                for c in &out[..got] {
                    check_cqe(c)?;
                }
                done[i] += got as u32;
                t1 = now_ns();
            }
        }
        let secs = (t1 - t0) as f64 / 1e9;
        let bytes = u64::from(n) * u64::from(commands) * WINDOW;
        let bps = bytes as f64 / secs;
        note!(
            "qscale {n}: {bytes} bytes in {secs:.3} s: {bps:.1} B/s = {:.5} of {n} x 40960 B/s ({wakeups} poll wakeups)",
            bps / (f64::from(n) * WINDOW as f64 * 10.0)
        );
        Rec::new("queue_scale")
            .u("devices", n.into())
            .u("commands", commands.into())
            .u("depth", depth.into())
            .u("bytes", bytes)
            .f("seconds", secs)
            .f("bytes_per_s", bps)
            .u("wakeups", wakeups)
            .emit();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_gaps, DriverGaps};

    #[test]
    fn gaps_text_round_trip() {
        let mut s = String::new();
        edu_dma::gaps::write_text(&mut s, 1500, &[3, 40_000, 7], (9, 123)).unwrap();
        let want = DriverGaps {
            total: 1500,
            gaps: vec![3, 40_000, 7],
            irqs: 9,
            irq_ns: 123,
        };
        assert_eq!(parse_gaps(&s), Some(want));
        let head = "gaps 2 kept 2 irqs 0 irq_ns 0\n";
        assert_eq!(parse_gaps(&format!("{head}5\n")), None);
        assert_eq!(parse_gaps(&format!("{head}5\nx\n")), None);
        assert!(parse_gaps(&format!("{head}5\n6\n")).is_some());
        assert_eq!(parse_gaps("gaps 0 kept 0\n"), None);
        assert_eq!(parse_gaps(""), None);
    }
}
