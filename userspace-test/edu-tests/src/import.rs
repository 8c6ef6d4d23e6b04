//! dma-buf import (`EDU_DMA_IOC_BUF_IMPORT`), in group `dmabuf`: a dma-buf of edu0 imported by
//! edu1 (edu0 writes, edu1 reads by DMA, nobody copies), of the system DMA-BUF heap and of
//! udmabuf (DMA into and out of them, checked through their own mmap with `DMA_BUF_IOCTL_SYNC`),
//! errnos, free orders, a dma-buf imported back into its own device (no second mapping); in group `unbind`: unbind of the importing and of the exporting device.
//! Every byte is checked. Ownership is handed as the README says: the device that wrote syncs
//! for the CPU (`BUF_SYNC` on its handle, or `SYNC START` where the exporter syncs its
//! importers), the device that reads syncs for the device; with `swiotlb=force` a missing step
//! reads stale bounce buffers.

use std::os::fd::{AsFd, AsRawFd, IntoRawFd};

use edu_dma::dmabuf::{
    self, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START,
    DMA_BUF_SYNC_WRITE,
};
use edu_dma::uapi::*;
use edu_dma::{BufKind, CopyDst, CopySrc, Dir, Imported, SyncDir};

use crate::dmabuf::{cpu_fill, exported, map_all, swiotlb_forced, sync};
use crate::harness::sysfs::unbind;
use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("import_cross_device", import_cross_device),
        test("import_copy_both_ways", import_copy_both_ways),
        test("import_system_heap", import_system_heap),
        test("import_udmabuf", import_udmabuf),
        test("import_errors", import_errors),
        test("import_free_order", import_free_order),
        test("import_queue", import_queue),
        test("import_self", import_self),
    ]
}

/// Pages of the dma-bufs the tests import.
const PAGES: usize = 3;

/// The exporting device's writes to the CPU, then to every importer's mapping (a read-write
/// `DMA_BUF_IOCTL_SYNC` start and end).
fn to_importers(fd: std::os::fd::BorrowedFd<'_>) -> TestResult {
    sync(fd, DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW, "start")?;
    sync(fd, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW, "end")
}

/// The device reads `[off, off + n)` of the import into its window; the window must hold the
/// pattern `seed`.
fn device_reads(imp: &Imported<'_>, off: u64, n: usize, seed: u64, what: &str) -> TestResult {
    imp.xfer(off, 0, n as u32, Dir::ToDevice, 0)
        .ctx(format!("{what}: xfer import -> window"))?;
    let mut win = vec![GUARD; n];
    imp.device()
        .read_window_into(&mut win, 0)
        .ctx(format!("{what}: read window"))?;
    check_pattern(&win, seed, what)
}

/// The device writes the pattern `seed` into `[off, off + n)` of the import (through its window).
fn device_writes(imp: &Imported<'_>, off: u64, n: usize, seed: u64, what: &str) -> TestResult {
    imp.device()
        .write_window_from(&pattern(n, seed), 0)
        .ctx(format!("{what}: window := pattern"))?;
    imp.xfer(off, 0, n as u32, Dir::FromDevice, 0)
        .ctx(format!("{what}: xfer window -> import"))
}

/// edu0 writes a streaming buffer by DMA, exports it; edu1 imports the dma-buf and reads every
/// page, and a range across a page boundary, by DMA.
fn import_cross_device() -> TestResult {
    let (d0, d1) = (open(0)?, open(1)?);
    let pg = page();
    let (buf, fd) = exported(&d0, 9000)?;
    let imp = d1.import(fd.as_fd()).ctx("import into edu1")?;
    ensure_eq(imp.size(), (PAGES * pg) as u64, "imported size")?;
    to_importers(fd.as_fd())?;
    let before = d1.info().ctx("info")?;
    for i in 0..PAGES {
        device_reads(
            &imp,
            (i * pg) as u64,
            pg,
            9000 + i as u64,
            &format!("edu1 reads page {i}"),
        )?;
    }
    // 4096 bytes from the middle of page 0: two pieces where the pages are separate segments, one
    // where the DMA layer gave them as one (the vIOMMU merges them; physically adjacent pages
    // merge anyway: the device claims no segment limit).
    imp.xfer(100, 0, pg as u32, Dir::ToDevice, 0)
        .ctx("xfer across a page")?;
    let mut win = vec![GUARD; pg];
    d1.read_window_into(&mut win, 0).ctx("read window")?;
    let want: Vec<u8> = [pattern(pg, 9000), pattern(pg, 9001)].concat()[100..100 + pg].to_vec();
    check_same(&win, &want, "edu1 reads across the page boundary")?;
    let after = d1.info().ctx("info")?;
    // PAGES whole pages, 1 or 2 pieces across the boundary, plus one USER_XFER per read (1
    // segment or more: the window reads are plain user memory).
    ensure(
        after.dma_count - before.dma_count >= (2 * PAGES + 2) as u64,
        || format!("edu1 ran {} commands", after.dma_count - before.dma_count),
    )?;
    diag("edu0 wrote 3 pages by DMA, edu1 read them from the imported dma-buf by DMA");
    imp.free().ctx("free import")?;
    buf.free().ctx("free buffer")
}

/// COPY with an imported side: user memory -> import on edu1, then edu0 reads it from its own
/// buffer; and import -> user memory.
fn import_copy_both_ways() -> TestResult {
    let (d0, d1) = (open(0)?, open(1)?);
    let pg = page();
    let len = PAGES * pg;
    let buf = d0
        .alloc(len as u64, BufKind::Streaming)
        .ctx("alloc on edu0")?;
    let fd = buf.export().ctx("export")?;
    let imp = d1.import(fd.as_fd()).ctx("import into edu1")?;
    let src = pattern(len - 300, 9100);
    let done = d1
        .copy_with(
            CopySrc::User(&src),
            CopyDst::Buffer {
                handle: imp.handle(),
                offset: 300,
            },
            src.len() as u64,
            0,
        )
        .ctx("COPY user -> import")?;
    ensure_eq(done, src.len() as u64, "COPY done")?;
    // edu1 wrote: its mapping to the CPU, then edu0's own mapping to edu0.
    imp.sync(0, len as u64, SyncDir::ForCpu)
        .ctx("BUF_SYNC import for the CPU")?;
    buf.sync(0, len as u64, SyncDir::ForDevice)
        .ctx("BUF_SYNC edu0 buffer for the device")?;
    let mut got = vec![GUARD; src.len()];
    let done = d0
        .copy_with(
            CopySrc::Buffer {
                handle: buf.handle(),
                offset: 300,
            },
            CopyDst::User(&mut got),
            src.len() as u64,
            0,
        )
        .ctx("COPY edu0 buffer -> user")?;
    ensure_eq(done, src.len() as u64, "COPY done")?;
    check_pattern(&got, 9100, "edu0 reads what edu1 copied into the import")?;
    got.fill(GUARD);
    let done = d1
        .copy_with(
            CopySrc::Buffer {
                handle: imp.handle(),
                offset: 300,
            },
            CopyDst::User(&mut got),
            src.len() as u64,
            0,
        )
        .ctx("COPY import -> user")?;
    ensure_eq(done, src.len() as u64, "COPY done")?;
    check_pattern(&got, 9100, "COPY from the import")
}

/// A system-heap dma-buf: the CPU writes it through its mmap (SYNC START/END), the device reads
/// it; the device writes a page, SYNC START, the CPU reads it (the heap syncs its importers).
fn import_system_heap() -> TestResult {
    if !std::path::Path::new(dmabuf::SYSTEM_HEAP).exists() {
        return Err(format!(
            "{} missing (CONFIG_DMABUF_HEAPS_SYSTEM)",
            dmabuf::SYSTEM_HEAP
        ));
    }
    let pg = page();
    let len = PAGES * pg;
    let fd = dmabuf::heap_alloc(len as u64).ctx("DMA_HEAP_IOCTL_ALLOC")?;
    let dev = open(0)?;
    let imp = dev.import(fd.as_fd()).ctx("import heap dma-buf")?;
    ensure_eq(imp.size(), len as u64, "imported size")?;
    let mut m = map_all(fd.as_fd(), "heap")?;
    cpu_fill(fd.as_fd(), &mut m, 9200)?;
    sync(
        fd.as_fd(),
        DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE,
        "end write",
    )?;
    for i in 0..PAGES {
        device_reads(
            &imp,
            (i * pg) as u64,
            pg,
            9200 + i as u64,
            &format!("device reads heap page {i}"),
        )?;
    }
    device_writes(&imp, pg as u64, pg, 9211, "device writes heap page 1")?;
    sync(
        fd.as_fd(),
        DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
        "start read",
    )?;
    check_pattern(&m[..pg], 9200, "heap page 0 (CPU)")?;
    check_pattern(
        &m[pg..2 * pg],
        9211,
        "heap page 1 (CPU, written by the device)",
    )?;
    check_pattern(&m[2 * pg..], 9202, "heap page 2 (CPU)")?;
    sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "end read")?;
    diag("system heap: CPU -> device and device -> CPU through the import, every byte checked");
    imp.free().ctx("free import")
}

/// A udmabuf of a sealed memfd: the CPU writes the memfd, the device reads it through the import;
/// the device writes a page, BUF_SYNC for the CPU (udmabuf syncs only its own mapping), the CPU
/// reads it through the udmabuf's mmap (SYNC START/END) and through the memfd.
fn import_udmabuf() -> TestResult {
    if !std::path::Path::new(dmabuf::UDMABUF).exists() {
        return Err(format!("{} missing (CONFIG_UDMABUF)", dmabuf::UDMABUF));
    }
    let pg = page();
    let len = PAGES * pg;
    let memfd = dmabuf::sealed_memfd(len as u64).ctx("memfd")?;
    let mut mm = Anon::shared_file(memfd.as_fd(), len).ctx("mmap memfd")?;
    for (i, p) in mm.bytes_mut().chunks_mut(pg).enumerate() {
        fill_pattern(p, 9300 + i as u64);
    }
    let fd = dmabuf::udmabuf_create(memfd.as_fd(), 0, len as u64).ctx("UDMABUF_CREATE")?;
    let dev = open(0)?;
    let imp = dev.import(fd.as_fd()).ctx("import udmabuf")?;
    ensure_eq(imp.size(), len as u64, "imported size")?;
    imp.sync(0, len as u64, SyncDir::ForDevice)
        .ctx("BUF_SYNC import for the device")?;
    for i in 0..PAGES {
        device_reads(
            &imp,
            (i * pg) as u64,
            pg,
            9300 + i as u64,
            &format!("device reads udmabuf page {i}"),
        )?;
    }
    device_writes(&imp, pg as u64, pg, 9311, "device writes udmabuf page 1")?;
    if swiotlb_forced() {
        // The device wrote edu's bounce buffer: the memfd's page has the old bytes until the
        // import's own sync (udmabuf's SYNC START would not copy them: it syncs its own mapping).
        check_pattern(
            &mm.bytes()[pg..2 * pg],
            9301,
            "memfd page 1 before BUF_SYNC (swiotlb=force: bytes in the bounce buffer)",
        )?;
        diag("swiotlb=force: before the import's BUF_SYNC FOR_CPU the memfd has the old bytes");
    }
    imp.sync(pg as u64, pg as u64, SyncDir::ForCpu)
        .ctx("BUF_SYNC import page 1 for the CPU")?;
    let m = dmabuf::map(fd.as_fd(), 0, len).ctx("mmap udmabuf")?;
    sync(
        fd.as_fd(),
        DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
        "start read",
    )?;
    check_pattern(&m[..pg], 9300, "udmabuf page 0")?;
    check_pattern(
        &m[pg..2 * pg],
        9311,
        "udmabuf page 1 (written by the device)",
    )?;
    check_pattern(&m[2 * pg..], 9302, "udmabuf page 2")?;
    sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "end read")?;
    check_pattern(
        &mm.bytes()[pg..2 * pg],
        9311,
        "memfd page 1 (written by the device)",
    )?;
    diag("udmabuf: memfd -> device and device -> memfd through the import, every byte checked");
    imp.free().ctx("free import")
}

fn import_req(fd: i32) -> EduDmaBufImport {
    EduDmaBufImport {
        fd,
        ..Default::default()
    }
}

fn import_errors() -> TestResult {
    let dev = open(0)?;
    let pg = page();
    // Not a dma-buf: the node itself, a regular file, a memfd.
    expect_errno(
        dev.import_raw(&mut import_req(dev.fd())),
        libc::EINVAL,
        "import of the edu node's fd",
    )?;
    let memfd = dmabuf::sealed_memfd(pg as u64).ctx("memfd")?;
    expect_errno(
        dev.import_raw(&mut import_req(memfd.as_raw_fd())),
        libc::EINVAL,
        "import of a memfd",
    )?;
    // No such fd: negative, closed.
    expect_errno(
        dev.import_raw(&mut import_req(-1)),
        libc::EBADF,
        "import of fd -1",
    )?;
    let closed = dmabuf::heap_alloc(pg as u64)
        .ctx("heap alloc")?
        .into_raw_fd();
    // SAFETY: `closed` is ours (into_raw_fd) and closed once, here.
    unsafe { libc::close(closed) };
    expect_errno(
        dev.import_raw(&mut import_req(closed)),
        libc::EBADF,
        "import of a closed dma-buf fd",
    )?;
    // Reserved fields and flags.
    let fd = dmabuf::heap_alloc((2 * pg) as u64).ctx("heap alloc")?;
    for (flags, reserved) in [(1u32, 0u32), (0x8000_0000, 0), (0, 1)] {
        let mut r = EduDmaBufImport {
            fd: fd.as_raw_fd(),
            flags,
            reserved,
            ..Default::default()
        };
        expect_errno(
            dev.import_raw(&mut r),
            libc::EINVAL,
            &format!("import with flags {flags:#x} reserved {reserved}"),
        )?;
        ensure_eq(r.handle, 0, "no handle on error")?;
    }
    let imp = dev.import(fd.as_fd()).ctx("import")?;
    // Ranges: past the end.
    expect_errno(
        imp.xfer((2 * pg - 10) as u64, 0, 11, Dir::ToDevice, 0),
        libc::EINVAL,
        "xfer past the end of the import",
    )?;
    expect_errno(
        imp.sync(pg as u64, (pg + 1) as u64, SyncDir::ForCpu),
        libc::EINVAL,
        "sync past the end of the import",
    )?;
    // Not exported again, not mapped through the node.
    expect_errno(
        dev.export(imp.handle(), EDU_DMA_EXPORT_RDWR),
        libc::EINVAL,
        "export of an imported handle",
    )?;
    expect_errno(
        dev.map(edu_dma::split::mmap_offset(imp.handle()), pg),
        libc::EINVAL,
        "mmap of an imported handle",
    )?;
    // Another file does not know the handle.
    let other = open(0)?;
    expect_errno(
        other.xfer(imp.handle(), 0, 0, 1, Dir::ToDevice, 0),
        libc::ENOENT,
        "xfer on another file",
    )?;
    let h = imp.handle();
    imp.free().ctx("free import")?;
    expect_errno(dev.free(h), libc::ENOENT, "second free")?;
    expect_errno(
        dev.xfer(h, 0, 0, 1, Dir::ToDevice, 0),
        libc::ENOENT,
        "xfer after free",
    )
}

/// The handle and the fd are independent references: close the fd first and the handle works;
/// free the handle first and the fd works; free the exporter's buffer and close its file, and
/// the import still reads the pages.
fn import_free_order() -> TestResult {
    let pg = page();
    let dev = open(0)?;
    // fd closed before BUF_FREE.
    let fd = dmabuf::heap_alloc(pg as u64).ctx("heap alloc")?;
    let mut m = dmabuf::map(fd.as_fd(), 0, pg).ctx("mmap heap")?;
    sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE, "start")?;
    fill_pattern(&mut m, 9400);
    sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE, "end")?;
    let imp = dev.import(fd.as_fd()).ctx("import")?;
    drop(fd);
    device_reads(&imp, 0, pg, 9400, "read after the fd was closed")?;
    drop(m);
    device_reads(&imp, 0, pg, 9400, "read after the fd and its mapping went")?;
    imp.free().ctx("free after close")?;
    // BUF_FREE before the fd is closed.
    let fd = dmabuf::heap_alloc(pg as u64).ctx("heap alloc")?;
    let imp = dev.import(fd.as_fd()).ctx("import")?;
    device_writes(&imp, 0, pg, 9401, "device writes the heap buffer")?;
    imp.sync(0, pg as u64, SyncDir::ForCpu)
        .ctx("BUF_SYNC for the CPU")?;
    imp.free().ctx("free before close")?;
    let m = dmabuf::map(fd.as_fd(), 0, pg).ctx("mmap after free")?;
    sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ, "start")?;
    check_pattern(&m, 9401, "heap buffer after BUF_FREE of its import")?;
    sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ, "end")?;
    // The exporting edu file goes first: buffer freed, file closed, fd closed.
    let d0 = open(0)?;
    let d1 = open(1)?;
    let buf = d0.alloc(pg as u64, BufKind::Streaming).ctx("alloc edu0")?;
    d0.write_window_from(&pattern(pg, 9402), 0)
        .ctx("edu0 window")?;
    buf.xfer(0, 0, pg as u32, Dir::FromDevice, 0)
        .ctx("edu0 writes")?;
    buf.sync(0, pg as u64, SyncDir::ForCpu)
        .ctx("edu0 sync for cpu")?;
    let fd = buf.export().ctx("export")?;
    let imp = d1.import(fd.as_fd()).ctx("import into edu1")?;
    buf.free().ctx("free edu0 buffer")?;
    drop(d0);
    drop(fd);
    imp.sync(0, pg as u64, SyncDir::ForDevice)
        .ctx("BUF_SYNC import for the device")?;
    device_reads(
        &imp,
        0,
        pg,
        9402,
        "edu1 reads after edu0's buffer, file and fd went",
    )?;
    // The file goes with the handle still in it (its release frees it).
    imp.into_handle();
    drop(d1);
    drop(dev);
    Ok(())
}

/// Group `unbind`: the importing device (edu1) is unbound while it holds an import of edu0's
/// dma-buf: the attachment goes (DMA-API debug: nothing left mapped), the handle's file gets
/// `ENODEV`, the dma-buf and edu0 are unaffected; edu1 comes back.
pub fn unbind_importer() -> TestResult {
    let (d0, d1) = (open(0)?, open(1)?);
    let addr = d1.info().ctx("info")?.pci_address();
    let pg = page();
    let buf = d0.alloc(pg as u64, BufKind::Streaming).ctx("alloc edu0")?;
    d0.write_window_from(&pattern(pg, 9500), 0)
        .ctx("edu0 window")?;
    buf.xfer(0, 0, pg as u32, Dir::FromDevice, 0)
        .ctx("edu0 writes")?;
    let fd = buf.export().ctx("export")?;
    let imp = d1.import(fd.as_fd()).ctx("import into edu1")?;
    to_importers(fd.as_fd())?;
    device_reads(&imp, 0, pg, 9500, "edu1 reads before unbind")?;
    let h = imp.into_handle();
    diag(format!(
        "unbinding {addr} (the importer) with an import held"
    ));
    let mut rebind = unbind(&addr)?;
    expect_errno(
        d1.xfer(h, 0, 0, pg as u32, Dir::ToDevice, 0),
        libc::ENODEV,
        "xfer on the import after unbind",
    )?;
    expect_errno(
        d1.sync(h, 0, pg as u64, SyncDir::ForCpu),
        libc::ENODEV,
        "sync of the import after unbind",
    )?;
    expect_errno(
        d1.import_raw(&mut import_req(fd.as_raw_fd())),
        libc::ENODEV,
        "import on the unbound device",
    )?;
    // The exporter's side is intact: SYNC (no importer table left), edu0 reads its buffer.
    sync(
        fd.as_fd(),
        DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW,
        "start after unbind",
    )?;
    sync(
        fd.as_fd(),
        DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW,
        "end after unbind",
    )?;
    buf.xfer(0, 0, pg as u32, Dir::ToDevice, 0)
        .ctx("edu0 reads")?;
    let mut win = vec![GUARD; pg];
    d0.read_window_into(&mut win, 0).ctx("edu0 window")?;
    check_pattern(
        &win,
        9500,
        "edu0 reads its exported buffer after the importer's unbind",
    )?;
    // The handle is only forgotten: unbind already dropped its mapping and attachment.
    d1.free(h).ctx("free of the import after unbind")?;
    expect_errno(d1.free(h), libc::ENOENT, "second free after unbind")?;
    drop(d1);
    let d = rebind.bind_and_open()?;
    // The new binding imports again.
    let imp = d.import(fd.as_fd()).ctx("import after rebind")?;
    device_reads(&imp, 0, pg, 9500, "edu1 reads after rebind")?;
    drop(imp);
    round_trip_on(&d, 9501, "after rebind")
}

/// Group `unbind`: the exporting device (edu1) is unbound while edu0 holds an import of its
/// dma-buf. edu1's own mapping of the buffer goes; the pages are the dma-buf's (refcounted), so
/// the importer keeps reading and writing valid memory, and the dma-buf's mmap sees it.
pub fn unbind_exporter() -> TestResult {
    let (d0, d1) = (open(0)?, open(1)?);
    let addr = d1.info().ctx("info")?.pci_address();
    let pg = page();
    let len = PAGES * pg;
    let (buf, fd) = exported(&d1, 9600)?;
    let imp = d0.import(fd.as_fd()).ctx("import into edu0")?;
    to_importers(fd.as_fd())?;
    buf.into_handle();
    diag(format!(
        "unbinding {addr} (the exporter) while edu0 holds an import"
    ));
    let mut rebind = unbind(&addr)?;
    for i in 0..PAGES {
        device_reads(
            &imp,
            (i * pg) as u64,
            pg,
            9600 + i as u64,
            &format!("edu0 reads page {i} after the exporter's unbind"),
        )?;
    }
    device_writes(
        &imp,
        pg as u64,
        pg,
        9611,
        "edu0 writes page 1 after the exporter's unbind",
    )?;
    imp.sync(0, len as u64, SyncDir::ForCpu)
        .ctx("BUF_SYNC import for the CPU")?;
    let m = map_all(fd.as_fd(), "after unbind")?;
    check_pattern(&m[..pg], 9600, "page 0 through the dma-buf's mmap")?;
    check_pattern(
        &m[pg..2 * pg],
        9611,
        "page 1 (written by edu0) through the mmap",
    )?;
    check_pattern(&m[2 * pg..], 9602, "page 2 through the mmap")?;
    drop(d1);
    let d = rebind.bind_and_open()?;
    drop((m, imp, fd));
    round_trip_on(&d, 9612, "after rebind")
}

/// An imported handle in queued requests: edu1 queues a read of every page of edu0's exported
/// buffer (the device's mapping of the import, split at the window) and reaps them in order.
fn import_queue() -> TestResult {
    let (d0, d1) = (open(0)?, open(1)?);
    let pg = page();
    let (_buf, fd) = exported(&d0, 9300)?;
    let imp = d1.import(fd.as_fd()).ctx("import into edu1")?;
    to_importers(fd.as_fd())?;
    let q = edu_dma::Queue::new(&d1);
    for i in 0..PAGES {
        // One request at a time: each leaves its page in the one window, checked before the next.
        let req = [edu_dma::uapi::EduDmaReq::buffer_xfer(
            700 + i as u64,
            imp.handle(),
            (i * pg) as u64,
            0,
            pg as u32,
            Dir::ToDevice,
        )];
        ensure_eq(
            q.submit_buffers(&req).ctx("SUBMIT of an imported handle")?,
            1,
            "queued",
        )?;
        let c = q.reap_n(1, 5000).ctx("REAP")?;
        ensure_eq(c[0].cookie, 700 + i as u64, "cookie")?;
        ensure_eq(c[0].result(), Ok(()), "status")?;
        ensure_eq(c[0].done, pg as u64, "bytes done")?;
        let mut win = vec![GUARD; pg];
        d1.read_window_into(&mut win, 0)
            .ctx("edu1 window -> user")?;
        check_pattern(
            &win,
            9300 + i as u64,
            &format!("page {i} through the queue"),
        )?;
    }
    imp.free().ctx("BUF_FREE of the import")
}

/// DMA-API debug's live mappings of the device at PCI address `addr` (`dma-api/dump`); `None`
/// where the kernel has no DMA-API debug.
fn dma_api_mappings(addr: &str) -> Option<usize> {
    let dump = std::fs::read_to_string("/sys/kernel/debug/dma-api/dump").ok()?;
    Some(dump.lines().filter(|l| l.contains(addr)).count())
}

/// A dma-buf of edu0 imported back into edu0 (from the exporting file and from another file):
/// the handle is edu0's buffer again (no second mapping of its pages: DMA-API debug counts the
/// same mappings before and after), DMA through it and through the buffer sees the same bytes,
/// partial `BUF_SYNC`s of either are the same ownership steps (DMA-API debug stays clean), it
/// is an import (not exported again) and it outlives the exporting handle, file and fd.
fn import_self() -> TestResult {
    let pg = page();
    let len = PAGES * pg;
    let d0 = open(0)?;
    let addr = d0.info().ctx("info")?.pci_address();
    let buf = d0.alloc(len as u64, BufKind::Streaming).ctx("alloc")?;
    let fd = buf.export().ctx("export")?;
    let before = dma_api_mappings(&addr);
    let imp = d0.import(fd.as_fd()).ctx("import into its own device")?;
    let other = open(0)?;
    let imp2 = other
        .import(fd.as_fd())
        .ctx("import into another file of edu0")?;
    let after = dma_api_mappings(&addr);
    // (Not the words the boot's kernel-log check looks for: this line goes to the console.)
    diag(format!(
        "dma-api/dump entries of {addr}: {before:?} before the imports, {after:?} after"
    ));
    ensure_eq(
        after,
        before,
        "dma-api/dump entries of edu0 after two self-imports",
    )?;
    ensure_eq(imp.size(), len as u64, "import size")?;
    // The device writes through the import across a page boundary; the buffer reads it, after
    // partial syncs of the import (the device wrote: to the CPU and back to the device).
    device_writes(
        &imp,
        pg as u64 - 700,
        1500,
        9500,
        "device writes through the self-import",
    )?;
    imp.sync(pg as u64 - 700, 1500, SyncDir::ForCpu)
        .ctx("partial BUF_SYNC of the import for the CPU")?;
    imp.sync(pg as u64 - 700, 1500, SyncDir::ForDevice)
        .ctx("partial BUF_SYNC of the import for the device")?;
    buf.xfer(pg as u64 - 700, 0, 1500, Dir::ToDevice, 0)
        .ctx("buffer -> window")?;
    let mut win = vec![GUARD; 1500];
    d0.read_window_into(&mut win, 0).ctx("read window")?;
    check_pattern(&win, 9500, "the buffer reads what the self-import received")?;
    // And the other way, through the other file's import, with partial syncs of the buffer.
    d0.write_window_from(&pattern(2000, 9501), 0)
        .ctx("window := pattern")?;
    buf.xfer(2 * pg as u64 - 1000, 0, 2000, Dir::FromDevice, 0)
        .ctx("window -> buffer")?;
    buf.sync(2 * pg as u64 - 1000, 2000, SyncDir::ForCpu)
        .ctx("partial BUF_SYNC of the buffer for the CPU")?;
    buf.sync(2 * pg as u64 - 1000, 2000, SyncDir::ForDevice)
        .ctx("partial BUF_SYNC of the buffer for the device")?;
    device_reads(
        &imp2,
        2 * pg as u64 - 1000,
        2000,
        9501,
        "the other file's self-import",
    )?;
    // Still an import: no mmap through the node, no export.
    expect_errno(
        d0.export(imp.handle(), 0).map(|_| ()),
        libc::EINVAL,
        "export of the self-import",
    )?;
    // It outlives the exporting handle, its file and the fd.
    buf.free().ctx("free the exported buffer")?;
    drop(fd);
    device_writes(&imp2, 0, pg, 9502, "device writes after the buffer went")?;
    device_reads(&imp, 0, pg, 9502, "device reads after the buffer went")?;
    imp.free().ctx("free the self-import")?;
    drop(d0);
    device_reads(
        &imp2,
        0,
        pg,
        9502,
        "the other file's import after the exporting file closed",
    )?;
    imp2.free().ctx("free the other file's self-import")?;
    // The buffer's own mappings (one per page) went with its last reference, the imports'.
    if let (Some(b), Some(g)) = (before, dma_api_mappings(&addr)) {
        ensure(g + PAGES <= b, || {
            format!(
                "{g} dma-api/dump entries of edu0 left of {b}: the buffer's {PAGES} should be gone"
            )
        })?;
    }
    Ok(())
}
