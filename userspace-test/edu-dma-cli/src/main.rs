//! `edudma`: command-line tool for the edu-dma driver.

mod capture;
mod share;

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use edu_dma::{
    describe_error, fill_pattern, first_mismatch, parse_size, pattern, uapi, BufKind, Device, Dir,
    Queue, SyncDir,
};
use indicatif::{ProgressBar, ProgressStyle};
use uapi::{EduDmaCqe, EduDmaReq};

#[derive(Parser)]
#[command(
    name = "edudma",
    version,
    about = "Drive the edu-dma device from userspace"
)]
struct Cli {
    /// Device node.
    #[arg(long, global = true, default_value = "/dev/edu-dma0")]
    dev: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Identity and counters of the device.
    Info {
        /// Every /dev/edu-dma* device.
        #[arg(long)]
        all: bool,
    },
    /// n! computed by the device.
    Factorial {
        /// 0..=12.
        n: u32,
    },
    /// Round trip through a driver buffer: buffer -> window -> second buffer.
    Buf {
        #[arg(long, value_enum, default_value_t = Kind::Coherent)]
        kind: Kind,
        /// Bytes (K/M/G suffixes accepted).
        #[arg(long, default_value = "4096", value_parser = parse_size)]
        size: u64,
    },
    /// User memory -> user memory through the device's copy engine.
    Copy {
        /// Bytes (K/M/G suffixes accepted).
        #[arg(long, default_value = "1M", value_parser = parse_size)]
        size: u64,
        /// Bytes per COPY ioctl (K/M/G suffixes accepted).
        #[arg(long, default_value = "64K", value_parser = parse_size)]
        chunk: u64,
        /// Run the chunks on the asynchronous queue, this many in flight (0: one COPY ioctl
        /// at a time). A queued chunk is at most `pin_window` pages (1 MiB by default).
        #[arg(long, default_value_t = 0)]
        queue_depth: usize,
    },
    /// Device -> a ring of streaming buffers -> O_DIRECT writes to a file, the disk write of one
    /// buffer overlapped with the device filling the next (edu has no data source: it moves its
    /// window, filled with a pattern first).
    Capture {
        /// File to write (O_DIRECT: on a file system or block device that supports it).
        #[arg(long)]
        out: PathBuf,
        /// Bytes to capture, a multiple of 4 KiB (K/M/G suffixes accepted).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        ring: Ring,
        /// Read the file back and check every byte against the window's pattern.
        #[arg(long)]
        verify: bool,
        /// Preallocate the whole file (fallocate) before the first write.
        #[arg(long)]
        prealloc: bool,
        /// Also print where the time went (waits, DMA commands, writes, fsync).
        #[arg(long)]
        timings: bool,
        /// Keep a CPU busy while a disk write is outstanding (for an emulated clock that skips
        /// idle time: QEMU's -icount sleep=off).
        #[arg(long)]
        spin: bool,
    },
    /// The reverse of capture: O_DIRECT reads of a file into the ring -> the device's window.
    Replay {
        /// File to read (O_DIRECT); its size must be a multiple of 4 KiB.
        #[arg(long = "in")]
        input: PathBuf,
        #[command(flatten)]
        ring: Ring,
        /// Read each 4 KiB piece back from the window and compare it with the file.
        #[arg(long)]
        verify: bool,
    },
    /// Cross-device zero-copy: a streaming buffer of --from exported as a dma-buf, imported by
    /// --to; --from writes a pattern into it by DMA, --to reads it back by DMA, verified.
    Share {
        /// Exporting device.
        #[arg(long, default_value = "/dev/edu-dma0")]
        from: PathBuf,
        /// Importing device.
        #[arg(long, default_value = "/dev/edu-dma1")]
        to: PathBuf,
        /// Bytes, a multiple of 4 KiB (K/M/G suffixes accepted).
        #[arg(long, default_value = "16K", value_parser = parse_size)]
        size: u64,
    },
    /// Fault injection: the next N DMA commands raise no interrupt.
    Fault {
        #[arg(long)]
        drop_irqs: u32,
    },
    /// Print the uapi layout (compared with the C header by uapi-check/run.sh).
    #[command(hide = true)]
    UapiLayout,
}

/// The buffer ring of capture and replay.
#[derive(clap::Args)]
struct Ring {
    /// Streaming buffers in the ring.
    #[arg(long, default_value_t = 4)]
    buffers: usize,
    /// Bytes per buffer, a multiple of 4 KiB (K/M/G suffixes accepted).
    #[arg(long, default_value = "64K", value_parser = parse_size)]
    buffer_size: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Coherent,
    Streaming,
}

impl From<Kind> for BufKind {
    fn from(k: Kind) -> BufKind {
        match k {
            Kind::Coherent => BufKind::Coherent,
            Kind::Streaming => BufKind::Streaming,
        }
    }
}

/// A failed operation: `edudma: <op>: <message>`.
struct Failure {
    op: &'static str,
    msg: String,
}

trait Op<T> {
    fn op(self, op: &'static str) -> Result<T, Failure>;
}

impl<T> Op<T> for io::Result<T> {
    fn op(self, op: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure {
            op,
            msg: describe_error(&e),
        })
    }
}

impl Failure {
    fn new(op: &'static str, e: io::Error) -> Self {
        Failure {
            op,
            msg: describe_error(&e),
        }
    }

    fn msg(op: &'static str, msg: String) -> Self {
        Failure { op, msg }
    }
}

fn fail<T>(op: &'static str, msg: String) -> Result<T, Failure> {
    Err(Failure { op, msg })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("edudma: {}: {}", f.op, f.msg);
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.cmd {
        Cmd::UapiLayout => {
            print!("{}", edu_dma::uapi_layout_report());
            Ok(())
        }
        Cmd::Info { all } => {
            let paths = if *all {
                let list = Device::list().op("list")?;
                if list.is_empty() {
                    return fail("list", "no /dev/edu-dma* device".to_string());
                }
                list
            } else {
                vec![cli.dev.clone()]
            };
            for (i, p) in paths.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                let dev = Device::open(p).op("open")?;
                print_info(&dev, &dev.info().op("info")?);
            }
            Ok(())
        }
        Cmd::Factorial { n } => {
            let dev = Device::open(&cli.dev).op("open")?;
            let r = dev.factorial(*n).op("factorial")?;
            println!("{n}! = {r}");
            Ok(())
        }
        Cmd::Buf { kind, size } => buf_demo(&Device::open(&cli.dev).op("open")?, *kind, *size),
        Cmd::Copy {
            size,
            chunk,
            queue_depth,
        } => copy_demo(
            &Device::open(&cli.dev).op("open")?,
            *size,
            *chunk,
            *queue_depth,
        ),
        Cmd::Capture {
            out,
            size,
            ring,
            verify,
            prealloc,
            timings,
            spin,
        } => {
            let dev = Device::open(&cli.dev).op("open")?;
            let job = capture::Job {
                path: out,
                size: *size,
                buffers: ring.buffers,
                buffer_size: ring.buffer_size,
                verify: *verify,
                progress: !ring.quiet,
                prealloc: *prealloc,
                spin: *spin,
            };
            let f = capture::capture(&dev, &job).or_else(|m| fail("capture", m))?;
            report("capture", &f, *verify);
            if let (true, Some(p)) = (*timings, f.phases) {
                // Guest seconds (write_max: the longest write), key=value for scripts.
                println!(
                    "capture timings: fill_wait={:.3} sync={:.3} xfer={:.3} write_wait={:.3} \
                     prealloc={:.3} writes={} write={:.3} write_max={:.4} fsync={:.3} \
                     fill_cpu={:.3} write_cpu={:.3} cached_kib={}",
                    p.fill_wait,
                    p.sync,
                    p.xfer,
                    p.write_wait,
                    p.prealloc,
                    p.writes,
                    p.write,
                    p.write_max,
                    p.fsync,
                    p.fill_cpu,
                    p.write_cpu,
                    p.cached_kib
                );
            }
            Ok(())
        }
        Cmd::Replay {
            input,
            ring,
            verify,
        } => {
            let dev = Device::open(&cli.dev).op("open")?;
            let job = capture::Job {
                path: input,
                size: 0,
                buffers: ring.buffers,
                buffer_size: ring.buffer_size,
                verify: *verify,
                progress: !ring.quiet,
                prealloc: false,
                spin: false,
            };
            let f = capture::replay(&dev, &job).or_else(|m| fail("replay", m))?;
            report("replay", &f, *verify);
            Ok(())
        }
        Cmd::Share { from, to, size } => share::share(from, to, *size),
        Cmd::Fault { drop_irqs } => {
            let dev = Device::open(&cli.dev).op("open")?;
            dev.inject_fault(*drop_irqs).op("fault")?;
            println!("the next {drop_irqs} DMA command(s) will raise no interrupt");
            Ok(())
        }
    }
}

fn report(what: &str, f: &capture::Figures, verified: bool) {
    println!(
        "{what}: {} bytes{} in {:.3} s, {} DMA commands, {:.1} KiB/s, {:.4} of the device bound",
        f.bytes,
        if verified { " verified" } else { "" },
        f.secs,
        f.commands,
        f.bytes as f64 / 1024.0 / f.secs.max(1e-9),
        f.fraction_of_bound()
    );
}

fn print_info(dev: &Device, i: &edu_dma::Info) {
    println!("device:        {}", dev.path().display());
    println!(
        "identity:      {:#010x} (version {}.{})",
        i.ident, i.version_major, i.version_minor
    );
    println!("instance:      {}", i.instance);
    println!("pci address:   {}", i.pci_address());
    println!("irq mode:      {}", i.irq_mode_name());
    println!("dma mask bits: {}", i.dma_mask_bits);
    println!("window size:   {}", i.window_size);
    let coherent = if i.is_dma_coherent() {
        "yes"
    } else {
        "no (the kernel does cache maintenance)"
    };
    println!("dma coherent:  {coherent}");
    println!("irq count:     {}", i.irq_count);
    println!("dma count:     {}", i.dma_count);
    println!("dma bytes:     {}", i.dma_bytes);
    println!("fact count:    {}", i.fact_count);
    println!("timeouts:      {}", i.timeout_count);
}

fn buf_demo(dev: &Device, kind: Kind, size: u64) -> Result<(), Failure> {
    if size == 0 {
        return fail("buf", "size must be at least 1".to_string());
    }
    let kind = BufKind::from(kind);
    let len = usize::try_from(size).or_else(|_| fail("buf", "size too large".to_string()))?;
    let src = dev.alloc(size, kind).op("alloc")?;
    let dst = dev.alloc(size, kind).op("alloc")?;
    let mut src_map = src.map().op("mmap")?;
    let mut dst_map = dst.map().op("mmap")?;
    fill_pattern(&mut src_map[..len], 0xed);
    dst_map[..len].fill(0);
    let start = Instant::now();
    src.sync(0, size, SyncDir::ForDevice).op("sync")?;
    dst.sync(0, size, SyncDir::ForDevice).op("sync")?;
    let win = u64::from(uapi::EDU_DMA_WINDOW_SIZE);
    let mut off = 0u64;
    while off < size {
        let count = (size - off).min(win) as u32;
        src.xfer(off, 0, count, Dir::ToDevice, 0)
            .op("xfer to device")?;
        dst.xfer(off, 0, count, Dir::FromDevice, 0)
            .op("xfer from device")?;
        off += u64::from(count);
    }
    dst.sync(0, size, SyncDir::ForCpu).op("sync")?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(i) = first_mismatch(&src_map[..len], &dst_map[..len]) {
        return fail(
            "buf",
            format!(
                "data mismatch at byte {i}: wrote {:#04x}, read {:#04x}",
                src_map[i], dst_map[i]
            ),
        );
    }
    println!(
        "buf: {} {} bytes round trip ok (handles {}, {}) in {:.3} s",
        kind.name(),
        size,
        src.handle(),
        dst.handle(),
        secs
    );
    drop(src_map);
    drop(dst_map);
    src.free().op("free")?;
    dst.free().op("free")?;
    Ok(())
}

fn copy_demo(dev: &Device, size: u64, chunk: u64, depth: usize) -> Result<(), Failure> {
    if size == 0 || chunk == 0 {
        return fail("copy", "size and chunk must be at least 1".to_string());
    }
    let len = usize::try_from(size).or_else(|_| fail("copy", "size too large".to_string()))?;
    let src = pattern(len, 0x5eed);
    let mut dst = vec![0u8; len];
    let bar = ProgressBar::new(size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let mut off = 0usize;
    if depth > 0 {
        copy_queued(dev, &src, &mut dst, chunk as usize, depth, &bar)?;
        off = len;
    }
    while off < len {
        let n = (len - off).min(chunk as usize);
        let done = dev
            .copy(&src[off..off + n], &mut dst[off..off + n])
            .op("copy")?;
        if done != n as u64 {
            bar.abandon();
            return fail("copy", format!("done {done} != len {n} at offset {off}"));
        }
        off += n;
        bar.set_position(off as u64);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if let Some(i) = first_mismatch(&src, &dst) {
        return fail(
            "copy",
            format!(
                "data mismatch at byte {i}: {:#04x} != {:#04x}",
                src[i], dst[i]
            ),
        );
    }
    println!(
        "copy: {size} bytes verified in {secs:.3} s ({:.1} KiB/s)",
        size as f64 / 1024.0 / secs.max(1e-9)
    );
    Ok(())
}

/// `copy --queue-depth`: the chunks as queued COPY requests, up to `depth` in flight; every
/// request is reaped before this returns (the device writes `dst` until then), also on errors.
fn copy_queued(
    dev: &Device,
    src: &[u8],
    dst: &mut [u8],
    chunk: usize,
    depth: usize,
    bar: &ProgressBar,
) -> Result<(), Failure> {
    let q = Queue::new(dev);
    let len = src.len();
    let dst_addr = dst.as_mut_ptr() as u64;
    let (mut next, mut inflight) = (0usize, 0usize);
    let mut err: Option<Failure> = None;
    let mut cqes = vec![EduDmaCqe::default(); depth];
    while (next < len && err.is_none()) || inflight > 0 {
        while next < len && inflight < depth && err.is_none() {
            let n = (len - next).min(chunk);
            let r = EduDmaReq::copy_user(
                next as u64,
                src.as_ptr() as u64 + next as u64,
                dst_addr + next as u64,
                n as u64,
            );
            // SAFETY: `src` and `dst` outlive every request (all are reaped before this
            // returns), and `dst` is not accessed until then.
            match unsafe { q.submit(&[r]) } {
                Ok(_) => {
                    next += n;
                    inflight += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => err = Some(Failure::new("submit", e)),
            }
        }
        if inflight == 0 {
            break;
        }
        let got = match q.reap(&mut cqes, 1, 0) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::new("reap", e)),
        };
        for c in &cqes[..got] {
            inflight -= 1;
            let want = (len - c.cookie as usize).min(chunk) as u64;
            if let Err(errno) = c.result() {
                err.get_or_insert(Failure::new("copy", io::Error::from_raw_os_error(errno)));
            } else if c.done != want {
                err.get_or_insert(Failure::msg(
                    "copy",
                    format!("done {} != len {want} at offset {}", c.done, c.cookie),
                ));
            }
            bar.inc(c.done);
        }
    }
    match err {
        Some(e) => {
            bar.abandon();
            Err(e)
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_use_the_library_parser() {
        use clap::Parser;
        let c = super::Cli::try_parse_from(["edudma", "copy", "--size", "16M", "--chunk", "4K"]);
        match c.map(|c| c.cmd) {
            Ok(super::Cmd::Copy { size, chunk, .. }) => {
                assert_eq!((size, chunk), (16 << 20, 4096))
            }
            _ => panic!("copy --size 16M --chunk 4K"),
        }
        let e = super::Cli::try_parse_from(["edudma", "buf", "--size", "12X"])
            .err()
            .expect("bad suffix refused");
        assert!(e.to_string().contains("suffix"), "{e}");
        assert!(super::Cli::try_parse_from(["edudma", "copy", "--size", "99999999999G"]).is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::{CommandFactory, Parser};
        let c = super::Cli::try_parse_from([
            "edudma",
            "--dev",
            "/dev/edu-dma1",
            "copy",
            "--size",
            "16M",
        ]);
        assert!(c.is_ok());
        let c =
            super::Cli::try_parse_from(["edudma", "buf", "--kind", "streaming", "--size", "8K"]);
        assert!(c.is_ok());
        let c = super::Cli::try_parse_from([
            "edudma",
            "share",
            "--from",
            "/dev/edu-dma0",
            "--to",
            "/dev/edu-dma1",
        ]);
        assert!(matches!(
            c,
            Ok(super::Cli {
                cmd: super::Cmd::Share { size: 16384, .. },
                ..
            })
        ));
        super::Cli::command().debug_assert();
    }
}
