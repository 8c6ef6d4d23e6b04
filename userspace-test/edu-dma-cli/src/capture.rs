//! `edudma capture` and `edudma replay`: device -> a ring of streaming buffers -> `O_DIRECT`
//! file, and back, with no CPU copy of the payload.
//!
//! capture: the device fills buffer i (DMA from its window into the buffer's pages) while a
//! second thread writes buffer i-1 to the file with `O_DIRECT` straight from the buffer's
//! mapping (the block layer pins those same pages); a buffer goes back to the device once its
//! write returned. replay is the reverse: `O_DIRECT` reads into the buffers, the device takes
//! each 4 KiB piece into its window. edu has no data source of its own: capture moves the window's
//! content, filled with a pattern first, so `--verify` checks that every 4 KiB block of the file
//! holds that pattern.
//!
//! Ownership: a buffer is handed to the CPU side (`SYNC_FOR_CPU`) before the disk thread gets it
//! and back to the device (`SYNC_FOR_DEVICE`) after a read filled it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use edu_dma::{describe_error, first_mismatch, pattern, BufKind, Device, Dir, Mapping, SyncDir};
use indicatif::{ProgressBar, ProgressStyle};

/// The device's window: one DMA command moves at most this much.
const WINDOW: u64 = edu_dma::uapi::EDU_DMA_WINDOW_SIZE as u64;
/// One DMA command of edu takes 100 ms of (guest) time: the device bound.
const COMMAND_SECS: f64 = 0.1;
/// Seed of the window pattern capture moves.
const SEED: u64 = 0xca97;

/// What a capture or replay is asked to do.
pub struct Job<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub buffers: usize,
    pub buffer_size: u64,
    pub verify: bool,
    pub progress: bool,
    /// capture: `fallocate` the whole file first (no block allocation at each write).
    pub prealloc: bool,
    /// capture: a third thread keeps a CPU busy while a disk write is outstanding (see
    /// [`Spinner`]).
    pub spin: bool,
}

/// Keeps a CPU busy while the writer waits for the disk. Under QEMU's `-icount sleep=off` clock
/// an idle guest's time jumps to its next timer: while the device runs a command that is at most
/// 100 ms ahead, but with the filling thread blocked (every buffer at the disk) and nothing but
/// the host's disk I/O pending, the clock jumps to whatever timer a tickless kernel has next,
/// seconds away, and the host's milliseconds of disk time count as that much guest time. A busy
/// CPU makes guest time advance by instructions instead while the disk works.
struct Spinner {
    writing: AtomicBool,
    done: AtomicBool,
}

impl Spinner {
    /// The spinning thread's loop: spins while `writing`, parks otherwise (the writer unparks).
    fn run(&self) {
        while !self.done.load(Ordering::Acquire) {
            if self.writing.load(Ordering::Acquire) {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
    }
}

/// The figures of a finished run.
pub struct Figures {
    pub bytes: u64,
    pub secs: f64,
    pub commands: u64,
    /// Where capture's time went (replay: `None`).
    pub phases: Option<Phases>,
}

/// Capture's time by phase (guest `CLOCK_MONOTONIC`, s), measured by each thread around its
/// calls: the filling thread's and the writing thread's sums each add up to about `secs`.
#[derive(Default, Clone, Copy)]
pub struct Phases {
    /// Filling thread: waiting for a buffer the disk is done with (the device idles meanwhile).
    pub fill_wait: f64,
    /// Filling thread: `SYNC_FOR_DEVICE` + `SYNC_FOR_CPU`.
    pub sync: f64,
    /// Filling thread: the `XFER` commands (device time: 100 ms each, plus the driver's part).
    pub xfer: f64,
    /// Writing thread: waiting for a full buffer.
    pub write_wait: f64,
    /// Writing thread: the `O_DIRECT` writes, their number and the longest.
    pub write: f64,
    pub writes: u64,
    pub write_max: f64,
    /// Writing thread: preallocating the file (`fallocate`, with `--prealloc`).
    pub prealloc: f64,
    /// Writing thread: the final `fsync`.
    pub fsync: f64,
    /// CPU time of the filling and of the writing thread (`RUSAGE_THREAD`, user + system): what
    /// a CPU copy of the payload would show up in.
    pub fill_cpu: f64,
    pub write_cpu: f64,
    /// Growth of the page cache (`Cached:` of /proc/meminfo) over the run, KiB: `O_DIRECT`
    /// bypasses it, a buffered write would add the payload.
    pub cached_kib: i64,
}

/// CPU time of the calling thread, s.
fn thread_cpu() -> f64 {
    // SAFETY: all-zero is a valid `rusage`.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `r` is a writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut r) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(r.ru_utime) + tv(r.ru_stime)
}

/// `Cached:` of /proc/meminfo, KiB (0 if unreadable).
fn page_cache_kib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("Cached:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

impl Figures {
    /// Time the device alone needs for these commands over the time the run took.
    pub fn fraction_of_bound(&self) -> f64 {
        self.commands as f64 * COMMAND_SECS / self.secs.max(1e-9)
    }
}

fn err(op: &str, e: io::Error) -> String {
    format!("{op}: {}", describe_error(&e))
}

fn check_job(job: &Job<'_>) -> Result<(), String> {
    if job.size == 0 || !job.size.is_multiple_of(WINDOW) {
        return Err(format!("--size must be a non-zero multiple of {WINDOW}"));
    }
    if job.buffers == 0 {
        return Err("--buffers must be at least 1".into());
    }
    if job.buffer_size == 0 || !job.buffer_size.is_multiple_of(WINDOW) {
        return Err(format!(
            "--buffer-size must be a non-zero multiple of {WINDOW}"
        ));
    }
    Ok(())
}

fn progress(job: &Job<'_>) -> ProgressBar {
    if !job.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(job.size);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// The pieces of the file, in order: (file offset, length), at most `buffer_size` each.
fn chunks(size: u64, buffer_size: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..size.div_ceil(buffer_size)).map(move |i| {
        let off = i * buffer_size;
        (off, buffer_size.min(size - off))
    })
}

/// The ring: `n` streaming buffers of `size` bytes and their mappings.
fn ring(
    dev: &Device,
    n: usize,
    size: u64,
) -> Result<(Vec<edu_dma::Buffer<'_>>, Vec<Mapping>), String> {
    let mut bufs = Vec::with_capacity(n);
    let mut maps = Vec::with_capacity(n);
    for _ in 0..n {
        let b = dev
            .alloc(size, BufKind::Streaming)
            .map_err(|e| err("alloc", e))?;
        maps.push(b.map().map_err(|e| err("mmap", e))?);
        bufs.push(b);
    }
    Ok((bufs, maps))
}

/// Moves `len` bytes between buffer `b` (from offset 0) and the window, 4 KiB per command.
fn through_window(b: &edu_dma::Buffer<'_>, len: u64, dir: Dir) -> io::Result<u64> {
    let mut off = 0;
    while off < len {
        let n = WINDOW.min(len - off);
        b.xfer(off, 0, n as u32, dir, 0)?;
        off += n;
    }
    Ok(len.div_ceil(WINDOW))
}

/// device -> ring -> `O_DIRECT` writes to `job.path`.
pub fn capture(dev: &Device, job: &Job<'_>) -> Result<Figures, String> {
    check_job(job)?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(job.path)
        .map_err(|e| err("open --out with O_DIRECT", e))?;
    let window = pattern(WINDOW as usize, SEED);
    dev.write_window_from(&window, 0)
        .map_err(|e| err("fill the window", e))?;
    let (bufs, maps) = ring(dev, job.buffers, job.buffer_size)?;
    let bar = progress(job);
    let cached = page_cache_kib();
    let start = Instant::now();
    let (full_tx, full_rx) = mpsc::channel::<(usize, u64, u64)>();
    let (free_tx, free_rx) = mpsc::channel::<usize>();
    for slot in 0..bufs.len() {
        let _ = free_tx.send(slot);
    }
    let mut commands = 0;
    let mut fill = Phases::default();
    let size = job.size;
    let prealloc = job.prealloc;
    let spinner = Spinner {
        writing: AtomicBool::new(false),
        done: AtomicBool::new(false),
    };
    let written = std::thread::scope(|s| -> Result<Phases, String> {
        let spin = job.spin.then(|| s.spawn(|| spinner.run()));
        let spin_thread = spin.as_ref().map(|h| h.thread().clone());
        let spinner = &spinner;
        let writer = s.spawn(move || -> Result<Phases, String> {
            let mut ph = Phases::default();
            let cpu = thread_cpu();
            if prealloc {
                let t = Instant::now();
                // SAFETY: a plain syscall on an open file descriptor.
                let r = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, size as libc::off_t) };
                if r != 0 {
                    return Err(err("fallocate", io::Error::last_os_error()));
                }
                ph.prealloc = t.elapsed().as_secs_f64();
            }
            let mut t = Instant::now();
            for (slot, off, len) in full_rx {
                ph.write_wait += t.elapsed().as_secs_f64();
                let data = maps.get(slot).ok_or("bad slot")?;
                let w = Instant::now();
                if let Some(t) = &spin_thread {
                    spinner.writing.store(true, Ordering::Release);
                    t.unpark();
                }
                let wrote = file.write_all_at(&data[..len as usize], off);
                spinner.writing.store(false, Ordering::Release);
                wrote.map_err(|e| err("O_DIRECT write", e))?;
                let took = w.elapsed().as_secs_f64();
                ph.write += took;
                ph.writes += 1;
                ph.write_max = ph.write_max.max(took);
                // The disk is done with the pages: the device may fill them again.
                let _ = free_tx.send(slot);
                t = Instant::now();
            }
            ph.write_wait += t.elapsed().as_secs_f64();
            let t = Instant::now();
            file.sync_all().map_err(|e| err("fsync", e))?;
            ph.fsync = t.elapsed().as_secs_f64();
            ph.write_cpu = thread_cpu() - cpu;
            Ok(ph)
        });
        let mut run_fill = || -> Result<(), String> {
            let cpu = thread_cpu();
            for (off, len) in chunks(job.size, job.buffer_size) {
                let t = Instant::now();
                let slot = free_rx
                    .recv()
                    .map_err(|_| "the writer stopped".to_string())?;
                fill.fill_wait += t.elapsed().as_secs_f64();
                let b = &bufs[slot];
                let t = Instant::now();
                b.sync(0, len, SyncDir::ForDevice)
                    .map_err(|e| err("sync", e))?;
                fill.sync += t.elapsed().as_secs_f64();
                let t = Instant::now();
                commands += through_window(b, len, Dir::FromDevice)
                    .map_err(|e| err("xfer from device", e))?;
                fill.xfer += t.elapsed().as_secs_f64();
                let t = Instant::now();
                b.sync(0, len, SyncDir::ForCpu)
                    .map_err(|e| err("sync", e))?;
                fill.sync += t.elapsed().as_secs_f64();
                full_tx
                    .send((slot, off, len))
                    .map_err(|_| "the writer stopped".to_string())?;
                bar.set_position(off + len);
            }
            fill.fill_cpu = thread_cpu() - cpu;
            Ok(())
        };
        let filled = run_fill();
        drop(full_tx);
        let written = writer.join().map_err(|_| "the writer panicked".to_string());
        spinner.done.store(true, Ordering::Release);
        if let Some(h) = spin {
            h.thread().unpark();
            h.join().map_err(|_| "the spinner panicked".to_string())?;
        }
        filled.and(written?)
    })?;
    let secs = start.elapsed().as_secs_f64();
    let cached = page_cache_kib() - cached;
    bar.finish_and_clear();
    if job.verify {
        verify_file(job.path, job.size, &window)?;
    }
    Ok(Figures {
        bytes: job.size,
        secs,
        commands,
        phases: Some(Phases {
            fill_wait: fill.fill_wait,
            sync: fill.sync,
            xfer: fill.xfer,
            fill_cpu: fill.fill_cpu,
            cached_kib: cached,
            ..written
        }),
    })
}

/// Every 4 KiB block of the file is `window`, and the file is `size` bytes long.
fn verify_file(path: &Path, size: u64, window: &[u8]) -> Result<(), String> {
    let f = File::open(path).map_err(|e| err("open for --verify", e))?;
    let len = f.metadata().map_err(|e| err("stat", e))?.len();
    if len != size {
        return Err(format!("verify: the file has {len} bytes, expected {size}"));
    }
    let mut block = vec![0u8; window.len()];
    for off in (0..size).step_by(window.len()) {
        f.read_exact_at(&mut block, off)
            .map_err(|e| err("read for --verify", e))?;
        if let Some(i) = first_mismatch(&block, window) {
            return Err(format!(
                "verify: byte {} of the file is {:#04x}, the device's window had {:#04x}",
                off + i as u64,
                block[i],
                window[i]
            ));
        }
    }
    Ok(())
}

/// `O_DIRECT` reads of `job.path` into the ring -> the device's window. With `verify`, each
/// 4 KiB piece is read back from the window and compared with the file's bytes.
pub fn replay(dev: &Device, job: &Job<'_>) -> Result<Figures, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(job.path)
        .map_err(|e| err("open --in with O_DIRECT", e))?;
    let size = file.metadata().map_err(|e| err("stat", e))?.len();
    let job = Job { size, ..*job };
    check_job(&job)?;
    let (bufs, maps) = ring(dev, job.buffers, job.buffer_size)?;
    let bar = progress(&job);
    let start = Instant::now();
    let (full_tx, full_rx) = mpsc::channel::<(usize, u64)>();
    let (free_tx, free_rx) = mpsc::channel::<(usize, Mapping)>();
    for (slot, m) in maps.into_iter().enumerate() {
        let _ = free_tx.send((slot, m));
    }
    let mut commands = 0;
    let mut back = vec![0u8; WINDOW as usize];
    std::thread::scope(|s| -> Result<(), String> {
        let (maps_tx, maps_rx) = mpsc::channel::<(usize, Mapping)>();
        let reader = s.spawn(move || -> Result<(), String> {
            for (off, len) in chunks(job.size, job.buffer_size) {
                let Ok((slot, mut m)) = free_rx.recv() else {
                    return Ok(());
                };
                file.read_exact_at(&mut m[..len as usize], off)
                    .map_err(|e| err("O_DIRECT read", e))?;
                if full_tx.send((slot, len)).is_err() || maps_tx.send((slot, m)).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let drain = || -> Result<(), String> {
            let mut off = 0;
            for (slot, len) in full_rx {
                let (mslot, m) = maps_rx
                    .recv()
                    .map_err(|_| "the reader stopped".to_string())?;
                if mslot != slot {
                    return Err("replay: ring out of order".into());
                }
                let b = &bufs[slot];
                b.sync(0, len, SyncDir::ForDevice)
                    .map_err(|e| err("sync", e))?;
                if job.verify {
                    let mut p = 0;
                    while p < len {
                        let n = WINDOW.min(len - p);
                        b.xfer(p, 0, n as u32, Dir::ToDevice, 0)
                            .map_err(|e| err("xfer to device", e))?;
                        dev.read_window_into(&mut back[..n as usize], 0)
                            .map_err(|e| err("read the window back", e))?;
                        let want = &m[p as usize..(p + n) as usize];
                        if let Some(i) = first_mismatch(&back[..n as usize], want) {
                            return Err(format!(
                                "verify: byte {} reached the device as {:#04x}, the file has {:#04x}",
                                off + p + i as u64,
                                back[i],
                                want[i]
                            ));
                        }
                        commands += 2;
                        p += n;
                    }
                } else {
                    commands += through_window(b, len, Dir::ToDevice)
                        .map_err(|e| err("xfer to device", e))?;
                }
                off += len;
                bar.set_position(off);
                // The reader may be done with the file already: then nobody needs the slot.
                let _ = free_tx.send((slot, m));
            }
            Ok(())
        };
        let drained = drain();
        drop(free_tx);
        let read = reader
            .join()
            .map_err(|_| "the reader panicked".to_string())?;
        drained.and(read)
    })?;
    bar.finish_and_clear();
    Ok(Figures {
        bytes: job.size,
        secs: start.elapsed().as_secs_f64(),
        commands,
        phases: None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_cover_the_file() {
        let c: Vec<_> = super::chunks(10 * 4096, 4 * 4096).collect();
        assert_eq!(c, [(0, 16384), (16384, 16384), (32768, 8192)]);
        assert_eq!(super::chunks(4096, 65536).count(), 1);
    }
}
