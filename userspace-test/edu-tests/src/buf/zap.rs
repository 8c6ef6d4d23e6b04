//! Group `buf`, zapped mappings: `madvise(MADV_DONTNEED)` on a mapped buffer, then reads, writes
//! and DMA through it, a partial range, fork and mremap after it, and the same after the buffer
//! is freed and its file closed.
//!
//! What a zap does depends on the memory behind the mapping ([`Zap`]): streaming pages come back
//! on the next access (the driver's fault handler), coherent memory is device memory mapped by
//! the DMA backend without a fault handler: dma-direct maps PFNs (`VM_PFNMAP`), which `madvise`
//! refuses with `EINVAL`; iommu-dma maps its pages (`VM_MIXEDMAP`), which `madvise` zaps for
//! good (later accesses of that mapping get `SIGBUS`; a new `mmap` maps the memory again, intact).

use std::io;

use edu_dma::{BufKind, Device, Dir, Mapping, SyncDir};

use crate::harness::madvise_dontneed;

use crate::harness::*;

/// What `MADV_DONTNEED` does to a mapping of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zap {
    /// Streaming pages behind the driver's fault handler (`VM_MIXEDMAP`): the range is zapped
    /// and every later access faults the buffer's own page back in.
    Refault,
    /// Coherent memory through dma-direct (`remap_pfn_range`: `VM_PFNMAP`): `madvise` refuses
    /// with `EINVAL` and the mapping stays as it was.
    Refused,
    /// Coherent memory through iommu-dma (`vm_map_pages`: `VM_MIXEDMAP`, no fault handler): the
    /// range is zapped and stays so; an access raises `SIGBUS`.
    Gone,
}

impl Zap {
    /// The behaviour for `kind` on this boot, and the `/proc/self/smaps` flag that makes it so
    /// (`mm` `VM_MIXEDMAP`, `pf` `VM_PFNMAP`).
    fn of(kind: BufKind) -> Result<(Zap, &'static str), String> {
        Ok(match kind {
            BufKind::Streaming => (Zap::Refault, "mm"),
            BufKind::Coherent if iommu_dma()? => (Zap::Gone, "mm"),
            BufKind::Coherent => (Zap::Refused, "pf"),
        })
    }
}

/// Whether edu-dma0's DMA goes through an IOMMU translation domain (iommu-dma), not dma-direct.
fn iommu_dma() -> Result<bool, String> {
    let addr = open(0)?.info().ctx("info")?.pci_address();
    let path = format!("/sys/bus/pci/devices/{addr}/iommu_group/type");
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().starts_with("DMA")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!("read {path}: {e}")),
    }
}

pub fn tests() -> Vec<Test> {
    let mut v = Vec::new();
    for kind in super::KINDS {
        let k = kind.name();
        v.push(test(format!("{k}.dontneed_read"), move || {
            dontneed_read(kind)
        }));
        v.push(test(format!("{k}.dontneed_write_dma"), move || {
            dontneed_write_dma(kind)
        }));
        v.push(test(format!("{k}.dontneed_partial"), move || {
            dontneed_partial(kind)
        }));
        v.push(test(format!("{k}.dontneed_fork"), move || {
            dontneed_fork(kind)
        }));
        v.push(test(format!("{k}.dontneed_after_close"), move || {
            dontneed_after_close(kind)
        }));
    }
    v.push(test("streaming.dontneed_mremap", dontneed_mremap));
    v
}

/// `madvise(MADV_DONTNEED)` of `[m + off, m + off + len)`.
fn dontneed(m: &Mapping, off: usize, len: usize) -> io::Result<()> {
    madvise_dontneed(m.as_ptr() as usize + off, len)
}

/// `madvise(MADV_DONTNEED)` of `len` bytes at `addr`; `None` when the kernel has no `madvise`
/// (`CONFIG_ADVISE_SYSCALLS` off: `ENOSYS`), to skip.
pub(crate) fn probe_dontneed(addr: usize, len: usize) -> Option<io::Result<()>> {
    match madvise_dontneed(addr, len) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
        r => Some(r),
    }
}

pub(crate) const NO_MADVISE: &str = "madvise: ENOSYS (CONFIG_ADVISE_SYSCALLS off)";

/// Checks the `madvise` result against `zap` (`EINVAL` for [`Zap::Refused`], success else).
fn expect_madvise(r: io::Result<()>, zap: Zap, what: &str) -> TestResult {
    match zap {
        Zap::Refused => expect_errno(r, libc::EINVAL, &format!("{what} (VM_PFNMAP)")),
        Zap::Refault | Zap::Gone => r.ctx(what),
    }
}

/// The VMA flags (`/proc/self/smaps` `VmFlags`) of the mapping that starts at `addr`.
pub(crate) fn vm_flags(addr: usize) -> Result<Vec<String>, String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").map_err(|e| format!("smaps: {e}"))?;
    let head = format!("{addr:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&head));
    lines
        .next()
        .ok_or_else(|| format!("no smaps entry at {addr:#x}"))?;
    // VmFlags is the last line of an entry: the first one after the header is this mapping's.
    let flags = lines
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .ok_or_else(|| format!("no VmFlags for the mapping at {addr:#x}"))?;
    Ok(flags.split_whitespace().map(str::to_string).collect())
}

/// Checks that the mapping's VMA has `flag` (and, for `mm`, not `pf`): the reason for `zap`.
fn expect_flag(m: &Mapping, zap: Zap, flag: &str) -> TestResult {
    let flags = vm_flags(m.as_ptr() as usize)?;
    ensure(
        flags.iter().any(|f| f == flag) && (flag == "pf" || !flags.iter().any(|f| f == "pf")),
        || format!("VmFlags {flags:?}: expected {flag} ({zap:?})"),
    )
}

/// Whether each page of `[addr + off, addr + off + pages * page)` has a page table entry
/// (`mincore`: for a device file nothing is in a page cache, so 1 means mapped; meaningless for a
/// `VM_PFNMAP` VMA, which the page walk skips: always 0).
pub(crate) fn mapped_pages(m: &Mapping, off: usize, pages: usize) -> Result<Vec<bool>, String> {
    let mut vec = vec![0u8; pages];
    // SAFETY: the range lies in our mapping; `vec` has one byte per page.
    let r = unsafe { libc::mincore(m.as_ptr().add(off).cast(), pages * page(), vec.as_mut_ptr()) };
    if r != 0 {
        return Err(format!("mincore: {}", io::Error::last_os_error()));
    }
    Ok(vec.iter().map(|&b| b & 1 != 0).collect())
}

fn expect_mapped(m: &Mapping, want: &[bool], what: &str) -> TestResult {
    ensure_eq(mapped_pages(m, 0, want.len())?, want.to_vec(), what)
}

/// The device fills page `i` of `buf` with the pattern `seed + i` (window, then XFER from the
/// device), and the CPU takes the whole buffer back.
fn device_fill(dev: &Device, buf: &edu_dma::Buffer<'_>, pages: usize, seed: u64) -> TestResult {
    let pg = page();
    for i in 0..pages {
        dev.write_window_from(&pattern(pg, seed + i as u64), 0)
            .ctx("fill window")?;
        buf.xfer((i * pg) as u64, 0, pg as u32, Dir::FromDevice, 0)
            .ctx(format!("xfer window -> page {i}"))?;
    }
    buf.sync(0, (pages * pg) as u64, SyncDir::ForCpu)
        .ctx("sync for cpu")
}

/// Checks page `i` of `s` against the pattern `seed + i`, for the pages in `which`.
fn check_pages(
    s: &[u8],
    which: impl IntoIterator<Item = usize>,
    seed: u64,
    what: &str,
) -> TestResult {
    let pg = page();
    for i in which {
        check_pattern(
            &s[i * pg..(i + 1) * pg],
            seed + i as u64,
            &format!("{what}: page {i}"),
        )?;
    }
    Ok(())
}

/// The device reads page `i` of `buf` (XFER to the window, after a sync for the device) and the
/// window must hold the pattern `seed`.
fn device_sees(
    dev: &Device,
    buf: &edu_dma::Buffer<'_>,
    i: usize,
    seed: u64,
    what: &str,
) -> TestResult {
    let pg = page();
    buf.sync((i * pg) as u64, pg as u64, SyncDir::ForDevice)
        .ctx(format!("{what}: sync for device"))?;
    buf.xfer((i * pg) as u64, 0, pg as u32, Dir::ToDevice, 0)
        .ctx(format!("{what}: xfer page {i} -> window"))?;
    let mut back = vec![0u8; pg];
    dev.read_window_into(&mut back, 0)
        .ctx(format!("{what}: read window"))?;
    check_pattern(
        &back,
        seed,
        &format!("{what}: window after xfer of page {i}"),
    )
}

/// Reads page `i` of `m` in a forked child: `Exited(0)` with the pattern `seed`, `Exited(3)`
/// with other data, `Signaled(SIGBUS)` when the page cannot be mapped.
pub(crate) fn child_reads(m: &Mapping, i: usize, seed: u64) -> Result<ChildStatus, String> {
    let pg = page();
    // SAFETY: page `i` of the mapping, inherited by the child.
    let ptr = unsafe { m.as_ptr().add(i * pg) } as usize;
    in_child(|| {
        // SAFETY: the inherited mapping; touching it is the point.
        let s = unsafe { std::slice::from_raw_parts(ptr as *const u8, pg) };
        if edu_dma::pattern_mismatch(s, seed).is_none() {
            0
        } else {
            3
        }
    })
}

/// A zapped page of a coherent mapping through iommu-dma raises SIGBUS.
fn expect_sigbus(m: &Mapping, i: usize, seed: u64, what: &str) -> TestResult {
    let st = child_reads(m, i, seed)?;
    ensure_eq(
        st,
        ChildStatus::Signaled(libc::SIGBUS),
        &format!("{what}: child reading zapped page {i}"),
    )
}

/// The device's data comes back after a zap of the whole mapping, byte for byte.
fn dontneed_read(kind: BufKind) -> TestResult {
    let (zap, flag) = Zap::of(kind)?;
    let dev = open(0)?;
    let buf = dev.alloc(3 * page() as u64, kind).ctx("alloc")?;
    device_fill(&dev, &buf, 3, 100)?;
    let m = buf.map().ctx("mmap")?;
    expect_flag(&m, zap, flag)?;
    check_pages(&m, 0..3, 100, "before the zap")?;
    let Some(r) = probe_dontneed(m.as_ptr() as usize, m.len()) else {
        return skip(NO_MADVISE);
    };
    expect_madvise(r, zap, "madvise(MADV_DONTNEED) of the whole mapping")?;
    match zap {
        Zap::Refault => {
            expect_mapped(&m, &[false; 3], "page table entries after the zap")?;
            check_pages(&m, 0..3, 100, "read after the zap")?;
            expect_mapped(&m, &[true; 3], "page table entries after the reads")?;
        }
        Zap::Refused => check_pages(&m, 0..3, 100, "read after the refused madvise")?,
        Zap::Gone => {
            expect_mapped(&m, &[false; 3], "page table entries after the zap")?;
            expect_sigbus(&m, 0, 100, "after the zap")?;
            let m2 = buf.map().ctx("mmap again")?;
            check_pages(&m2, 0..3, 100, "a new mapping after the zap")?;
        }
    }
    diag(format!(
        "{}: MADV_DONTNEED: {zap:?} (VmFlags {flag})",
        kind.name()
    ));
    Ok(())
}

/// Writes through the mapping after a zap, then DMA from the buffer: the device reads them.
fn dontneed_write_dma(kind: BufKind) -> TestResult {
    let (zap, _) = Zap::of(kind)?;
    let dev = open(0)?;
    let pg = page();
    let buf = dev.alloc(2 * pg as u64, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    m.fill(0x11);
    let Some(r) = probe_dontneed(m.as_ptr() as usize, m.len()) else {
        return skip(NO_MADVISE);
    };
    expect_madvise(r, zap, "madvise(MADV_DONTNEED)")?;
    let mut fresh = None;
    let target = match zap {
        Zap::Refault | Zap::Refused => &mut m,
        Zap::Gone => {
            expect_sigbus(&m, 1, 0, "write mapping after the zap")?;
            fresh.insert(buf.map().ctx("mmap again")?)
        }
    };
    for i in 0..2 {
        fill_pattern(&mut target[i * pg..(i + 1) * pg], 200 + i as u64);
    }
    if zap == Zap::Refault {
        expect_mapped(target, &[true; 2], "page table entries after the writes")?;
    }
    for i in 0..2 {
        device_sees(&dev, &buf, i, 200 + i as u64, "written after the zap")?;
    }
    Ok(())
}

/// A zap of the middle page of three: the others keep their entries, the middle one comes back
/// (streaming) with the buffer's data, which the device also still reads.
fn dontneed_partial(kind: BufKind) -> TestResult {
    let (zap, _) = Zap::of(kind)?;
    let dev = open(0)?;
    let pg = page();
    let buf = dev.alloc(3 * pg as u64, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    for i in 0..3 {
        fill_pattern(&mut m[i * pg..(i + 1) * pg], 300 + i as u64);
    }
    let Some(r) = probe_dontneed(m.as_ptr() as usize + pg, pg) else {
        return skip(NO_MADVISE);
    };
    expect_madvise(r, zap, "madvise(MADV_DONTNEED) of page 1")?;
    match zap {
        Zap::Refault => {
            expect_mapped(&m, &[true, false, true], "entries after zapping page 1")?;
            check_pages(&m, [0, 2], 300, "untouched pages")?;
            expect_mapped(&m, &[true, false, true], "entries after reading pages 0, 2")?;
            check_pages(&m, [1], 300, "the zapped page, read again")?;
            expect_mapped(&m, &[true; 3], "entries after reading page 1")?;
        }
        Zap::Refused => check_pages(&m, 0..3, 300, "after the refused madvise")?,
        Zap::Gone => {
            expect_mapped(&m, &[true, false, true], "entries after zapping page 1")?;
            check_pages(&m, [0, 2], 300, "pages around the zapped one")?;
            expect_sigbus(&m, 1, 301, "partial zap")?;
            check_pages(&buf.map().ctx("mmap again")?, 0..3, 300, "a new mapping")?;
        }
    }
    device_sees(&dev, &buf, 1, 301, "zapped page")
}

/// fork after a zap: the child's copy of the VMA faults the shared pages in (streaming) and its
/// writes are the parent's; a zap in the child leaves the parent's entries alone.
fn dontneed_fork(kind: BufKind) -> TestResult {
    let (zap, _) = Zap::of(kind)?;
    let dev = open(0)?;
    let pg = page();
    let buf = dev.alloc(2 * pg as u64, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    for i in 0..2 {
        fill_pattern(&mut m[i * pg..(i + 1) * pg], 400 + i as u64);
    }
    let Some(r) = probe_dontneed(m.as_ptr() as usize, m.len()) else {
        return skip(NO_MADVISE);
    };
    expect_madvise(r, zap, "madvise(MADV_DONTNEED)")?;
    if zap == Zap::Gone {
        // The child inherits a VMA with no entries and no fault handler.
        return expect_sigbus(&m, 0, 400, "child after the zap");
    }
    let (ptr, len) = (m.as_ptr() as usize, m.len());
    let st = in_child(|| {
        // SAFETY: the inherited mapping.
        let s = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
        for i in 0..2 {
            if edu_dma::pattern_mismatch(&s[i * pg..(i + 1) * pg], 400 + i as u64).is_some() {
                return 2;
            }
        }
        fill_pattern(&mut s[pg..], 411);
        0
    })?;
    ensure_eq(st, ChildStatus::Exited(0), "child (2: it saw wrong data)")?;
    check_pages(&m, [0], 400, "parent, page 0")?;
    check_pattern(&m[pg..], 411, "parent sees the child's write")?;
    // A zap in the child is the child's own.
    let st = in_child(|| match madvise_dontneed(ptr, len) {
        Ok(()) => 0,
        Err(_) => 4,
    })?;
    let want = match zap {
        Zap::Refused => ChildStatus::Exited(4),
        _ => ChildStatus::Exited(0),
    };
    ensure_eq(st, want, "child zapping its copy (4: madvise failed)")?;
    if zap == Zap::Refault {
        // (`mincore` cannot tell for `VM_PFNMAP`: the page walk skips such VMAs.)
        expect_mapped(&m, &[true; 2], "parent's entries after the child's zap")?;
    }
    check_pages(&m, [0], 400, "parent, page 0, after the child's zap")?;
    device_sees(&dev, &buf, 1, 411, "the child's write")
}

/// The pages outlive the buffer's handle and file: a zap after `BUF_FREE` and close refaults
/// (streaming) the same data.
fn dontneed_after_close(kind: BufKind) -> TestResult {
    let (zap, _) = Zap::of(kind)?;
    let pg = page();
    let dev = open(0)?;
    let buf = dev.alloc(2 * pg as u64, kind).ctx("alloc")?;
    device_fill(&dev, &buf, 2, 500)?;
    let mut m = buf.map().ctx("mmap")?;
    buf.free().ctx("free while mapped")?;
    drop(dev);
    let Some(r) = probe_dontneed(m.as_ptr() as usize, m.len()) else {
        return skip(NO_MADVISE);
    };
    expect_madvise(r, zap, "madvise(MADV_DONTNEED) after free and close")?;
    match zap {
        Zap::Gone => expect_sigbus(&m, 0, 500, "after free, close and the zap"),
        _ => {
            check_pages(&m, 0..2, 500, "read after free, close and the zap")?;
            fill_pattern(&mut m, 510);
            check_pattern(&m, 510, "write after free, close and the zap")?;
            if zap == Zap::Refault {
                dontneed(&m, 0, m.len()).ctx("zap again")?;
                check_pattern(&m, 510, "the write, after a second zap")?;
            }
            Ok(())
        }
    }
}

/// mremap moves a streaming mapping (its VMA is copied, the old one closed): the moved VMA
/// still refaults the buffer's pages after a zap, and the device reads a write made through it.
fn dontneed_mremap() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let len = 3 * pg;
    let buf = dev.alloc(len as u64, BufKind::Streaming).ctx("alloc")?;
    device_fill(&dev, &buf, 3, 600)?;
    let m = buf.map().ctx("mmap")?;
    check_pages(&m, 0..3, 600, "before the move")?;
    // The destination: reserved address space that the move replaces (and that unmaps the moved
    // mapping on drop).
    let mut dst = Anon::new(len).ctx("reserve the destination")?;
    let old = m.as_ptr();
    // SAFETY: moves our own mapping `m` onto our own reservation `dst`; `m`'s range is unmapped
    // by the move, so `m` is forgotten below, never touched or unmapped again.
    let p = unsafe {
        libc::mremap(
            old.cast(),
            len,
            len,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            dst.ptr.as_ptr().cast::<libc::c_void>(),
        )
    };
    if p == libc::MAP_FAILED {
        let e = io::Error::last_os_error();
        std::mem::forget(m);
        return Err(format!("mremap: {e}"));
    }
    std::mem::forget(m);
    ensure_eq(p as usize, dst.addr() as usize, "moved to")?;
    check_pages(dst.bytes(), 0..3, 600, "after the move")?;
    let Some(r) = probe_dontneed(dst.addr() as usize, len) else {
        return skip(NO_MADVISE);
    };
    r.ctx("madvise(MADV_DONTNEED) of the moved mapping")?;
    check_pages(dst.bytes(), 0..3, 600, "the moved mapping after the zap")?;
    fill_pattern(&mut dst.bytes_mut()[2 * pg..], 612);
    device_sees(&dev, &buf, 2, 612, "written through the moved mapping")?;
    let fresh = buf.map().ctx("mmap again")?;
    check_pattern(&fresh[2 * pg..], 612, "a new mapping")
}
