//! Group `onward` (opt-in: needs the disks of `scripts/vm --disk`, the ext4 one mounted at /mnt
//! by the job's `disk_mount`): zero-copy onward I/O from the driver's mapped buffers with the
//! kernel's own clients, every byte verified on the way pattern -> device -> buffer -> client ->
//! buffer -> device -> compare.
//!
//! - `direct`: `O_DIRECT` write from a streaming mapping to an ext4 file and to the raw scratch disk,
//!   `O_DIRECT` read back into another streaming mapping; unaligned address, length or offset give
//!   `EINVAL`.
//! - `zerocopy`: `send(MSG_ZEROCOPY)` over loopback TCP from a streaming mapping, the completion
//!   read from the error queue; `BUF_FREE` + `munmap` while the send still holds the pages.
//! - `splice`: `vmsplice` of a streaming mapping into a pipe, `splice` to an `O_DIRECT` file.
//! - `uring`: a streaming mapping registered with `IORING_REGISTER_BUFFERS`, `WRITE_FIXED` to an
//!   ext4 file; `READ`/`WRITE` (and their fixed forms) on the device node; unregister and
//!   `BUF_FREE` in both orders, nothing left pinned or charged.
//! - the same clients on a coherent mapping (`VM_IO | VM_PFNMAP`): each fails with the errno the
//!   kernel's GUP gives (measured: `EFAULT` everywhere), and nothing is left behind.
//! - `unbind`: edu-dma1 unbound while a `MSG_ZEROCOPY` send, an `O_DIRECT` write and a registered
//!   io_uring buffer use streaming pages; the data is intact. The same with a hot unplug is
//!   `unplug.onward_inflight` ([`unplug_inflight`]).
//!
//! `process_vm_readv` on both kinds is `buf.<kind>.gup_process_vm_readv`.
//!
//! Ownership (the DMA API's rule, as the README states it): `SYNC_FOR_CPU` after the device wrote
//! and before a client reads the mapping; `SYNC_FOR_DEVICE` after a client wrote it and before
//! the device reads. Under `swiotlb=force` a missing sync shows up as wrong bytes.

mod direct;
mod splice;
mod unbind;
pub(crate) mod uring;
mod zerocopy;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use edu_dma::{BufKind, Buffer, Device, Dir, Mapping, SyncDir};

use crate::harness::inflight::How;
use crate::harness::*;

/// `unplug.onward_inflight`: edu-dma2 hot-unplugged while the three clients hold streaming pages
/// of its buffers (see `unbind.rs`). In group `unplug`, whose boot has the disks.
pub fn unplug_inflight() -> TestResult {
    unbind::inflight(How::Unplug)
}

pub fn tests() -> Vec<Test> {
    vec![
        test("streaming.odirect_file", direct::streaming_file),
        test("streaming.odirect_blockdev", direct::streaming_blockdev),
        test("streaming.odirect_unaligned", direct::unaligned),
        test("streaming.zerocopy_send", zerocopy::streaming_send),
        test(
            "streaming.zerocopy_free_before_completion",
            zerocopy::free_before_completion,
        ),
        test("streaming.vmsplice", splice::streaming),
        test("streaming.uring_write_fixed", uring::write_fixed),
        test("streaming.uring_node_rw", uring::node_rw),
        test("streaming.uring_unregister_then_free", || {
            uring::free_order(uring::Order::UnregisterFirst)
        }),
        test("streaming.uring_free_then_unregister", || {
            uring::free_order(uring::Order::FreeFirst)
        }),
        test("coherent.odirect_file", direct::coherent_file),
        test("coherent.odirect_blockdev", direct::coherent_blockdev),
        test("coherent.zerocopy_send", zerocopy::coherent_send),
        test("coherent.vmsplice", splice::coherent),
        test("coherent.uring", uring::coherent),
        test("unbind_inflight", || unbind::inflight(How::Unbind)),
    ]
}

/// edu's DMA window: one device command moves at most this much.
pub const WIN: usize = 4096;
/// The buffers' size: four pages, four device commands each way.
pub const LEN: usize = 4 * WIN;

/// `EXT4_SUPER_MAGIC`.
const EXT4_MAGIC: i64 = 0xEF53;

/// The directory on the ext4 disk the tests write in: `$EDU_TEST_ONWARD_DIR`, else `/mnt`. Fails
/// unless it is on ext4 (a tmpfs file would take `O_DIRECT` without any DMA, and prove nothing).
pub fn ext4_dir() -> Result<PathBuf, String> {
    let dir = PathBuf::from(std::env::var("EDU_TEST_ONWARD_DIR").unwrap_or("/mnt".to_string()));
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    // SAFETY: all-zero is a valid `statfs`.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a writable statfs.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!(
            "statfs {}: {} (is the disk of scripts/vm --disk mounted? the job's disk_mount)",
            dir.display(),
            io::Error::last_os_error()
        ));
    }
    ensure(st.f_type as i64 == EXT4_MAGIC, || {
        format!(
            "{} is not on ext4 (f_type {:#x}): mount the disk of scripts/vm --disk there",
            dir.display(),
            st.f_type
        )
    })?;
    Ok(dir)
}

/// The scratch disk of `scripts/vm --disk`: the block device whose serial is `edu-scratch`
/// (never the ext4 disk, whatever the probe order).
pub fn scratch_disk() -> Result<PathBuf, String> {
    let entries = std::fs::read_dir("/sys/block").ctx("read /sys/block")?;
    for e in entries.flatten() {
        let serial = std::fs::read_to_string(e.path().join("serial")).unwrap_or_default();
        if serial.trim() == "edu-scratch" {
            return Ok(Path::new("/dev").join(e.file_name()));
        }
    }
    Err("no block device with serial edu-scratch (boot with scripts/vm --disk)".to_string())
}

/// Opens `path` read-write with `O_DIRECT` (creating and truncating a regular file).
pub fn open_direct(path: &Path, create: bool) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(create)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(path)
        .ctx(format!("open {} O_DIRECT", path.display()))
}

/// A file on the ext4 disk, opened `O_DIRECT`, empty.
pub fn ext4_file(name: &str) -> Result<(File, PathBuf), String> {
    let path = ext4_dir()?.join(name);
    Ok((open_direct(&path, true)?, path))
}

/// A driver buffer and its whole mapping.
pub struct Mapped<'d> {
    pub buf: Buffer<'d>,
    pub map: Mapping,
}

impl Mapped<'_> {
    pub fn dev(&self) -> &Device {
        self.buf.device()
    }

    /// The first `len` bytes of the mapping as an iovec (for the clients' raw calls).
    pub fn iovec(&self, len: usize) -> libc::iovec {
        libc::iovec {
            iov_base: self.map.as_ptr().cast(),
            iov_len: len.min(self.map.len()),
        }
    }
}

/// A buffer of `len` bytes of `kind`, mapped, filled by the device with the pattern of `seed`
/// (window := pattern by USER_XFER, then XFER window -> buffer, one page at a time), and, for a
/// streaming buffer, handed to the CPU (`SYNC_FOR_CPU`): ready for a client to read. The CPU's
/// view is checked, so a client gets exactly the pattern.
pub fn device_filled(
    dev: &Device,
    kind: BufKind,
    len: usize,
    seed: u64,
) -> Result<Mapped<'_>, String> {
    let buf = dev
        .alloc(len as u64, kind)
        .ctx(format!("alloc {}", kind.name()))?;
    let map = buf.map().ctx("mmap")?;
    let p = pattern(len, seed);
    for (i, chunk) in p.chunks(WIN).enumerate() {
        dev.write_window_from(chunk, 0)
            .ctx("USER_XFER pattern -> window")?;
        buf.xfer((i * WIN) as u64, 0, chunk.len() as u32, Dir::FromDevice, 0)
            .ctx(format!("XFER window -> buffer page {i}"))?;
    }
    if kind == BufKind::Streaming {
        buf.sync(0, len as u64, SyncDir::ForCpu)
            .ctx("SYNC_FOR_CPU")?;
    }
    check_pattern(
        &map[..len],
        seed,
        "the device-filled buffer, as the CPU sees it",
    )?;
    Ok(Mapped { buf, map })
}

/// A streaming buffer of `len` bytes for a client to write into: CPU-owned (`SYNC_FOR_CPU`) and
/// filled with the inverse of `expected`, so that bytes the client did not write cannot pass.
pub fn client_target<'d>(dev: &'d Device, expected: &[u8]) -> Result<Mapped<'d>, String> {
    let len = expected.len();
    let buf = dev
        .alloc(len as u64, BufKind::Streaming)
        .ctx("alloc streaming")?;
    buf.sync(0, len as u64, SyncDir::ForCpu)
        .ctx("SYNC_FOR_CPU")?;
    let mut map = buf.map().ctx("mmap")?;
    for (d, e) in map.iter_mut().zip(expected) {
        *d = !e;
    }
    Ok(Mapped { buf, map })
}

/// What a client wrote into a streaming buffer, checked by the device: `SYNC_FOR_DEVICE`, then
/// for each page: window := the inverse of what is expected, XFER buffer -> window, read the
/// window back and compare with `expected` (so a transfer that moved nothing cannot pass).
pub fn verify_via_device(m: &Mapped<'_>, expected: &[u8], what: &str) -> TestResult {
    let dev = m.dev();
    let len = expected.len();
    m.buf
        .sync(0, len as u64, SyncDir::ForDevice)
        .ctx(format!("{what}: SYNC_FOR_DEVICE"))?;
    let mut back = vec![0u8; WIN];
    for (i, want) in expected.chunks(WIN).enumerate() {
        let n = want.len();
        let inv: Vec<u8> = want.iter().map(|b| !b).collect();
        dev.write_window_from(&inv, 0)
            .ctx(format!("{what}: window := inverse"))?;
        m.buf
            .xfer((i * WIN) as u64, 0, n as u32, Dir::ToDevice, 0)
            .ctx(format!("{what}: XFER buffer page {i} -> window"))?;
        dev.read_window_into(&mut back[..n], 0)
            .ctx(format!("{what}: read the window"))?;
        check_same(
            &back[..n],
            want,
            &format!("{what}: page {i} as the device read it"),
        )?;
    }
    Ok(())
}

/// `len = expected.len()` bytes of `f` at `off`, read `O_DIRECT` into a [`client_target`] of `dev`
/// (every byte of it must come) and checked by the device ([`verify_via_device`]).
pub fn verify_file(dev: &Device, f: &File, off: u64, expected: &[u8], what: &str) -> TestResult {
    let len = expected.len();
    let mut dst = client_target(dev, expected)?;
    let n = f
        .read_at(&mut dst.map[..len], off)
        .ctx(format!("{what}: O_DIRECT read back"))?;
    ensure_eq(n, len, &format!("{what}: bytes read"))?;
    verify_via_device(&dst, expected, what)
}

/// How the kernel mapped a coherent buffer into this process, which decides what the clients
/// can do with it (measured in the boots of `make check`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Backing {
    /// `VM_IO | VM_PFNMAP` (dma-direct: `remap_pfn_range`, special PTEs): GUP-fast refuses the
    /// PTEs and slow GUP the VMA, so every client gets `EFAULT`.
    Pfn,
    /// `VM_IO | VM_MIXEDMAP` over ordinary pages (the IOMMU backend: `vm_map_pages`): GUP-fast
    /// takes the pages without looking at the VMA, so `O_DIRECT`, `MSG_ZEROCOPY`, `vmsplice` and
    /// the node's read/write work, and so do the driver's own `USER_XFER`/`COPY` (GUP-fast
    /// first, `pin_user_pages_fast`); long-term pins (`IORING_REGISTER_BUFFERS`) and slow GUP
    /// (`process_vm_readv`, or a PTE GUP-fast cannot take) still check the VMA: `EFAULT`.
    Pages,
}

/// The [`Backing`] of the coherent mapping `m` of edu-dma0, from its VMA's `VmFlags` in
/// /proc/self/smaps (`pf` or `mm`), checked against the DMA backend of the boot: pages exactly
/// when edu-dma0 sits behind an IOMMU.
pub fn coherent_backing(m: &Mapping) -> Result<Backing, String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").ctx("read /proc/self/smaps")?;
    let start = m.as_ptr() as u64;
    let mut inside = false;
    let mut flags = None;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, _)) = range.split_once('-') {
                if let Ok(a) = u64::from_str_radix(a, 16) {
                    inside = a == start;
                    continue;
                }
            }
        }
        if inside {
            if let Some(f) = line.strip_prefix("VmFlags:") {
                flags = Some(f.split_whitespace().map(str::to_string).collect::<Vec<_>>());
                break;
            }
        }
    }
    let flags = flags.ok_or_else(|| format!("no VmFlags for the mapping at {start:#x}"))?;
    let has = |f: &str| flags.iter().any(|x| x == f);
    ensure(has("io"), || {
        format!("coherent mapping without VM_IO: {flags:?}")
    })?;
    let backing = match (has("pf"), has("mm")) {
        (true, false) => Backing::Pfn,
        (false, true) => Backing::Pages,
        _ => {
            return Err(format!(
                "coherent mapping VmFlags {flags:?}: neither pf nor mm"
            ))
        }
    };
    let addr = open(0)?.info().ctx("info")?.pci_address();
    let iommu = Path::new(&format!("/sys/bus/pci/devices/{addr}/iommu_group")).exists();
    ensure(iommu == (backing == Backing::Pages), || {
        format!(
            "coherent mapping is {backing:?} with{} an IOMMU",
            if iommu { "" } else { "out" }
        )
    })?;
    Ok(backing)
}

/// A syscall's `ssize_t` result as `io::Result`.
pub fn cvt(r: isize) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `setsockopt(fd, level, name, &val)` for an `int` option.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, val: i32) -> io::Result<()> {
    // SAFETY: `val` is a readable int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&val as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    cvt(r as isize).map(|_| ())
}

/// How many 1 MiB streaming buffers a new file of edu-dma`d` can allocate before the device's
/// or the file's budget answers `ENOMEM`. Compared before and after a test: a charge the test left
/// behind (even one page) makes the last allocation fail, the budgets being whole MiB.
pub fn budget_mib(d: u32) -> Result<u64, String> {
    let dev = open(d)?;
    let mut held = Vec::new();
    for _ in 0..1024 {
        match dev.alloc(1 << 20, BufKind::Streaming) {
            Ok(b) => held.push(b),
            Err(e) => {
                expect_errno(
                    Err::<(), _>(e),
                    libc::ENOMEM,
                    "the allocation past the budget",
                )?;
                return Ok(held.len() as u64);
            }
        }
    }
    Err("1024 allocations of 1 MiB: no budget".to_string())
}
