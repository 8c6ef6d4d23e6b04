//! Group `user`: zero-copy USER_XFER, the COPY engine on user memory of every kind, their
//! errnos, a munmap race, and read/write/lseek on the node.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use edu_dma::uapi::*;
use edu_dma::{BufKind, CopyDst, CopySrc, Device, SyncDir};

use crate::harness::*;

mod copy_big;
mod top_addr;

pub fn tests() -> Vec<Test> {
    vec![
        test("xfer_round_trip", xfer_round_trip),
        test("xfer_page_crossing", xfer_page_crossing),
        test("xfer_errnos", xfer_errnos),
        test("copy_sizes", copy_sizes),
        test("copy_1mib", copy_1mib),
        test("copy_16mib", copy_big::copy_16mib),
        test("copy_alignments", copy_big::copy_alignments),
        test(
            "xfer_top_of_address_space",
            top_addr::xfer_top_of_address_space,
        ),
        test("copy_src_stack", copy_src_stack),
        test("copy_file_shared", copy_file_shared),
        test("copy_hugetlb", copy_hugetlb),
        test("copy_buffers", copy_buffers),
        test("copy_errnos", copy_errnos),
        test("copy_munmap_race", copy_munmap_race),
        test("rw_full", rw_full),
        test("rw_eof", rw_eof),
        test("rw_seek", rw_seek),
    ]
}

/// Window round trip of `src` at `win`, read back into a guarded heap buffer at `dst_align`.
fn window_round_trip(
    dev: &Device,
    src: &[u8],
    seed: u64,
    win: u32,
    dst_align: usize,
) -> TestResult {
    let n = src.len();
    let what = format!(
        "len {n} win {win} src {:p} dst align {dst_align}",
        src.as_ptr()
    );
    dev.write_window_from(src, win)
        .ctx(format!("{what}: USER_XFER to device"))?;
    let mut dst = vec![GUARD; n + 2 * GUARD_LEN + 64];
    let off = GUARD_LEN + dst_align;
    fill_pattern_inverted(&mut dst[off..off + n], seed);
    dev.read_window_into(&mut dst[off..off + n], win)
        .ctx(format!("{what}: USER_XFER from device"))?;
    check_guarded(&dst, off, n, seed, &what)?;
    check_pattern(src, seed, &format!("{what}: source changed"))
}

fn xfer_round_trip() -> TestResult {
    let dev = open(0)?;
    let lens = [1usize, 2, 100, 4095, 4096];
    let aligns = [0usize, 1, 3, 8, 31, 63, 16, 47];
    let mut src = vec![0u8; 4096 + 128];
    let mut n_combos = 0;
    for (i, &len) in lens.iter().enumerate() {
        for k in 0..6 {
            let a = aligns[(i + k) % aligns.len()];
            let wins = [0u32, 1, 77, 2048, 4096 - len as u32];
            let win = wins[(i + k) % wins.len()].min(4096 - len as u32);
            let seed = 300 + n_combos as u64;
            src.fill(0);
            fill_pattern(&mut src[a..a + len], seed);
            window_round_trip(&dev, &src[a..a + len], seed, win, (a * 7 + 5) % 64)?;
            n_combos += 1;
        }
    }
    diag(format!("{n_combos} USER_XFER round trips"));
    Ok(())
}

fn xfer_page_crossing() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let mut src = Anon::new(3 * pg).ctx("mmap")?;
    for (k, &(start, len)) in [
        (pg - 1, 2usize),
        (pg - 100, 200),
        (pg - 1, 4096),
        (1, 4096),
        (2 * pg - 100, 4096),
        (pg / 2, 4096),
    ]
    .iter()
    .enumerate()
    {
        let seed = 400 + k as u64;
        src.bytes_mut().fill(0);
        fill_pattern(&mut src.bytes_mut()[start..start + len], seed);
        window_round_trip(&dev, &src.bytes()[start..start + len], seed, 0, k * 9)?;
        // Page-crossing destination too: a mapping of its own, guards around the range.
        let mut dst = Anon::new(3 * pg).ctx("mmap")?;
        dst.bytes_mut().fill(GUARD);
        let d = &mut dst.bytes_mut()[start..start + len];
        dev.read_window_into(d, 0)
            .ctx(format!("read {len} into page offset {start}"))?;
        check_pattern(
            &dst.bytes()[start..start + len],
            seed,
            "page-crossing destination",
        )?;
        check_fill(&dst.bytes()[..start], GUARD, "guard before")?;
        check_fill(&dst.bytes()[start + len..], GUARD, "guard after")?;
    }
    Ok(())
}

fn ux(addr: u64, len: u32, win_offset: u32, flags: u32) -> EduDmaUserXfer {
    EduDmaUserXfer {
        addr,
        len,
        win_offset,
        flags,
        timeout_ms: 0,
    }
}

fn xfer_errnos() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let ro = Anon::with(pg, libc::PROT_READ, 0).ctx("mmap PROT_READ")?;
    let unmapped = unmapped_addr()?;
    let heap = vec![0u8; 8192];
    let h = heap.as_ptr() as u64;
    let (to, from) = (EDU_DMA_TO_DEVICE, EDU_DMA_FROM_DEVICE);
    // A range whose second page is inaccessible (PROT_NONE: no page can be pinned there).
    let half = Anon::new(2 * pg).ctx("mmap")?;
    // SAFETY: changes the protection of the second page of our own mapping.
    let r = unsafe { libc::mprotect(half.ptr.as_ptr().add(pg).cast(), pg, libc::PROT_NONE) };
    ensure_eq(r, 0, "mprotect PROT_NONE")?;
    let cases: Vec<(&str, EduDmaUserXfer, i32)> = vec![
        (
            "FROM_DEVICE into read-only memory",
            ux(ro.addr(), 64, 0, from),
            libc::EFAULT,
        ),
        (
            "TO_DEVICE from unmapped",
            ux(unmapped, 64, 0, to),
            libc::EFAULT,
        ),
        (
            "FROM_DEVICE into unmapped",
            ux(unmapped, 64, 0, from),
            libc::EFAULT,
        ),
        (
            "TO_DEVICE, second page PROT_NONE",
            ux(half.addr() + 2048, 4096, 0, to),
            libc::EFAULT,
        ),
        (
            "FROM_DEVICE, second page PROT_NONE",
            ux(half.addr() + 2048, 4096, 0, from),
            libc::EFAULT,
        ),
        ("TO_DEVICE addr 8", ux(8, 64, 0, to), libc::EFAULT),
        (
            "addr+len overflow (to)",
            ux(u64::MAX - 10, 100, 0, to),
            libc::EINVAL,
        ),
        (
            "addr+len overflow (from)",
            ux(u64::MAX - 10, 100, 0, from),
            libc::EINVAL,
        ),
        ("len 0", ux(h, 0, 0, to), libc::EINVAL),
        ("len 4097", ux(h, 4097, 0, to), libc::EINVAL),
        ("len 4097 (from)", ux(h, 4097, 0, from), libc::EINVAL),
        ("win_offset+len 4097", ux(h, 97, 4000, to), libc::EINVAL),
        ("win_offset u32::MAX", ux(h, 2, u32::MAX, to), libc::EINVAL),
        ("no direction", ux(h, 16, 0, 0), libc::EINVAL),
        ("both directions", ux(h, 16, 0, to | from), libc::EINVAL),
        ("unknown flag", ux(h, 16, 0, to | 4), libc::EINVAL),
    ];
    for (what, req, errno) in cases {
        // SAFETY: the only writable target is `heap`, not borrowed by Rust code meanwhile.
        let r = unsafe { dev.user_xfer_raw(&req) };
        expect_errno(r, errno, what)?;
    }
    // Reading from read-only memory is fine.
    dev.write_window_from(ro.bytes(), 0)
        .ctx("TO_DEVICE from read-only memory")?;
    drop(heap);
    Ok(())
}

/// COPY of `src` (holding the pattern of `seed`) into a guarded heap buffer at `dst_align`.
fn copy_check(dev: &Device, src: &[u8], seed: u64, dst_align: usize, what: &str) -> TestResult {
    let n = src.len();
    let mut dst = vec![GUARD; n + 2 * GUARD_LEN + 64];
    let off = GUARD_LEN + dst_align;
    fill_pattern_inverted(&mut dst[off..off + n], seed);
    let done = dev
        .copy(src, &mut dst[off..off + n])
        .ctx(format!("{what}: copy {n}"))?;
    ensure_eq(done, n as u64, &format!("{what}: done"))?;
    check_guarded(&dst, off, n, seed, what)?;
    check_pattern(src, seed, &format!("{what}: source changed"))
}

fn copy_sizes() -> TestResult {
    let dev = open(0)?;
    for (k, &n) in [1usize, 7, 4096, 4097, 65536 + 13].iter().enumerate() {
        for (j, &(sa, da)) in [(0usize, 0usize), (1, 5), (13, 63)].iter().enumerate() {
            let seed = 500 + (k * 3 + j) as u64;
            let mut src = vec![0u8; n + 64];
            fill_pattern(&mut src[sa..sa + n], seed);
            copy_check(
                &dev,
                &src[sa..sa + n],
                seed,
                da,
                &format!("heap align {sa}->{da}"),
            )?;
        }
    }
    Ok(())
}

fn copy_1mib() -> TestResult {
    let dev = open(1)?;
    let n = 1 << 20;
    let mut src = vec![0u8; n + 64];
    fill_pattern(&mut src[3..3 + n], 600);
    copy_check(&dev, &src[3..3 + n], 600, 5, "1 MiB heap align 3->5")
}

fn copy_src_stack() -> TestResult {
    let dev = open(0)?;
    let mut stack = [0u8; 8192 + 64];
    fill_pattern(&mut stack[5..5 + 8205], 700);
    copy_check(&dev, &stack[5..5 + 8205], 700, 9, "stack source")
}

fn copy_file_shared() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let dir = std::env::temp_dir();
    let path = dir.join(format!("edu-tests-{}.bin", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .ctx(format!("create {}", path.display()))?;
    let _ = std::fs::remove_file(&path); // the open file and mapping keep it
    file.set_len(3 * pg as u64).ctx("ftruncate")?;
    let mut map = Anon::shared_file(file.as_fd(), 3 * pg).ctx("mmap MAP_SHARED file")?;
    fill_pattern(&mut map.bytes_mut()[5..5 + 8000], 800);
    copy_check(
        &dev,
        &map.bytes()[5..5 + 8000],
        800,
        17,
        "file MAP_SHARED source",
    )?;
    // As destination: the page cache (pread) sees what the device wrote.
    map.bytes_mut().fill(GUARD);
    let src = pattern(6000, 801);
    let done = dev
        .copy(&src, &mut map.bytes_mut()[3000..9000])
        .ctx("copy into file mapping")?;
    ensure_eq(done, 6000, "done")?;
    let mut back = vec![0u8; 3 * pg];
    let n = file.read_at(&mut back, 0).ctx("pread")?;
    ensure_eq(n, 3 * pg, "pread length")?;
    check_pattern(&back[3000..9000], 801, "file contents")?;
    check_fill(&back[..3000], GUARD, "file before the range")?;
    check_fill(&back[9000..], GUARD, "file after the range")
}

fn copy_hugetlb() -> TestResult {
    let dev = open(0)?;
    let len = 2 << 20;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    let mut huge = match Anon::with(len, rw, libc::MAP_HUGETLB) {
        Ok(m) => m,
        Err(e) => return skip(format!("MAP_HUGETLB mmap failed: {e}")),
    };
    let (start, n) = (4096 - 7, 8192 + 13);
    fill_pattern(&mut huge.bytes_mut()[start..start + n], 900);
    copy_check(
        &dev,
        &huge.bytes()[start..start + n],
        900,
        3,
        "hugetlb source",
    )?;
    // As destination.
    huge.bytes_mut().fill(GUARD);
    let src = pattern(5000, 901);
    let d = 1 << 20;
    let done = dev
        .copy(&src, &mut huge.bytes_mut()[d..d + 5000])
        .ctx("copy into hugetlb")?;
    ensure_eq(done, 5000, "done")?;
    check_pattern(&huge.bytes()[d..d + 5000], 901, "hugetlb destination")?;
    check_fill(&huge.bytes()[d - GUARD_LEN..d], GUARD, "guard before")?;
    check_fill(
        &huge.bytes()[d + 5000..d + 5000 + GUARD_LEN],
        GUARD,
        "guard after",
    )
}

fn copy_buffers() -> TestResult {
    let dev = open(0)?;
    let sb = dev
        .alloc(3 * 4096, BufKind::Streaming)
        .ctx("alloc streaming")?;
    let cb = dev
        .alloc(3 * 4096, BufKind::Coherent)
        .ctx("alloc coherent")?;
    let mut sm = sb.map().ctx("mmap")?;
    let mut cm = cb.map().ctx("mmap")?;
    let all = 3 * 4096;

    // Streaming buffer -> user memory (SRC_BUF).
    sm.fill(0);
    fill_pattern(&mut sm[3..3 + 8000], 1000);
    sb.sync(0, all, SyncDir::ForDevice).ctx("sync")?;
    let mut dst = vec![GUARD; 8000 + 2 * GUARD_LEN];
    let done = dev
        .copy_with(
            CopySrc::Buffer {
                handle: sb.handle(),
                offset: 3,
            },
            CopyDst::User(&mut dst[GUARD_LEN..GUARD_LEN + 8000]),
            8000,
            0,
        )
        .ctx("copy streaming buffer -> user")?;
    ensure_eq(done, 8000, "done")?;
    check_guarded(&dst, GUARD_LEN, 8000, 1000, "user destination")?;

    // User memory -> streaming buffer (DST_BUF).
    sm.fill(GUARD);
    sb.sync(0, all, SyncDir::ForDevice).ctx("sync")?;
    let src = pattern(7000, 1001);
    let done = dev
        .copy_with(
            CopySrc::User(&src),
            CopyDst::Buffer {
                handle: sb.handle(),
                offset: 100,
            },
            7000,
            0,
        )
        .ctx("copy user -> streaming buffer")?;
    ensure_eq(done, 7000, "done")?;
    sb.sync(0, all, SyncDir::ForCpu).ctx("sync")?;
    check_pattern(&sm[100..7100], 1001, "streaming buffer destination")?;
    check_fill(&sm[..100], GUARD, "buffer before the range")?;
    check_fill(&sm[7100..], GUARD, "buffer after the range")?;

    // Coherent buffer -> streaming buffer (both flags).
    fill_pattern(&mut cm, 1002);
    sm.fill(GUARD);
    sb.sync(0, all, SyncDir::ForDevice).ctx("sync")?;
    let done = dev
        .copy_buffers(cb.handle(), 10, sb.handle(), 4097, 5000)
        .ctx("copy coherent -> streaming buffer")?;
    ensure_eq(done, 5000, "done")?;
    sb.sync(0, all, SyncDir::ForCpu).ctx("sync")?;
    check_same(&sm[4097..9097], &cm[10..5010], "buffer to buffer")?;
    check_fill(&sm[..4097], GUARD, "buffer before the range")?;
    check_fill(&sm[9097..], GUARD, "buffer after the range")?;

    // Errors on the buffer side.
    let src = [0u8; 16];
    expect_errno(
        dev.copy_with(
            CopySrc::User(&src),
            CopyDst::Buffer {
                handle: 0xdead,
                offset: 0,
            },
            16,
            0,
        ),
        libc::ENOENT,
        "DST_BUF with an unknown handle",
    )?;
    expect_errno(
        dev.copy_buffers(cb.handle(), all - 8, sb.handle(), 0, 16),
        libc::EINVAL,
        "SRC_BUF range beyond the buffer",
    )?;
    expect_errno(
        dev.copy_buffers(cb.handle(), 0, sb.handle(), u64::MAX - 4, 16),
        libc::EINVAL,
        "DST_BUF offset overflow",
    )
}

fn cp(src: u64, dst: u64, len: u64, flags: u32) -> EduDmaCopy {
    EduDmaCopy {
        src,
        dst,
        len,
        flags,
        ..Default::default()
    }
}

fn copy_errnos() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    let ro = Anon::with(pg, libc::PROT_READ, 0).ctx("mmap PROT_READ")?;
    let unmapped = unmapped_addr()?;
    let a = Anon::new(2 * pg).ctx("mmap")?;
    let b = Anon::new(2 * pg).ctx("mmap")?;
    let coh = dev
        .alloc(2 * 4096, BufKind::Coherent)
        .ctx("alloc coherent")?;
    let cm = coh.map().ctx("mmap coherent")?;
    let c = cm.as_ptr() as u64;
    let (s, d) = (a.addr(), b.addr());
    let mut cases: Vec<(&str, EduDmaCopy, i32)> = Vec::new();
    // A PFN-mapped coherent mapping is refused by GUP (fast: special PTEs; slow: the VMA). A
    // page-backed one (vIOMMU, SMMUv3) is no error case: GUP-fast takes it as O_DIRECT does
    // (`buf.coherent.user_xfer_from_mapping` moves data through it); as a destination it is
    // taken only when its PTE is already writable, else slow GUP refuses the VMA: not asserted.
    if crate::onward::coherent_backing(&cm)? == crate::onward::Backing::Pfn {
        cases.push(("coherent mapping as source", cp(c, d, 64, 0), libc::EFAULT));
        cases.push((
            "coherent mapping as destination",
            cp(s, c, 64, 0),
            libc::EFAULT,
        ));
    }
    cases.extend([
        (
            "read-only destination",
            cp(s, ro.addr(), 64, 0),
            libc::EFAULT,
        ),
        ("unmapped source", cp(unmapped, d, 64, 0), libc::EFAULT),
        ("unmapped destination", cp(s, unmapped, 64, 0), libc::EFAULT),
        (
            "src+len overflow",
            cp(u64::MAX - 10, d, 100, 0),
            libc::EINVAL,
        ),
        (
            "dst+len overflow",
            cp(s, u64::MAX - 10, 100, 0),
            libc::EINVAL,
        ),
        ("len 0", cp(s, d, 0, 0), libc::EINVAL),
        (
            "len 2^33 (above the 4 GiB cap)",
            cp(unmapped, unmapped, 1 << 33, 0),
            libc::E2BIG,
        ),
        ("unknown flag", cp(s, d, 64, 4), libc::EINVAL),
        (
            "unknown flag 0x80000000",
            cp(s, d, 64, 0x8000_0000),
            libc::EINVAL,
        ),
    ]);
    for (what, mut req, errno) in cases {
        // SAFETY: the writable targets are our own anonymous mappings, not borrowed meanwhile.
        let r = unsafe { dev.copy_raw(&mut req) };
        expect_errno(r, errno, what)?;
    }
    // USER_XFER's limit does not apply: COPY moves more than a window.
    let mut req = cp(s, d, 2 * pg as u64, 0);
    // SAFETY: as above.
    unsafe { dev.copy_raw(&mut req) }.ctx("copy of 2 pages")?;
    ensure_eq(req.done, 2 * pg as u64, "done")
}

/// Another thread unmaps the source in the middle of a COPY: the copy either completes or
/// fails with EFAULT, and the process survives.
fn copy_munmap_race() -> TestResult {
    let dev = open(0)?;
    let len = 64 * 1024;
    let src = Anon::new(len).ctx("mmap")?;
    // SAFETY: a fresh mapping, written before the copy starts.
    let src_bytes = unsafe { std::slice::from_raw_parts_mut(src.ptr.as_ptr(), len) };
    fill_pattern(src_bytes, 1100);
    let addr = src.addr() as usize;
    std::mem::forget(src); // unmapped by the racing thread, exactly once
    let mut dst = vec![0u8; len];
    let mut req = cp(addr as u64, dst.as_mut_ptr() as u64, len as u64, 0);
    let r = std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: the mapping was leaked for this; nothing else uses it.
            unsafe { libc::munmap(addr as *mut libc::c_void, len) };
        });
        // SAFETY: `dst` is not otherwise borrowed during the call.
        unsafe { dev.copy_raw(&mut req) }
    });
    diag(format!("copy during munmap: {r:?}, done {}", req.done));
    match r {
        Ok(()) => {
            ensure_eq(req.done, len as u64, "done")?;
            check_pattern(&dst, 1100, "copied data")?;
        }
        Err(e) => {
            expect_errno(
                Err::<(), _>(e),
                libc::EFAULT,
                "copy from a source unmapped midway",
            )?;
            let done = req.done as usize;
            ensure(done < len, || format!("failed, yet done = {done}"))?;
            check_pattern(&dst[..done], 1100, "bytes reported done")?;
        }
    }
    // Still alive and working.
    let v = pattern(5000, 1101);
    let mut out = vec![0u8; 5000];
    dev.copy(&v, &mut out).ctx("copy after the race")?;
    check_pattern(&out, 1101, "copy after the race")
}

fn rw_full() -> TestResult {
    let dev = open(0)?;
    let f = dev.file();
    let data = pattern(4096, 1200);
    ensure_eq(
        f.write_at(&data, 0).ctx("pwrite 4096 at 0")?,
        4096,
        "pwrite length",
    )?;
    let mut back = vec![0u8; 4096];
    ensure_eq(
        f.read_at(&mut back, 0).ctx("pread 4096 at 0")?,
        4096,
        "pread length",
    )?;
    check_pattern(&back, 1200, "pread after pwrite")?;
    // The window is the device's: USER_XFER sees the same bytes.
    let mut w = vec![0u8; 4096];
    dev.read_window_into(&mut w, 0).ctx("USER_XFER read")?;
    check_pattern(&w, 1200, "window via USER_XFER")?;
    // Partial, unaligned.
    let part = pattern(333, 1201);
    ensure_eq(
        f.write_at(&part, 1001).ctx("pwrite 333 at 1001")?,
        333,
        "pwrite length",
    )?;
    ensure_eq(f.read_at(&mut back, 0).ctx("pread")?, 4096, "pread length")?;
    check_pattern(&back[1001..1334], 1201, "partial write")?;
    check_same(
        &back[..1001],
        &data[..1001],
        "bytes before the partial write",
    )?;
    check_same(
        &back[1334..],
        &data[1334..],
        "bytes after the partial write",
    )
}

fn rw_eof() -> TestResult {
    let dev = open(0)?;
    let f = dev.file();
    let mut buf = vec![0u8; 200];
    ensure_eq(
        f.read_at(&mut buf, 4096).ctx("pread at 4096")?,
        0,
        "pread at 4096 (EOF)",
    )?;
    ensure_eq(
        f.read_at(&mut buf, 10_000).ctx("pread at 10000")?,
        0,
        "pread past EOF",
    )?;
    expect_errno(f.write_at(&[1, 2, 3], 4096), libc::ENOSPC, "pwrite at 4096")?;
    let data = pattern(100, 1300);
    ensure_eq(
        f.write_at(&data, 4050).ctx("pwrite 100 at 4050")?,
        46,
        "short pwrite at 4050",
    )?;
    ensure_eq(
        f.read_at(&mut buf[..100], 4050).ctx("pread")?,
        46,
        "short pread at 4050",
    )?;
    check_same(&buf[..46], &data[..46], "bytes written at 4050")?;
    ensure_eq(
        f.read_at(&mut buf, 4000).ctx("pread 200 at 4000")?,
        96,
        "short pread at 4000",
    )?;
    Ok(())
}

fn rw_seek() -> TestResult {
    let dev = open(0)?;
    let mut f = dev.file();
    let a = pattern(10, 1400);
    let b = pattern(20, 1401);
    ensure_eq(f.seek(SeekFrom::Start(0)).ctx("lseek 0")?, 0, "lseek")?;
    ensure_eq(f.write(&a).ctx("write 10")?, 10, "write length")?;
    ensure_eq(
        f.stream_position().ctx("lseek CUR")?,
        10,
        "position after write 10",
    )?;
    ensure_eq(f.write(&b).ctx("write 20")?, 20, "write length")?;
    ensure_eq(
        f.stream_position().ctx("lseek CUR")?,
        30,
        "position after write 20",
    )?;
    f.seek(SeekFrom::Start(0)).ctx("lseek 0")?;
    let mut back = [0u8; 30];
    ensure_eq(f.read(&mut back).ctx("read 30")?, 30, "read length")?;
    ensure_eq(
        f.stream_position().ctx("lseek CUR")?,
        30,
        "position after read 30",
    )?;
    check_same(&back[..10], &a, "first write")?;
    check_same(&back[10..], &b, "second write")?;
    f.seek(SeekFrom::Current(-20)).ctx("lseek -20 CUR")?;
    let mut mid = [0u8; 5];
    ensure_eq(f.read(&mut mid).ctx("read 5")?, 5, "read length")?;
    check_same(&mid, &b[..5], "read after relative seek")?;
    ensure_eq(f.stream_position().ctx("lseek CUR")?, 15, "position")?;
    // Up to the end.
    f.seek(SeekFrom::Start(4090)).ctx("lseek 4090")?;
    ensure_eq(
        f.write(&[7u8; 10]).ctx("write at 4090")?,
        6,
        "short write at 4090",
    )?;
    ensure_eq(
        f.stream_position().ctx("lseek CUR")?,
        4096,
        "position at the end",
    )?;
    expect_errno(f.write(&[7u8; 1]), libc::ENOSPC, "write at the end")?;
    ensure_eq(
        f.read(&mut mid).ctx("read at the end")?,
        0,
        "read at the end (EOF)",
    )?;
    Ok(())
}
