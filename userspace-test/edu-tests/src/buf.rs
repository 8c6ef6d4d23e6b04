//! Group `buf`: driver-owned buffers (both kinds): alloc, mmap, XFER round trips, errnos,
//! mapping lifetime, GUP on the mappings, the allocation cap; zapped mappings (`MADV_DONTNEED`)
//! in `buf/zap.rs`.

use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, SyncDir};

use crate::harness::*;

pub(crate) mod zap;

const KINDS: [BufKind; 2] = [BufKind::Coherent, BufKind::Streaming];

pub fn tests() -> Vec<Test> {
    let mut v = vec![
        test("alloc_invalid", alloc_invalid),
        test("foreign_handle", foreign_handle),
        test("file_cap", file_cap),
    ];
    for kind in KINDS {
        let k = kind.name();
        v.push(test(format!("{k}.alloc_handles"), move || {
            alloc_handles(kind)
        }));
        v.push(test(format!("{k}.mmap"), move || mmap(kind)));
        v.push(test(format!("{k}.round_trip"), move || round_trip(kind)));
        v.push(test(format!("{k}.every_count"), move || every_count(kind)));
        v.push(test(format!("{k}.unknown_handle"), move || {
            unknown_handle(kind)
        }));
        v.push(test(format!("{k}.xfer_ranges"), move || xfer_ranges(kind)));
        v.push(test(format!("{k}.xfer_flags"), move || xfer_flags(kind)));
        v.push(test(format!("{k}.sync_invalid"), move || {
            sync_invalid(kind)
        }));
        v.push(test(format!("{k}.free_twice"), move || free_twice(kind)));
        v.push(test(format!("{k}.mmap_errors"), move || mmap_errors(kind)));
        v.push(test(format!("{k}.free_while_mapped"), move || {
            free_while_mapped(kind)
        }));
        v.push(test(format!("{k}.close_with_mapping"), move || {
            close_with_mapping(kind)
        }));
        v.push(test(format!("{k}.fork_shared"), move || fork_shared(kind)));
        v.push(test(format!("{k}.partial_munmap"), move || {
            partial_munmap(kind)
        }));
        v.push(test(format!("{k}.gup_process_vm_readv"), move || {
            gup_process_vm_readv(kind)
        }));
        v.push(test(format!("{k}.user_xfer_from_mapping"), move || {
            user_xfer_from_mapping(kind)
        }));
        v.push(test(format!("{k}.alloc_cap"), move || alloc_cap(kind)));
    }
    v.extend(zap::tests());
    v
}

fn alloc_req(size: u64, kind: u32) -> EduDmaBufAlloc {
    EduDmaBufAlloc {
        size,
        kind,
        ..Default::default()
    }
}

fn alloc_invalid() -> TestResult {
    let dev = open(0)?;
    for kind in [0u32, 3, 0xffff, u32::MAX] {
        let mut r = alloc_req(4096, kind);
        expect_errno(dev.alloc_raw(&mut r), libc::EINVAL, &format!("kind {kind}"))?;
    }
    for kind in KINDS {
        expect_errno(
            dev.alloc(0, kind),
            libc::EINVAL,
            &format!("{} size 0", kind.name()),
        )?;
        let mut r = alloc_req(4096, kind.raw());
        r.flags = 1;
        expect_errno(dev.alloc_raw(&mut r), libc::EINVAL, "flags 1")?;
        let mut r = alloc_req(4096, kind.raw());
        r.reserved = 1;
        expect_errno(dev.alloc_raw(&mut r), libc::EINVAL, "reserved 1")?;
        // Above buf_max: the header allows 1 .. buf_max, and ENOMEM for "no memory".
        expect_errno_any(
            dev.alloc(u64::MAX, kind),
            &[libc::EINVAL, libc::ENOMEM],
            &format!("{} size u64::MAX", kind.name()),
        )?;
    }
    Ok(())
}

fn foreign_handle() -> TestResult {
    let a = open(0)?;
    let b = open(0)?; // another file of the same device: no buffers of its own
    let c = open(1)?; // a file of the other device
    let buf = a.alloc(4096, BufKind::Coherent).ctx("alloc")?;
    let h = buf.handle();
    for (what, dev) in [("other file, same device", &b), ("other device", &c)] {
        expect_errno(
            dev.xfer(h, 0, 0, 16, Dir::ToDevice, 0),
            libc::ENOENT,
            &format!("xfer by {what}"),
        )?;
        expect_errno(
            dev.sync(h, 0, 16, SyncDir::ForDevice),
            libc::ENOENT,
            &format!("sync by {what}"),
        )?;
        expect_errno(dev.free(h), libc::ENOENT, &format!("free by {what}"))?;
    }
    // Still owned by `a`.
    buf.xfer(0, 0, 16, Dir::ToDevice, 0).ctx("xfer by owner")?;
    buf.free().ctx("free by owner")
}

fn alloc_handles(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let sizes = [1u64, 4096, 4097, 3 * 4096];
    let mut bufs = Vec::new();
    for s in sizes {
        bufs.push(dev.alloc(s, kind).ctx(format!("alloc {s}"))?);
    }
    let pg = page() as u64;
    for (i, b) in bufs.iter().enumerate() {
        ensure(b.handle() != 0, || format!("handle of buffer {i} is 0"))?;
        ensure(b.mmap_offset() % pg == 0, || {
            format!("mmap_offset {:#x} not page-aligned", b.mmap_offset())
        })?;
        for (j, o) in bufs.iter().enumerate().skip(i + 1) {
            ensure(b.handle() != o.handle(), || {
                format!("buffers {i} and {j} share handle {}", b.handle())
            })?;
            let (s1, e1) = (b.mmap_offset(), b.mmap_offset() + b.mapped_size() as u64);
            let (s2, e2) = (o.mmap_offset(), o.mmap_offset() + o.mapped_size() as u64);
            ensure(e1 <= s2 || e2 <= s1, || {
                format!("mmap ranges of buffers {i} [{s1:#x},{e1:#x}) and {j} [{s2:#x},{e2:#x}) overlap")
            })?;
        }
    }
    Ok(())
}

fn mmap(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(3 * 4096, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    ensure_eq(m.len(), 3 * 4096, "mapping length")?;
    fill_pattern(&mut m, 11);
    check_pattern(&m, 11, "read back")?;
    // A page offset within the buffer maps the same memory.
    let mut m2 = dev
        .map(buf.mmap_offset() + 4096, 2 * 4096)
        .ctx("mmap at page 1")?;
    check_same(&m2, &m[4096..], "second mapping at page 1")?;
    m2[0] = !m2[0];
    ensure_eq(m[4096], m2[0], "write through second mapping")?;
    Ok(())
}

/// Round-trip combinations: (count, src buf offset, window offset).
fn combos() -> Vec<(u32, u64, u32)> {
    let counts = [
        1u32, 2, 3, 7, 63, 64, 65, 511, 512, 513, 1000, 2047, 2048, 2049, 4095, 4096,
    ];
    let buf_offs = [0u64, 1, 4095, 100, 2048];
    let mut v = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let win_offs = [0u32, 1, 100, 4096 - count];
        let picks = if i % 2 == 0 { 3 } else { 2 };
        for p in 0..picks {
            let bo = buf_offs[(i + 2 * p) % buf_offs.len()];
            let wo = win_offs[(i + p) % win_offs.len()].min(4096 - count);
            v.push((count, bo, wo));
        }
    }
    v
}

const RT_SIZE: u64 = 3 * 4096;

/// Device commands one transfer takes: one for coherent memory (contiguous on the bus), one per
/// page touched for streaming memory (each page is mapped on its own).
fn commands(kind: BufKind, offset: u64, count: u32) -> u64 {
    match kind {
        BufKind::Coherent => 1,
        BufKind::Streaming => (offset % 4096 + u64::from(count)).div_ceil(4096),
    }
}

fn round_trip(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let src = dev.alloc(RT_SIZE, kind).ctx("alloc src")?;
    let dst = dev.alloc(RT_SIZE, kind).ctx("alloc dst")?;
    let mut sm = src.map().ctx("mmap src")?;
    let mut dm = dst.map().ctx("mmap dst")?;
    let before = dev.info().ctx("info")?;
    let combos = combos();
    let pair = Pair {
        src: &src,
        dst: &dst,
    };
    let mut bytes = 0u64;
    let mut cmds = 0u64;
    for (idx, &(count, so, wo)) in combos.iter().enumerate() {
        let what = format!("count {count} buf_offset {so} win_offset {wo}");
        let seed = 1000 + idx as u64;
        let so_u = so as usize;
        // Background fills around the ranges `Pair::once` writes and checks; the destination
        // sits at a different offset than the source.
        sm.fill(0x3c);
        let dof = GUARD_LEN + (so_u + 37) % 4000;
        dm.fill(0x5a);
        pair.once(&mut sm, &mut dm, (count, so, wo, dof), seed, &what)?;
        bytes += 2 * u64::from(count);
        cmds += commands(kind, so, count) + commands(kind, dof as u64, count);
    }
    let after = dev.info().ctx("info")?;
    ensure_eq(
        after.dma_count - before.dma_count,
        cmds,
        "dma_count increase",
    )?;
    ensure_eq(
        after.dma_bytes - before.dma_bytes,
        bytes,
        "dma_bytes increase",
    )?;
    diag(format!("{} round trips, {cmds} DMA commands", combos.len()));
    Ok(())
}

/// The per-file cap (module parameter `file_cap_kib`, told to the test through
/// `EDU_TEST_FILE_CAP_KIB`; skipped when unset): one file cannot go past it, another file can
/// still allocate, and freeing makes room again.
fn file_cap() -> TestResult {
    let Some(kib) = std::env::var("EDU_TEST_FILE_CAP_KIB").ok() else {
        diag("skip file_cap: EDU_TEST_FILE_CAP_KIB is not set");
        return Ok(());
    };
    let cap: u64 = kib.parse::<u64>().map_err(|e| e.to_string())? * 1024;
    let a = open(0)?;
    let b = open(0)?;
    let mut held = Vec::new();
    for kind in KINDS {
        held.push(a.alloc(cap / 2, kind).ctx("alloc half the cap")?);
    }
    expect_errno(
        a.alloc(4096, BufKind::Coherent),
        libc::ENOMEM,
        "one page past the file cap",
    )?;
    let other = b
        .alloc(4096, BufKind::Streaming)
        .ctx("alloc in another file")?;
    drop(other);
    held.pop();
    a.alloc(cap / 2, BufKind::Streaming)
        .ctx("alloc after freeing")
        .map(drop)
}

/// A source and a destination buffer for round trips through the window.
struct Pair<'a, 'd> {
    src: &'a edu_dma::Buffer<'d>,
    dst: &'a edu_dma::Buffer<'d>,
}

impl Pair<'_, '_> {
    /// One verified round trip of `count` bytes: the `seed` pattern at `so` in the source goes to
    /// the window at `wo`, then back into the destination at `dof` between two guards (the range
    /// starts as the pattern's inverse); data and guards are checked through the mappings.
    fn once(
        &self,
        sm: &mut [u8],
        dm: &mut [u8],
        (count, so, wo, dof): (u32, u64, u32, usize),
        seed: u64,
        what: &str,
    ) -> TestResult {
        let n = count as usize;
        fill_pattern(&mut sm[so as usize..so as usize + n], seed);
        dm[dof - GUARD_LEN..dof].fill(GUARD);
        dm[dof + n..dof + n + GUARD_LEN].fill(GUARD);
        fill_pattern_inverted(&mut dm[dof..dof + n], seed);
        let (gstart, glen) = ((dof - GUARD_LEN) as u64, (n + 2 * GUARD_LEN) as u64);
        self.src
            .sync(so, u64::from(count), SyncDir::ForDevice)
            .ctx(format!("{what}: sync src for device"))?;
        self.dst
            .sync(gstart, glen, SyncDir::ForDevice)
            .ctx(format!("{what}: sync dst for device"))?;
        self.src
            .xfer(so, wo, count, Dir::ToDevice, 0)
            .ctx(format!("{what}: xfer to device"))?;
        self.dst
            .xfer(dof as u64, wo, count, Dir::FromDevice, 0)
            .ctx(format!("{what}: xfer from device"))?;
        self.dst
            .sync(gstart, glen, SyncDir::ForCpu)
            .ctx(format!("{what}: sync dst for cpu"))?;
        let guarded = &dm[dof - GUARD_LEN..dof + n + GUARD_LEN];
        check_guarded(guarded, GUARD_LEN, n, seed, what)
    }
}

/// Every count 1..=4096, cycling through buffer offsets (page-crossing ones included) and both
/// ends of the window: each byte verified, guards around the destination untouched.
/// 8,000-10,000 commands per kind: run where `EDU_TEST_EXHAUSTIVE` is `1` (every kind) or names
/// this kind (`streaming`, `coherent`, comma-separated), skipped elsewhere. `make check` sets `1`
/// in its main boot and `streaming` in the swiotlb boot (coherent memory never bounces).
fn every_count(kind: BufKind) -> TestResult {
    let wanted = std::env::var("EDU_TEST_EXHAUSTIVE").unwrap_or_default();
    if wanted != "1" && !wanted.split(',').any(|k| k == kind.name()) {
        diag(format!(
            "skip every_count: EDU_TEST_EXHAUSTIVE ({wanted:?}) is neither 1 nor names {}",
            kind.name()
        ));
        return Ok(());
    }
    let dev = open(1)?;
    let src = dev.alloc(RT_SIZE, kind).ctx("alloc src")?;
    let dst = dev.alloc(RT_SIZE, kind).ctx("alloc dst")?;
    let mut sm = src.map().ctx("mmap src")?;
    let mut dm = dst.map().ctx("mmap dst")?;
    let before = dev.info().ctx("info")?;
    let src_offs = [0u64, 1, 7, 2048, 4095];
    let pair = Pair {
        src: &src,
        dst: &dst,
    };
    let mut cmds = 0;
    for count in 1u32..=4096 {
        let n = count as usize;
        let so = src_offs[n % src_offs.len()];
        let wo = if count % 2 == 0 { 0 } else { 4096 - count };
        let dof = GUARD_LEN + (n * 13) % 2048;
        let what = format!("count {count} buf_offset {so} win_offset {wo} dst_offset {dof}");
        let seed = 7000 + u64::from(count);
        pair.once(&mut sm, &mut dm, (count, so, wo, dof), seed, &what)?;
        cmds += commands(kind, so, count) + commands(kind, dof as u64, count);
    }
    let after = dev.info().ctx("info")?;
    ensure_eq(
        after.dma_count - before.dma_count,
        cmds,
        "dma_count increase",
    )?;
    diag(format!("every count 1..=4096: {cmds} DMA commands"));
    Ok(())
}

fn unknown_handle(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let _keep = dev.alloc(4096, kind).ctx("alloc")?;
    for h in [0u32, 0xdead_beef, u32::MAX] {
        expect_errno(
            dev.xfer(h, 0, 0, 16, Dir::ToDevice, 0),
            libc::ENOENT,
            &format!("xfer handle {h:#x}"),
        )?;
        expect_errno(
            dev.sync(h, 0, 16, SyncDir::ForDevice),
            libc::ENOENT,
            &format!("sync handle {h:#x}"),
        )?;
        expect_errno(dev.free(h), libc::ENOENT, &format!("free handle {h:#x}"))?;
    }
    Ok(())
}

fn xfer_ranges(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, kind).ctx("alloc")?;
    let h = buf.handle();
    let cases: [(&str, u64, u32, u32); 9] = [
        ("count 0", 0, 0, 0),
        ("count 4097", 0, 0, 4097),
        ("win_offset+count 4097", 0, 4000, 97),
        ("win_offset 4096", 0, 4096, 1),
        ("win_offset u32::MAX (u32 overflow)", 0, u32::MAX, 2),
        ("buf_offset+count > size", 4000, 0, 97),
        ("buf_offset = size", 4096, 0, 1),
        ("buf_offset u64::MAX-1 (overflow)", u64::MAX - 1, 0, 4),
        ("buf_offset u64::MAX", u64::MAX, 0, 1),
    ];
    for dir in [Dir::ToDevice, Dir::FromDevice] {
        for (what, bo, wo, count) in cases {
            expect_errno(
                dev.xfer(h, bo, wo, count, dir, 0),
                libc::EINVAL,
                &format!("{dir:?} {what}"),
            )?;
        }
    }
    // The limits themselves are fine.
    dev.xfer(h, 0, 0, 4096, Dir::ToDevice, 0)
        .ctx("full window")?;
    dev.xfer(h, 4095, 4095, 1, Dir::FromDevice, 0)
        .ctx("last byte")?;
    Ok(())
}

fn xfer_flags(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, kind).ctx("alloc")?;
    let base = EduDmaXfer {
        handle: buf.handle(),
        flags: EDU_DMA_TO_DEVICE,
        buf_offset: 0,
        win_offset: 0,
        count: 16,
        timeout_ms: 0,
        reserved: 0,
    };
    for (what, flags) in [
        ("no direction", 0u32),
        ("both directions", EDU_DMA_TO_DEVICE | EDU_DMA_FROM_DEVICE),
        ("unknown flag 4", 4),
        ("TO_DEVICE|4", EDU_DMA_TO_DEVICE | 4),
        ("FROM_DEVICE|0x80000000", EDU_DMA_FROM_DEVICE | 0x8000_0000),
    ] {
        let r = EduDmaXfer { flags, ..base };
        expect_errno(dev.xfer_raw(&r), libc::EINVAL, what)?;
    }
    for reserved in [1u32, 0x8000_0000] {
        let r = EduDmaXfer { reserved, ..base };
        expect_errno(
            dev.xfer_raw(&r),
            libc::EINVAL,
            &format!("reserved {reserved:#x}"),
        )?;
    }
    dev.xfer_raw(&base).ctx("valid request")
}

fn sync_invalid(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, kind).ctx("alloc")?;
    let h = buf.handle();
    for (what, off, len) in [
        ("offset+len > size", 4000u64, 97u64),
        ("offset = size", 4096, 1),
        ("len > size", 0, 4097),
        ("offset u64::MAX (overflow)", u64::MAX, 2),
        ("len u64::MAX (overflow)", 1, u64::MAX),
    ] {
        expect_errno(
            dev.sync(h, off, len, SyncDir::ForDevice),
            libc::EINVAL,
            &format!("for device, {what}"),
        )?;
        expect_errno(
            dev.sync(h, off, len, SyncDir::ForCpu),
            libc::EINVAL,
            &format!("for cpu, {what}"),
        )?;
    }
    for flags in [
        0u32,
        EDU_DMA_SYNC_FOR_DEVICE | EDU_DMA_SYNC_FOR_CPU,
        4,
        1 | 8,
    ] {
        let r = EduDmaBufSync {
            handle: h,
            flags,
            offset: 0,
            len: 16,
        };
        expect_errno(dev.sync_raw(&r), libc::EINVAL, &format!("flags {flags:#x}"))?;
    }
    buf.sync(0, 4096, SyncDir::ForDevice)
        .ctx("whole buffer for device")?;
    buf.sync(0, 4096, SyncDir::ForCpu)
        .ctx("whole buffer for cpu")
}

fn free_twice(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(4096, kind).ctx("alloc")?;
    let h = buf.into_handle();
    expect_errno(
        dev.free_raw(&EduDmaBufFree {
            handle: h,
            flags: 1,
        }),
        libc::EINVAL,
        "free with flags 1",
    )?;
    dev.free(h).ctx("first free")?;
    expect_errno(dev.free(h), libc::ENOENT, "second free")
}

fn mmap_errors(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let one = dev.alloc(pg as u64, kind).ctx("alloc 1 page")?;
    let two = dev.alloc(2 * pg as u64, kind).ctx("alloc 2 pages")?;
    let gone = dev.alloc(pg as u64, kind).ctx("alloc")?;
    let gone_off = gone.mmap_offset();
    gone.free().ctx("free")?;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY (every map_with below): the mappings are never accessed through slices.
    unsafe {
        expect_errno(
            dev.map_with(gone_off, pg, rw, libc::MAP_SHARED),
            libc::EINVAL,
            "offset of a freed buffer",
        )?;
        expect_errno(
            dev.map_with(one.mmap_offset(), 2 * pg, rw, libc::MAP_SHARED),
            libc::EINVAL,
            "2 pages of a 1-page buffer",
        )?;
        expect_errno(
            dev.map_with(two.mmap_offset() + pg as u64, 2 * pg, rw, libc::MAP_SHARED),
            libc::EINVAL,
            "2 pages from page 1 of a 2-page buffer",
        )?;
        expect_errno(
            dev.map_with(
                one.mmap_offset(),
                pg,
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_SHARED,
            ),
            libc::EPERM,
            "PROT_EXEC",
        )?;
        expect_errno(
            dev.map_with(one.mmap_offset(), pg, rw, libc::MAP_PRIVATE),
            libc::EINVAL,
            "MAP_PRIVATE",
        )?;
        // A read-only mapping is fine; mprotect to PROT_EXEC must then fail too.
        let ro = dev
            .map_with(one.mmap_offset(), pg, libc::PROT_READ, libc::MAP_SHARED)
            .ctx("PROT_READ mapping")?;
        let r = libc::mprotect(ro.as_ptr().cast(), pg, libc::PROT_READ | libc::PROT_EXEC);
        ensure(r != 0, || {
            "mprotect(PROT_EXEC) of the mapping succeeded".to_string()
        })?;
    }
    // The valid ones still work.
    two.map().ctx("whole 2-page buffer")?;
    Ok(())
}

fn free_while_mapped(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(2 * 4096, kind).ctx("alloc")?;
    let h = buf.handle();
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m, 21);
    buf.free().ctx("free while mapped")?;
    check_pattern(&m, 21, "read after free")?;
    fill_pattern(&mut m, 22);
    check_pattern(&m, 22, "write after free")?;
    expect_errno(
        dev.xfer(h, 0, 0, 16, Dir::ToDevice, 0),
        libc::ENOENT,
        "xfer by freed handle",
    )?;
    expect_errno(
        dev.sync(h, 0, 16, SyncDir::ForCpu),
        libc::ENOENT,
        "sync by freed handle",
    )?;
    // The file still works.
    let b2 = dev.alloc(4096, kind).ctx("alloc after free")?;
    b2.xfer(0, 0, 16, Dir::ToDevice, 0)
        .ctx("xfer by a new handle")?;
    drop(m);
    Ok(())
}

fn close_with_mapping(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let mut m = {
        let buf = dev.alloc(2 * 4096, kind).ctx("alloc")?;
        let mut m = buf.map().ctx("mmap")?;
        fill_pattern(&mut m, 31);
        buf.into_handle(); // left to the file
        m
    };
    drop(dev); // close with a live buffer and mapping
    check_pattern(&m, 31, "read after close")?;
    fill_pattern(&mut m, 32);
    check_pattern(&m, 32, "write after close")?;
    // The device is fine for others.
    open(0)?.factorial(4).ctx("factorial after close")?;
    Ok(())
}

fn fork_shared(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(2 * 4096, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m, 41);
    let ptr = m.as_ptr() as usize;
    let len = m.len();
    let st = in_child(|| {
        // SAFETY: the mapping is inherited by the child.
        let s = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
        if check_pattern(s, 41, "").is_err() {
            return 2;
        }
        fill_pattern(s, 42);
        0
    })?;
    ensure_eq(st, ChildStatus::Exited(0), "child (2: it saw wrong data)")?;
    check_pattern(&m, 42, "parent sees the child's writes")?;
    // The buffer (not only the mapping) holds them: check through the device.
    buf.sync(0, 4096, SyncDir::ForDevice).ctx("sync")?;
    buf.xfer(0, 0, 4096, Dir::ToDevice, 0)
        .ctx("xfer to device")?;
    let mut back = vec![0u8; 4096];
    dev.read_window_into(&mut back, 0).ctx("read window")?;
    check_pattern(&back, 42, "window after xfer of the child's data")
}

fn partial_munmap(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let buf = dev.alloc(3 * pg as u64, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    for p in 0..3 {
        fill_pattern(&mut m[p * pg..(p + 1) * pg], 50 + p as u64);
    }
    let base = m.as_ptr();
    // SAFETY: unmaps the middle page of our own mapping; `m` is used below only through raw
    // slices of pages 0 and 2 (and munmapped as a whole on drop, which tolerates the hole).
    let r = unsafe { libc::munmap(base.add(pg).cast(), pg) };
    ensure_eq(r, 0, "munmap of the middle page")?;
    for p in [0usize, 2] {
        // SAFETY: pages 0 and 2 are still mapped.
        let s = unsafe { std::slice::from_raw_parts_mut(base.add(p * pg), pg) };
        check_pattern(
            s,
            50 + p as u64,
            &format!("page {p} after munmap of page 1"),
        )?;
        fill_pattern(s, 60 + p as u64);
        check_pattern(s, 60 + p as u64, &format!("page {p} rewritten"))?;
    }
    // A fresh mapping shows all three pages, including the writes.
    let m2 = buf.map().ctx("second mapping")?;
    check_pattern(&m2[..pg], 60, "page 0 via a fresh mapping")?;
    check_pattern(&m2[pg..2 * pg], 51, "page 1 via a fresh mapping")?;
    check_pattern(&m2[2 * pg..], 62, "page 2 via a fresh mapping")?;
    drop(m);
    Ok(())
}

fn process_vm_readv(pid: libc::pid_t, local: &mut [u8], remote: u64) -> std::io::Result<usize> {
    let l = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let r = libc::iovec {
        iov_base: remote as *mut libc::c_void,
        iov_len: local.len(),
    };
    // SAFETY: the local iovec is our exclusively borrowed slice.
    let n = unsafe { libc::process_vm_readv(pid, &l, 1, &r, 1, 0) };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// GUP on the mapping (process_vm_readv pins the *remote* pages): streaming pages are
/// ordinary pages and work, a coherent buffer's VM_PFNMAP mapping refuses with EFAULT.
fn gup_process_vm_readv(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(2 * 4096, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m, 71);
    let addr = m.as_ptr() as u64;
    let (mut probe, probe_src) = ([0u8; 1], [1u8; 1]);
    let pid = std::process::id() as i32;
    if let Err(e) = process_vm_readv(pid, &mut probe, probe_src.as_ptr() as u64) {
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return skip("process_vm_readv: ENOSYS (CONFIG_CROSS_MEMORY_ATTACH off)");
        }
    }
    // A forked child holds the mapping (inherited, MAP_SHARED) and waits on a pipe.
    let (rd, wr) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    use nix::unistd::{fork, ForkResult};
    use std::os::fd::AsRawFd;
    // SAFETY: the child only blocks in read(2) and `_exit`s.
    let child = match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(wr);
            let mut b = [0u8; 1];
            // SAFETY: reading into a local byte.
            unsafe {
                libc::read(rd.as_raw_fd(), b.as_mut_ptr().cast(), 1);
                libc::_exit(0)
            }
        }
        ForkResult::Parent { child } => child,
    };
    drop(rd);
    let mut got = vec![0u8; 2 * 4096];
    let remote = process_vm_readv(child.as_raw(), &mut got, addr);
    let own = process_vm_readv(std::process::id() as i32, &mut vec![0u8; 4096], addr);
    drop(wr); // the child exits
    let _ = nix::sys::wait::waitpid(child, None);
    match kind {
        BufKind::Streaming => {
            let n = remote.ctx("process_vm_readv from the child's mapping")?;
            ensure_eq(n, got.len(), "bytes read")?;
            check_pattern(&got, 71, "bytes read from the child's mapping")?;
            let n = own.ctx("process_vm_readv from our own mapping")?;
            ensure_eq(n, 4096, "bytes read from own mapping")
        }
        BufKind::Coherent => {
            expect_errno(
                remote,
                libc::EFAULT,
                "process_vm_readv from a VM_PFNMAP mapping",
            )?;
            expect_errno(
                own,
                libc::EFAULT,
                "process_vm_readv from own VM_PFNMAP mapping",
            )
        }
    }
}

/// The driver's own USER_XFER pins user pages: a coherent mapping is refused (EFAULT).
fn user_xfer_from_mapping(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let buf = dev.alloc(2 * 4096, kind).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m, 81);
    let src = &m[100..100 + 3000];
    let pfn = kind == BufKind::Coherent
        && crate::onward::coherent_backing(&m)? == crate::onward::Backing::Pfn;
    match kind {
        // PFN-mapped (dma-direct): GUP refuses it. Page-backed (vIOMMU), GUP-fast takes it (its
        // PTEs are writable: written above) as it takes a streaming mapping: checked below.
        BufKind::Coherent if pfn => {
            expect_errno(
                dev.write_window_from(src, 7),
                libc::EFAULT,
                "USER_XFER from a coherent mapping",
            )?;
            expect_errno(
                dev.read_window_into(&mut m[..16], 0),
                libc::EFAULT,
                "USER_XFER into a coherent mapping",
            )
        }
        BufKind::Coherent | BufKind::Streaming => {
            dev.write_window_from(src, 7)
                .ctx(format!("USER_XFER from a {kind:?} mapping"))?;
            let mut back = vec![GUARD; 3000 + 2 * GUARD_LEN];
            dev.read_window_into(&mut back[GUARD_LEN..GUARD_LEN + 3000], 7)
                .ctx("read window back")?;
            check_same(
                &back[GUARD_LEN..GUARD_LEN + 3000],
                &m[100..3100],
                "window contents",
            )?;
            check_fill(&back[..GUARD_LEN], GUARD, "guard before")?;
            check_fill(&back[GUARD_LEN + 3000..], GUARD, "guard after")
        }
    }
}

fn alloc_cap(kind: BufKind) -> TestResult {
    let dev = open(0)?;
    let mut bufs = Vec::new();
    let mut end = None;
    for i in 0..256 {
        match dev.alloc(1 << 20, kind) {
            Ok(b) => bufs.push(b),
            Err(e) => {
                end = Some((i, e));
                break;
            }
        }
    }
    let Some((i, e)) = end else {
        return Err("256 allocations of 1 MiB succeeded: no cap".to_string());
    };
    diag(format!(
        "{}: ENOMEM-style end after {i} buffers of 1 MiB: {e}",
        kind.name()
    ));
    expect_errno(Err::<(), _>(e), libc::ENOMEM, &format!("allocation {i}"))?;
    for (j, b) in bufs.into_iter().enumerate() {
        b.free().ctx(format!("free {j}"))?;
    }
    let b = dev.alloc(1 << 20, kind).ctx("alloc after freeing all")?;
    b.xfer(0, 0, 64, Dir::ToDevice, 0).ctx("xfer by it")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_combos_fit() {
        let c = combos();
        assert!((36..=44).contains(&c.len()), "{} combos", c.len());
        for &(count, so, wo) in &c {
            assert!((1..=4096).contains(&count));
            assert!(wo + count <= 4096, "window {wo}+{count}");
            assert!(so + u64::from(count) <= RT_SIZE, "src {so}+{count}");
            let dof = GUARD_LEN + (so as usize + 37) % 4000;
            assert!(dof + count as usize + GUARD_LEN <= RT_SIZE as usize);
        }
        for w in [0, 1, 100] {
            assert!(
                c.iter().any(|&(_, _, wo)| wo == w),
                "window offset {w} used"
            );
        }
        assert!(
            c.iter().any(|&(n, _, wo)| wo + n == 4096 && n < 4096),
            "window end used"
        );
        for b in [0, 1, 4095] {
            assert!(
                c.iter().any(|&(_, so, _)| so == b),
                "buffer offset {b} used"
            );
        }
    }
}
