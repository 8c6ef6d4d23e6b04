//! `edu-bench`: in-VM benchmarks of the edu-dma driver, run by `scripts/bench`.
//!
//! Every figure is measured in the guest with `CLOCK_MONOTONIC`. Results are printed on stdout
//! as `@bench {json}` lines (collected by scripts/bench); notes go to stderr. See
//! docs/performance.md for the method behind each subcommand.

mod kernel;
mod queue;
mod util;

use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use clap::{Parser, Subcommand, ValueEnum};
use edu_dma::{describe_error, format_size, parse_size, BufKind, Device, Dir, Mapping, SyncDir};

use util::{anon_mem, now_ns, spin_to_phase, Rec, Stats, MS};

/// The device moves at most this many bytes per command...
const WINDOW: u64 = 4096;
/// ...and a command takes this long (virtual time, millisecond-granular deadline).
const CMD_NS: u64 = 100 * MS;
/// Largest driver buffer the buffer paths allocate (4 MiB, the largest contiguous allocation a
/// coherent buffer can get); longer transfers reuse it.
const BUF_MAX: u64 = 4 << 20;

#[derive(Parser)]
#[command(
    name = "edu-bench",
    about = "Benchmarks of the edu-dma driver (in the VM)"
)]
struct Cli {
    /// Device node used by single-device benchmarks.
    #[arg(long, global = true, default_value = "/dev/edu-dma0")]
    dev: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Time per transfer of each size through each path (round trip RAM -> device -> RAM).
    Sweep {
        /// Sizes (K/M suffixes), comma-separated.
        #[arg(long, value_delimiter = ',', value_parser = parse_size,
              default_value = "1,4,16,64,256,1K,4K,16K,64K,256K,1M,4M,16M")]
        sizes: Vec<u64>,
        /// Paths, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "user,streaming,coherent,rw"
        )]
        paths: Vec<PathKind>,
        /// Repetitions (phase-spread) of transfers of one command pair; fewer for longer ones.
        #[arg(long, default_value_t = 8)]
        reps: u32,
    },
    /// Driver overhead of single 4 KiB commands: mean(time) - 99.5 ms over start phases spread
    /// uniformly over the device timer's millisecond.
    Overhead {
        /// Samples per operation.
        #[arg(long, default_value_t = 400)]
        samples: u32,
    },
    /// FACTORIAL(0) round trips: interrupt-to-waiter latency.
    Latency {
        #[arg(long, default_value_t = 5000)]
        samples: u32,
        /// Label of the record (e.g. the clock mode of the boot).
        #[arg(long, default_value = "icount")]
        label: String,
    },
    /// Side by side, one driver after the other in the same boot: FACTORIAL(0) round trips and
    /// single 4 KiB pwrite/pread (phase-spread overhead) on each node given, e.g. edu-dma's and
    /// the C reference driver's (bench/cdrv), which speaks the same FACTORIAL ioctl.
    Side {
        /// Device nodes, comma-separated (each node's record is labelled with its file name).
        #[arg(long, value_delimiter = ',', required = true)]
        devs: Vec<PathBuf>,
        /// FACTORIAL samples per node.
        #[arg(long, default_value_t = 5000)]
        fact_samples: u32,
        /// pwrite and pread samples per node.
        #[arg(long, default_value_t = 200)]
        rw_samples: u32,
    },
    /// gup_test: pin_user_pages(_fast) + unpin, one page per call.
    Gup {
        /// Pages per run.
        #[arg(long, default_value_t = 1024)]
        pages: usize,
        #[arg(long, default_value_t = 8)]
        rounds: u32,
    },
    /// dma_map_benchmark: map + unmap of one page (needs a device bound to dma_map_benchmark).
    Dmamap {
        /// Seconds (guest time) per run.
        #[arg(long, default_value_t = 1)]
        seconds: u32,
    },
    /// Link utilisation: back-to-back COPY on one device for a while (real-time boot).
    Link {
        #[arg(long, default_value_t = 24)]
        seconds: u64,
        /// Bytes per COPY ioctl.
        #[arg(long, default_value = "64K", value_parser = parse_size)]
        chunk: u64,
        /// Start at this CLOCK_MONOTONIC time (ns; used by `scale`), else now.
        #[arg(long)]
        start_at: Option<u64>,
        /// Record label.
        #[arg(long, default_value = "link")]
        label: String,
    },
    /// Diagnostics: back-to-back single commands, each timed (completion-to-completion period).
    #[command(hide = true)]
    Probe {
        #[arg(long, default_value_t = 20)]
        count: u32,
        /// Spread the start of each command over the millisecond (else back to back).
        #[arg(long)]
        phased: bool,
    },
    /// Command gaps (completion interrupt to next start, recorded by the driver) and CPU time
    /// (process + interrupt handler) per 4 KiB command: synchronous loops (XFER, pwrite/pread, COPY) and the queue.
    Gaps {
        /// Loops, comma-separated.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "sync-xfer,sync-rw,sync-copy,queue"
        )]
        modes: Vec<queue::Mode>,
        /// Commands per loop.
        #[arg(long, default_value_t = 400)]
        commands: u32,
        /// Requests the queue loop keeps queued.
        #[arg(long, default_value_t = 8)]
        depth: u32,
        /// Completions the queue loop waits for per REAP.
        #[arg(long, default_value_t = 4)]
        batch: u32,
        /// Run on this CPU only (the device's interrupt goes to CPU 0).
        #[arg(long)]
        cpu: Option<usize>,
    },
    /// One thread driving N devices through their queues (poll + REAP), against one device.
    Qscale {
        /// Devices (/dev/edu-dma0..N-1).
        #[arg(long, default_value_t = 4)]
        devices: u32,
        /// Commands per device.
        #[arg(long, default_value_t = 300)]
        commands: u32,
        /// Requests kept queued per device.
        #[arg(long, default_value_t = 8)]
        depth: u32,
    },
    /// Scaling: one `link` process per device, started together.
    Scale {
        /// Processes (= devices /dev/edu-dma0..N-1).
        #[arg(long)]
        procs: u32,
        #[arg(long, default_value_t = 12)]
        seconds: u64,
        #[arg(long, default_value = "64K", value_parser = parse_size)]
        chunk: u64,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PathKind {
    /// USER_XFER (<= 4096 bytes) / COPY user -> user (beyond).
    User,
    /// Streaming buffer: BUF_SYNC + XFER / COPY buffer -> buffer.
    Streaming,
    /// Coherent buffer: XFER / COPY buffer -> buffer.
    Coherent,
    /// pwrite()/pread() on the node, 4096 bytes per call.
    Rw,
}

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::User => "user",
            PathKind::Streaming => "streaming",
            PathKind::Coherent => "coherent",
            PathKind::Rw => "rw",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    util::tight_timer_slack();
    let r = match cli.cmd {
        Cmd::Sweep { sizes, paths, reps } => sweep(&cli.dev, &sizes, &paths, reps),
        Cmd::Overhead { samples } => overhead(&cli.dev, samples),
        Cmd::Latency { samples, label } => latency(&cli.dev, samples, &label),
        Cmd::Side {
            devs,
            fact_samples,
            rw_samples,
        } => side(&devs, fact_samples, rw_samples),
        Cmd::Gup { pages, rounds } => gup(pages, rounds),
        Cmd::Dmamap { seconds } => dmamap(seconds),
        Cmd::Link {
            seconds,
            chunk,
            start_at,
            label,
        } => link(&cli.dev, seconds, chunk, start_at, &label),
        Cmd::Probe { count, phased } => probe(&cli.dev, count, phased),
        Cmd::Gaps {
            modes,
            commands,
            depth,
            batch,
            cpu,
        } => queue::gaps(&cli.dev, &modes, commands, depth, batch, cpu),
        Cmd::Qscale {
            devices,
            commands,
            depth,
        } => queue::qscale(devices, commands, depth),
        Cmd::Scale {
            procs,
            seconds,
            chunk,
        } => scale(procs, seconds, chunk),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edu-bench: {}", describe_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// What a transfer of one path needs: the device, user memory, and a driver buffer.
struct PathCtx<'d> {
    dev: &'d Device,
    kind: PathKind,
    src: Mapping,
    dst: Mapping,
    buf: Option<(edu_dma::Buffer<'d>, u64)>,
}

impl<'d> PathCtx<'d> {
    fn new(dev: &'d Device, kind: PathKind, max: u64) -> io::Result<PathCtx<'d>> {
        let buf = match kind {
            PathKind::Streaming | PathKind::Coherent => {
                let bk = if kind == PathKind::Streaming {
                    BufKind::Streaming
                } else {
                    BufKind::Coherent
                };
                // Largest buffer up to BUF_MAX that the kernel grants.
                let mut size = max.clamp(WINDOW, BUF_MAX).next_power_of_two();
                loop {
                    match dev.alloc(size, bk) {
                        Ok(b) => break Some((b, size)),
                        Err(e) if size > WINDOW => {
                            note!("{} buffer of {}: {}", bk.name(), format_size(size), e);
                            size /= 2;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => None,
        };
        let user = if buf.is_some() { WINDOW } else { max };
        Ok(PathCtx {
            dev,
            kind,
            src: anon_mem(user as usize)?,
            dst: anon_mem(user as usize)?,
            buf,
        })
    }

    /// One transfer of `n` bytes: RAM -> device window -> RAM.
    fn transfer(&mut self, n: u64) -> io::Result<()> {
        let d = self.dev;
        match self.kind {
            PathKind::User if n <= WINDOW => {
                let n = n as usize;
                d.write_window_from(&self.src.as_slice()[..n], 0)?;
                d.read_window_into(&mut self.dst.as_mut_slice()[..n], 0)
            }
            PathKind::User => {
                let n = n as usize;
                let done = d.copy(&self.src.as_slice()[..n], &mut self.dst.as_mut_slice()[..n])?;
                check_done(done, n as u64)
            }
            PathKind::Rw => {
                let f = d.file();
                let mut off = 0usize;
                while (off as u64) < n {
                    let k = (n as usize - off).min(WINDOW as usize);
                    let w = f.write_at(&self.src.as_slice()[off..off + k], 0)?;
                    let r = f.read_at(&mut self.dst.as_mut_slice()[off..off + k], 0)?;
                    check_done(w.min(r) as u64, k as u64)?;
                    off += k;
                }
                Ok(())
            }
            PathKind::Streaming | PathKind::Coherent => {
                let (buf, cap) = self.buf.as_ref().expect("buffer path has a buffer");
                let (h, cap) = (buf.handle(), *cap);
                let streaming = self.kind == PathKind::Streaming;
                let mut left = n;
                while left > 0 {
                    let k = left.min(cap);
                    if streaming {
                        d.sync(h, 0, k, SyncDir::ForDevice)?;
                    }
                    if k <= WINDOW {
                        d.xfer(h, 0, 0, k as u32, Dir::ToDevice, 0)?;
                        d.xfer(h, 0, 0, k as u32, Dir::FromDevice, 0)?;
                    } else {
                        check_done(d.copy_buffers(h, 0, h, 0, k)?, k)?;
                    }
                    if streaming {
                        d.sync(h, 0, k, SyncDir::ForCpu)?;
                    }
                    left -= k;
                }
                Ok(())
            }
        }
    }
}

fn check_done(done: u64, want: u64) -> io::Result<()> {
    if done == want {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "short transfer: {done} of {want}"
        )))
    }
}

/// DMA commands and bytes completed so far on a device.
fn counters(dev: &Device) -> io::Result<(u64, u64)> {
    let i = dev.info()?;
    Ok((i.dma_count, i.dma_bytes))
}

fn sweep(dev: &PathBuf, sizes: &[u64], paths: &[PathKind], reps: u32) -> io::Result<()> {
    let d = Device::open(dev)?;
    let max = sizes.iter().copied().max().unwrap_or(WINDOW);
    for &p in paths {
        let mut ctx = PathCtx::new(&d, p, max)?;
        for &n in sizes {
            if n == 0 {
                continue;
            }
            // Transfers of one command pair are repeated with start phases spread over the
            // millisecond; long ones, whose phase error is small next to their length, once.
            let pairs = n.div_ceil(WINDOW);
            let r = (u64::from(reps) / pairs).clamp(1, u64::from(reps.max(1))) as u32;
            let (c0, b0) = counters(&d)?;
            let wall0 = now_ns();
            let mut times = Vec::with_capacity(r as usize);
            for j in 0..r {
                spin_to_phase(u64::from(j) * MS / u64::from(r));
                let t0 = now_ns();
                ctx.transfer(n)?;
                times.push(now_ns() - t0);
            }
            let (c1, b1) = counters(&d)?;
            let s = Stats::of(&mut times);
            let cmds = (c1 - c0) as f64 / f64::from(r);
            let bytes = (b1 - b0) as f64 / f64::from(r);
            // Overhead visible around the commands: the device time of `cmds` back-to-back
            // commands is cmds x 100 ms minus, on average over start phases, half a millisecond
            // (exact over the `r` spread phases to 1/r ms; +-0.5 ms for a single transfer).
            let visible = s.mean - cmds * CMD_NS as f64 + (MS / 2) as f64;
            note!(
                "sweep {:9} {:>4}: {:6.0} cmds {:12.3} ms/transfer {:10.1} B/s overhead {:9.1} us ({} reps, {:.1} s)",
                p.name(),
                format_size(n),
                cmds,
                s.mean / 1e6,
                n as f64 * 1e9 / s.mean,
                visible / 1e3,
                r,
                (now_ns() - wall0) as f64 / 1e9
            );
            Rec::new("sweep")
                .s("path", p.name())
                .u("size", n)
                .u("reps", u64::from(r))
                .f("cmds", cmds)
                .f("dma_bytes", bytes)
                .f("throughput_Bps", n as f64 * 1e9 / s.mean)
                .f("link_util", bytes * 1e9 / s.mean / (WINDOW as f64 * 10.0))
                .f("overhead_ns", visible)
                .stats(&s)
                .emit();
        }
    }
    Ok(())
}

/// One measured single-command operation of `overhead`.
#[derive(Clone, Copy)]
enum OneCmd {
    UserTo,
    UserFrom,
    CoherentTo,
    StreamingTo,
    Write,
    Read,
}

impl OneCmd {
    const ALL: [OneCmd; 6] = [
        OneCmd::UserTo,
        OneCmd::UserFrom,
        OneCmd::CoherentTo,
        OneCmd::StreamingTo,
        OneCmd::Write,
        OneCmd::Read,
    ];

    fn name(self) -> &'static str {
        match self {
            OneCmd::UserTo => "user_xfer_to_device",
            OneCmd::UserFrom => "user_xfer_from_device",
            OneCmd::CoherentTo => "xfer_coherent_to_device",
            OneCmd::StreamingTo => "xfer_streaming_to_device",
            OneCmd::Write => "pwrite_4k",
            OneCmd::Read => "pread_4k",
        }
    }
}

fn overhead(dev: &PathBuf, samples: u32) -> io::Result<()> {
    let d = Device::open(dev)?;
    let src = anon_mem(WINDOW as usize)?;
    let mut dst = anon_mem(WINDOW as usize)?;
    let coh = d.alloc(WINDOW, BufKind::Coherent)?;
    let stm = d.alloc(WINDOW, BufKind::Streaming)?;
    let n = WINDOW as usize;
    for op in OneCmd::ALL {
        let (c0, _) = counters(&d)?;
        let s = phased(samples, || match op {
            OneCmd::UserTo => d.write_window_from(&src.as_slice()[..n], 0),
            OneCmd::UserFrom => d.read_window_into(&mut dst.as_mut_slice()[..n], 0),
            OneCmd::CoherentTo => d.xfer(coh.handle(), 0, 0, n as u32, Dir::ToDevice, 0),
            OneCmd::StreamingTo => d.xfer(stm.handle(), 0, 0, n as u32, Dir::ToDevice, 0),
            OneCmd::Write => check_done(d.file().write_at(&src.as_slice()[..n], 0)? as u64, WINDOW),
            OneCmd::Read => check_done(
                d.file().read_at(&mut dst.as_mut_slice()[..n], 0)? as u64,
                WINDOW,
            ),
        })?;
        let (c1, _) = counters(&d)?;
        if c1 - c0 != u64::from(samples) {
            return Err(io::Error::other(format!(
                "{}: {} commands for {samples} samples",
                op.name(),
                c1 - c0
            )));
        }
        overhead_rec(Rec::new("overhead"), op.name(), &s);
    }
    Ok(())
}

/// `samples` single-command operations, sample `j` started `j/samples` ms past a millisecond
/// boundary of the guest clock (the device timer's phase, see docs/performance.md).
fn phased(samples: u32, mut op: impl FnMut() -> io::Result<()>) -> io::Result<Stats> {
    let mut times = Vec::with_capacity(samples as usize);
    for j in 0..samples {
        spin_to_phase(u64::from(j) * MS / u64::from(samples));
        let t0 = now_ns();
        op()?;
        times.push(now_ns() - t0);
    }
    Ok(Stats::of(&mut times))
}

/// Prints and records the overhead of one single-command operation: the mean over uniformly
/// spread start phases of (time - 100 ms) is overhead - 0.5 ms.
fn overhead_rec(rec: Rec, op: &str, s: &Stats) {
    let ovh = s.mean - (CMD_NS - MS / 2) as f64;
    note!(
        "overhead {:26}: {:8.2} us (mean {:.4} ms, min {:.4} ms, max {:.4} ms, {} samples)",
        op,
        ovh / 1e3,
        s.mean / 1e6,
        s.min as f64 / 1e6,
        s.max as f64 / 1e6,
        s.n
    );
    rec.s("op", op).f("overhead_ns", ovh).stats(s).emit();
}

fn latency(dev: &PathBuf, samples: u32, label: &str) -> io::Result<()> {
    let s = factorial_rounds(&Device::open(dev)?, samples)?;
    note!(
        "latency factorial(0) [{label}]: p50 {:.2} us p99 {:.2} us mean {:.2} us min {:.2} us max {:.2} us ({} samples)",
        s.p50 as f64 / 1e3,
        s.p99 as f64 / 1e3,
        s.mean / 1e3,
        s.min as f64 / 1e3,
        s.max as f64 / 1e3,
        s.n
    );
    Rec::new("latency").s("label", label).stats(&s).emit();
    Ok(())
}

/// `samples` FACTORIAL(0) round trips after 50 warm-up calls, each result checked.
fn factorial_rounds(d: &Device, samples: u32) -> io::Result<Stats> {
    for _ in 0..50 {
        d.factorial(0)?;
    }
    let mut times = Vec::with_capacity(samples as usize);
    for _ in 0..samples {
        let t0 = now_ns();
        let v = d.factorial(0)?;
        times.push(now_ns() - t0);
        if v != 1 {
            return Err(io::Error::other(format!("0! = {v}")));
        }
    }
    Ok(Stats::of(&mut times))
}

fn side(devs: &[PathBuf], fact_samples: u32, rw_samples: u32) -> io::Result<()> {
    let n = WINDOW as usize;
    let mut src = anon_mem(n)?;
    let mut dst = anon_mem(n)?;
    for dev in devs {
        let label = dev.file_name().and_then(|f| f.to_str()).unwrap_or("?");
        let d = Device::open(dev)?;
        let s = factorial_rounds(&d, fact_samples)?;
        note!(
            "side {label}: factorial(0) min {:.2} us p50 {:.2} us p99 {:.2} us ({} samples)",
            s.min as f64 / 1e3,
            s.p50 as f64 / 1e3,
            s.p99 as f64 / 1e3,
            s.n
        );
        Rec::new("side_latency").s("driver", label).stats(&s).emit();
        // A fresh pattern per node, read back and compared: the timed calls move real data.
        for (i, b) in src.as_mut_slice().iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(31).wrapping_add(label.len() as u8);
        }
        let f = d.file();
        let s = phased(rw_samples, || {
            check_done(f.write_at(&src.as_slice()[..n], 0)? as u64, WINDOW)
        })?;
        overhead_rec(
            Rec::new("side_overhead").s("driver", label),
            "pwrite_4k",
            &s,
        );
        dst.as_mut_slice().fill(0);
        let s = phased(rw_samples, || {
            check_done(f.read_at(&mut dst.as_mut_slice()[..n], 0)? as u64, WINDOW)
        })?;
        overhead_rec(Rec::new("side_overhead").s("driver", label), "pread_4k", &s);
        if dst.as_slice()[..n] != src.as_slice()[..n] {
            return Err(io::Error::other(format!(
                "{label}: pread returned other bytes than pwrite wrote"
            )));
        }
    }
    Ok(())
}

fn gup(pages: usize, rounds: u32) -> io::Result<()> {
    let len = pages * 4096;
    let mem = anon_mem(len)?;
    for (pin, pname) in [
        (kernel::Pin::Fast, "pin_user_pages_fast"),
        (kernel::Pin::Basic, "pin_user_pages"),
    ] {
        for write in [false, true] {
            // One warm-up run, then the measured ones.
            kernel::gup(&mem, len, pin, write, 1)?;
            let r = kernel::gup(&mem, len, pin, write, rounds)?;
            let pin_ns = r.get_us as f64 * 1e3 / r.pages as f64;
            let unpin_ns = r.put_us as f64 * 1e3 / r.pages as f64;
            note!(
                "gup_test {pname}{}: pin {pin_ns:.1} ns/page, unpin {unpin_ns:.1} ns/page ({} pages)",
                if write { " FOLL_WRITE" } else { "" },
                r.pages
            );
            Rec::new("gup")
                .s("call", pname)
                .u("write", u64::from(write))
                .u("pages", r.pages)
                .f("pin_ns", pin_ns)
                .f("unpin_ns", unpin_ns)
                .emit();
        }
    }
    Ok(())
}

fn dmamap(seconds: u32) -> io::Result<()> {
    for (sg, mode) in [(true, "sg"), (false, "single")] {
        for (dir, dname) in [
            (kernel::MapDir::ToDevice, "to_device"),
            (kernel::MapDir::FromDevice, "from_device"),
        ] {
            let r = kernel::dma_map(sg, dir, seconds)?;
            note!(
                "dma_map_benchmark {mode} {dname}: map {} ns (sd {}), unmap {} ns (sd {})",
                r.map_ns,
                r.map_sd_ns,
                r.unmap_ns,
                r.unmap_sd_ns
            );
            Rec::new("dmamap")
                .s("mode", mode)
                .s("dir", dname)
                .u("map_ns", r.map_ns)
                .u("map_sd_ns", r.map_sd_ns)
                .u("unmap_ns", r.unmap_ns)
                .u("unmap_sd_ns", r.unmap_sd_ns)
                .emit();
        }
    }
    Ok(())
}

fn link(
    dev: &PathBuf,
    seconds: u64,
    chunk: u64,
    start_at: Option<u64>,
    label: &str,
) -> io::Result<()> {
    let d = Device::open(dev)?;
    let src = anon_mem(chunk as usize)?;
    let mut dst = anon_mem(chunk as usize)?;
    let n = chunk as usize;
    if let Some(t) = start_at {
        util::sleep_until(t);
    }
    let (c0, b0) = counters(&d)?;
    let t0 = now_ns();
    let end = t0 + seconds * 1_000_000_000;
    let mut copies = 0u64;
    while now_ns() < end {
        check_done(
            d.copy(&src.as_slice()[..n], &mut dst.as_mut_slice()[..n])?,
            chunk,
        )?;
        copies += 1;
    }
    let t1 = now_ns();
    let (c1, b1) = counters(&d)?;
    let secs = (t1 - t0) as f64 / 1e9;
    let bps = (b1 - b0) as f64 / secs;
    let util = bps / (WINDOW as f64 * 10.0);
    note!(
        "{label} {}: {} bytes in {} commands over {secs:.3} s: {bps:.1} B/s = {util:.5} of 40960 B/s",
        dev.display(),
        b1 - b0,
        c1 - c0
    );
    Rec::new("link")
        .s("label", label)
        .s("dev", &dev.display().to_string())
        .u("chunk", chunk)
        .u("copies", copies)
        .u("cmds", c1 - c0)
        .u("bytes", b1 - b0)
        .u("t0_ns", t0)
        .u("t1_ns", t1)
        .f("seconds", secs)
        .f("bytes_per_s", bps)
        .f("util", util)
        .emit();
    Ok(())
}

fn probe(dev: &PathBuf, count: u32, phased: bool) -> io::Result<()> {
    let d = Device::open(dev)?;
    let coh = d.alloc(WINDOW, BufKind::Coherent)?;
    let mut last = now_ns();
    for j in 0..count {
        if phased {
            spin_to_phase(u64::from(j) * MS / u64::from(count));
        }
        let t0 = now_ns();
        d.xfer(coh.handle(), 0, 0, WINDOW as u32, Dir::ToDevice, 0)?;
        let t1 = now_ns();
        note!(
            "probe {j:3}: start phase {:7.1} us, took {:10.1} us, period {:10.1} us",
            (t0 % MS) as f64 / 1e3,
            (t1 - t0) as f64 / 1e3,
            (t1 - last) as f64 / 1e3
        );
        last = t1;
    }
    Ok(())
}

fn scale(procs: u32, seconds: u64, chunk: u64) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let start = now_ns() + 500 * MS;
    let children = (0..procs)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--dev",
                    &Device::instance_path(i).display().to_string(),
                    "link",
                ])
                .args([
                    "--seconds",
                    &seconds.to_string(),
                    "--chunk",
                    &chunk.to_string(),
                ])
                .args([
                    "--start-at",
                    &start.to_string(),
                    "--label",
                    &format!("scale{procs}"),
                ])
                .stdout(Stdio::piped())
                .spawn()
        })
        .collect::<io::Result<Vec<_>>>()?;
    let mut total = 0u64;
    let mut last = start;
    let mut sum_util = 0.0;
    for c in children {
        let out = c.wait_with_output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "a scale worker failed: {}",
                out.status
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        print!("{text}");
        let field = |k: &str| -> Option<f64> {
            let i = text.find(&format!("\"{k}\":"))? + k.len() + 3;
            let rest = &text[i..];
            rest[..rest.find([',', '}'])?].parse().ok()
        };
        let (Some(b), Some(t1), Some(u)) = (field("bytes"), field("t1_ns"), field("util")) else {
            return Err(io::Error::other("worker output without a link record"));
        };
        total += b as u64;
        last = last.max(t1 as u64);
        sum_util += u;
    }
    let secs = (last - start) as f64 / 1e9;
    let agg = total as f64 / secs;
    note!(
        "scale {procs}: {total} bytes over {secs:.3} s: {agg:.1} B/s aggregate = {:.4} x one device bound (sum of per-process utilisations {sum_util:.4})",
        agg / (WINDOW as f64 * 10.0)
    );
    Rec::new("scale")
        .u("procs", u64::from(procs))
        .u("bytes", total)
        .f("seconds", secs)
        .f("bytes_per_s", agg)
        .f("util_sum", sum_util)
        .emit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    #[test]
    fn sizes_use_the_library_parser() {
        super::Cli::command().debug_assert();
        let c = super::Cli::try_parse_from(["edu-bench", "sweep", "--sizes", "1,4K,16M"]);
        match c.map(|c| c.cmd) {
            Ok(super::Cmd::Sweep { sizes, .. }) => assert_eq!(sizes, [1, 4096, 16 << 20]),
            _ => panic!("sweep --sizes 1,4K,16M"),
        }
        assert!(super::Cli::try_parse_from(["edu-bench", "link", "--chunk", "4X"]).is_err());
    }
}
