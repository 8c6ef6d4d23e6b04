//! io_uring: a mapping registered as a fixed buffer (`IORING_REGISTER_BUFFERS`, a long-term pin of
//! its pages, counted in `VmPin`), `WRITE_FIXED` / `READ_FIXED` to an `O_DIRECT` ext4 file; the
//! driver's own read/write through io_uring (`READ`/`WRITE` with user addresses, the fixed forms
//! with the kernel's bvec iterators); unregister and `BUF_FREE` in both orders.
//!
//! The rings are plain (no `DEFER_TASKRUN`) and closed after each test: their completions,
//! io-wq worker creation and teardown queue `TWA_SIGNAL` task work on the test's thread, which
//! breaks the interruptible waits of its driver calls; the driver restarts those (`ERESTARTSYS`),
//! so they must succeed (`timeouts.taskwork_restart` pins that down).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

use edu_dma::{BufKind, Dir, Mapping, SyncDir};
use io_uring::{cqueue, opcode, squeue, types, IoUring};

use super::*;

/// A plain io_uring instance for one test, made without `CAP_IPC_LOCK` in the effective set
/// (restored right after): only then does io_uring account registered buffers, in `locked_vm` and
/// `VmPin`, which the tests check.
pub(super) fn ring() -> Result<IoUring, String> {
    ring_with(8)
}

/// [`ring`] with `entries` SQEs of type `S` (`squeue::Entry128`: an `IORING_SETUP_SQE128` ring,
/// for the driver's `IORING_OP_URING_CMD`, `queue.uring_*`) and CQEs of type `C`
/// (`cqueue::Entry32`: `IORING_SETUP_CQE32`).
pub(crate) fn ring_with<S: squeue::EntryMarker, C: cqueue::EntryMarker>(
    entries: u32,
) -> Result<IoUring<S, C>, String> {
    without_cap_ipc_lock(|| IoUring::<S, C>::builder().build(entries))?.ctx("io_uring_setup")
}

/// Submits `e` and waits for its completion; a negative result is the errno.
///
/// # Safety
/// Every buffer `e` names (by address or by fixed-buffer index) must be valid for the operation
/// until this returns (it returns only after the completion).
pub(crate) unsafe fn run<S: squeue::EntryMarker>(ring: &mut IoUring<S>, e: S) -> io::Result<usize> {
    // SAFETY: forwarded to the caller.
    unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("submission queue full"))?;
    ring.submit_and_wait(1)?;
    let cqe = ring
        .completion()
        .next()
        .ok_or_else(|| io::Error::other("no completion"))?;
    let res = cqe.result();
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

/// Registers `bufs` as the ring's fixed buffers 0, 1, ...
///
/// # Safety
/// The ranges must be mapped at the call (the kernel pins their pages; from then on it uses the
/// pinned pages, never the addresses, so an `munmap` before unregistering is memory-safe: that
/// is what `Order::FreeFirst` tests).
pub(super) unsafe fn register(ring: &IoUring, bufs: &[libc::iovec]) -> io::Result<()> {
    // SAFETY: forwarded to the caller.
    unsafe { ring.submitter().register_buffers(bufs) }
}

/// Runs `e` (see [`run`]), which must move all `len` bytes.
///
/// # Safety
/// As for [`run`].
pub(super) unsafe fn run_all(
    ring: &mut IoUring,
    e: squeue::Entry,
    len: usize,
    what: &str,
) -> TestResult {
    // SAFETY: forwarded to the caller.
    let n = unsafe { run(ring, e) }.ctx(what)?;
    ensure_eq(n, len, &format!("{what}: bytes moved"))
}

/// `WRITE_FIXED` of `len` bytes at `addr` of fixed buffer `index` to `fd` at offset 0.
fn write_fixed_op(fd: RawFd, addr: *const u8, len: usize, index: u16) -> squeue::Entry {
    opcode::WriteFixed::new(types::Fd(fd), addr, len as u32, index)
        .offset(0)
        .build()
}

/// Unregisters the ring's fixed buffers; with `pin_kib`, `VmPin` must then be back at it.
pub(super) fn unregister(ring: &IoUring, pin_kib: Option<u64>) -> TestResult {
    ring.submitter()
        .unregister_buffers()
        .ctx("IORING_UNREGISTER_BUFFERS")?;
    match pin_kib {
        Some(kib) => expect_vm_pin(kib, "after unregistering"),
        None => Ok(()),
    }
}

/// `WRITE_FIXED` of the first `len` bytes of fixed buffer 0 (registered at `addr`) to `f` at
/// offset 0, every byte written; then the ring's buffers are unregistered and `VmPin` must be
/// back at `pin_kib`.
pub(super) fn write_fixed_then_unregister(
    ring: &mut IoUring,
    f: &File,
    addr: *const u8,
    len: usize,
    pin_kib: u64,
    what: &str,
) -> TestResult {
    let w = write_fixed_op(f.as_raw_fd(), addr, len, 0);
    // SAFETY: WRITE_FIXED only reads, and from the pages the kernel pinned at the registration
    // (it checks `addr..addr + len` against the registered range, `EFAULT` otherwise), never
    // through the address: no memory of this process is written, mapped or not.
    unsafe { run_all(ring, w, len, what) }?;
    unregister(ring, Some(pin_kib))
}

fn kib(bytes: usize) -> u64 {
    (bytes / 1024) as u64
}

/// The device rewrites page `p` of the streaming buffer `m` with `bytes` (ownership to the
/// device and back to the CPU around the transfer).
fn device_rewrite_page(m: &Mapped<'_>, p: usize, bytes: &[u8]) -> TestResult {
    let off = (p * WIN) as u64;
    m.buf
        .sync(off, WIN as u64, SyncDir::ForDevice)
        .ctx("SYNC_FOR_DEVICE")?;
    m.dev()
        .write_window_from(bytes, 0)
        .ctx("window := new bytes")?;
    m.buf
        .xfer(off, 0, WIN as u32, Dir::FromDevice, 0)
        .ctx("XFER window -> page")?;
    m.buf
        .sync(off, WIN as u64, SyncDir::ForCpu)
        .ctx("SYNC_FOR_CPU")
}

/// device -> streaming buffer, registered -> `WRITE_FIXED` to an `O_DIRECT` ext4 file ->
/// `READ_FIXED` into a second registered streaming buffer -> device -> compare. After the
/// registration the device rewrites page 2 of the source: the file gets the new bytes, so the
/// ring uses the buffer's pages (pinned), not a copy made at registration.
pub fn write_fixed() -> TestResult {
    let before = vm_pin_kib()?;
    let dev = open(0)?;
    let src = device_filled(&dev, BufKind::Streaming, LEN, 3400)?;
    let page2 = pattern(WIN, 3401);
    let mut want = pattern(LEN, 3400);
    want[2 * WIN..3 * WIN].copy_from_slice(&page2);
    let dst = client_target(&dev, &want)?;
    let (f, path) = ext4_file("uring-fixed")?;
    let mut ring = ring()?;
    // SAFETY: both mappings live until after the unregister below.
    unsafe { register(&ring, &[src.iovec(LEN), dst.iovec(LEN)]) }.ctx("IORING_REGISTER_BUFFERS")?;
    expect_vm_pin(before + kib(2 * LEN), "after registering two buffers")?;
    device_rewrite_page(&src, 2, &page2)?;
    let w = write_fixed_op(f.as_raw_fd(), src.map.as_ptr(), LEN, 0);
    // SAFETY: fixed buffer 0 is registered and mapped.
    unsafe { run_all(&mut ring, w, LEN, "WRITE_FIXED to the O_DIRECT file") }?;
    let r = opcode::ReadFixed::new(types::Fd(f.as_raw_fd()), dst.map.as_ptr(), LEN as u32, 1)
        .offset(0)
        .build();
    // SAFETY: fixed buffer 1 is registered and mapped; nothing else touches it meanwhile.
    unsafe { run_all(&mut ring, r, LEN, "READ_FIXED from the O_DIRECT file") }?;
    unregister(&ring, Some(before))?;
    verify_via_device(&dst, &want, "written and read back with fixed buffers")?;
    // A plain O_DIRECT read of the file agrees.
    let mut back = client_target(&dev, &want)?;
    ensure_eq(
        f.read_at(&mut back.map[..LEN], 0).ctx("O_DIRECT read")?,
        LEN,
        "read",
    )?;
    check_same(&back.map[..LEN], &want, "the file")?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// The driver's read/write through io_uring on `/dev/edu-dma0` (the file position is the window
/// offset): `WRITE` from a streaming mapping fills the window, `READ` into another streaming
/// mapping reads it; at the window's end `READ` gives 0 and `WRITE` `ENOSPC`; `WRITE_FIXED` /
/// `READ_FIXED` with registered streaming buffers do the same through bvec iterators. Before each
/// write the window holds the inverse of what is written, so a write that moved nothing fails.
pub fn node_rw() -> TestResult {
    let dev = open(0)?;
    let node = types::Fd(dev.fd());
    let want = pattern(WIN, 3410);
    let inv: Vec<u8> = want.iter().map(|b| !b).collect();
    let src = device_filled(&dev, BufKind::Streaming, WIN, 3410)?;
    let mut ring = ring()?;
    let window_is = |what: &str| -> TestResult {
        let mut back = vec![0u8; WIN];
        dev.read_window_into(&mut back, 0).ctx("read the window")?;
        check_same(&back, &want, what)
    };

    dev.write_window_from(&inv, 0).ctx("window := inverse")?;
    let w = opcode::Write::new(node, src.map.as_ptr(), WIN as u32)
        .offset(0)
        .build();
    // SAFETY: `src` is mapped for the whole call.
    unsafe { run_all(&mut ring, w, WIN, "IORING_OP_WRITE to the node") }?;
    window_is("the window after IORING_OP_WRITE")?;
    let dst = client_target(&dev, &want)?;
    let r = opcode::Read::new(node, dst.map.as_ptr(), WIN as u32)
        .offset(0)
        .build();
    // SAFETY: `dst` is mapped and untouched until the completion.
    unsafe { run_all(&mut ring, r, WIN, "IORING_OP_READ from the node") }?;
    check_same(
        &dst.map[..WIN],
        &want,
        "IORING_OP_READ into the streaming mapping",
    )?;
    verify_via_device(&dst, &want, "read through io_uring")?;

    let r = opcode::Read::new(node, dst.map.as_ptr(), WIN as u32)
        .offset(WIN as u64)
        .build();
    // SAFETY: as above.
    let n = unsafe { run(&mut ring, r) }.ctx("IORING_OP_READ at the window's end")?;
    ensure_eq(n, 0, "bytes read at the window's end")?;
    let w = opcode::Write::new(node, src.map.as_ptr(), WIN as u32)
        .offset(WIN as u64)
        .build();
    // SAFETY: as above.
    expect_errno(
        unsafe { run(&mut ring, w) },
        libc::ENOSPC,
        "IORING_OP_WRITE at the window's end",
    )?;

    let dst2 = client_target(&dev, &want)?;
    // SAFETY: both mappings live until after the unregister below.
    unsafe { register(&ring, &[src.iovec(WIN), dst2.iovec(WIN)]) }
        .ctx("IORING_REGISTER_BUFFERS")?;
    dev.write_window_from(&inv, 0).ctx("window := inverse")?;
    let w = write_fixed_op(dev.fd(), src.map.as_ptr(), WIN, 0);
    // SAFETY: fixed buffer 0 is registered and mapped.
    unsafe { run_all(&mut ring, w, WIN, "WRITE_FIXED to the node") }?;
    window_is("the window after WRITE_FIXED")?;
    let r = opcode::ReadFixed::new(node, dst2.map.as_ptr(), WIN as u32, 1)
        .offset(0)
        .build();
    // SAFETY: fixed buffer 1 is registered, mapped and untouched until the completion.
    unsafe { run_all(&mut ring, r, WIN, "READ_FIXED from the node") }?;
    unregister(&ring, None)?;
    check_same(
        &dst2.map[..WIN],
        &want,
        "READ_FIXED into the streaming mapping",
    )?;
    verify_via_device(&dst2, &want, "read through io_uring, fixed")
}

/// Which goes first once the buffer is registered.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    /// `WRITE_FIXED`, unregister, then `BUF_FREE` + `munmap`.
    UnregisterFirst,
    /// `BUF_FREE` + `munmap` (and junk over whatever reuses memory), `WRITE_FIXED` from the
    /// still-pinned pages, then unregister.
    FreeFirst,
}

/// A registered streaming buffer, freed and unregistered in `order`: the `WRITE_FIXED` to an
/// `O_DIRECT` file writes the device's bytes either way; afterwards nothing is pinned (`VmPin` as
/// before) and the device's buffer budget is what it was.
pub fn free_order(order: Order) -> TestResult {
    let before = vm_pin_kib()?;
    let budget = budget_mib(0)?;
    let seed = 3420 + order as u64;
    let want = pattern(LEN, seed);
    let (f, path) = ext4_file(&format!("uring-{order:?}"))?;
    {
        let dev = open(0)?;
        let src = device_filled(&dev, BufKind::Streaming, LEN, seed)?;
        let addr = src.map.as_ptr();
        let mut ring = ring()?;
        // SAFETY: `src` is mapped now; after its munmap (FreeFirst) the kernel uses the pinned pages.
        unsafe { register(&ring, &[src.iovec(LEN)]) }.ctx("IORING_REGISTER_BUFFERS")?;
        expect_vm_pin(before + kib(LEN), "after registering")?;
        match order {
            Order::UnregisterFirst => {
                write_fixed_then_unregister(&mut ring, &f, addr, LEN, before, "WRITE_FIXED")?;
                let Mapped { buf, map } = src;
                buf.free().ctx("BUF_FREE after unregistering")?;
                drop(map);
            }
            Order::FreeFirst => {
                let Mapped { buf, map } = src;
                buf.free().ctx("BUF_FREE of a registered buffer")?;
                drop(map);
                let mut junk = Vec::new();
                for _ in 0..8 {
                    let b = dev
                        .alloc(LEN as u64, BufKind::Streaming)
                        .ctx("alloc junk")?;
                    let mut m = b.map().ctx("mmap junk")?;
                    m.fill(0xEE);
                    junk.push((b, m));
                }
                let mut anon = Mapping::anonymous(4 << 20).ctx("anonymous junk")?;
                anon.fill(0xEE);
                expect_vm_pin(
                    before + kib(LEN),
                    "after BUF_FREE + munmap (still registered)",
                )?;
                // Fixed buffer 0's pages are pinned by the ring; the kernel does not use the
                // (now unmapped) address, only the offset of `addr` in the registered range.
                write_fixed_then_unregister(
                    &mut ring,
                    &f,
                    addr,
                    LEN,
                    before,
                    "WRITE_FIXED after BUF_FREE + munmap",
                )?;
            }
        }
        verify_file(&dev, &f, 0, &want, &format!("{order:?}: the file"))?;
    }
    let _ = std::fs::remove_file(path);
    ensure_eq(
        budget_mib(0)?,
        budget,
        &format!("{order:?}: MiB of buffers edu-dma0 can allocate"),
    )
}

/// A coherent mapping and io_uring: registering it fails with `EFAULT` on every backend (a
/// long-term pin checks the VMA), nothing pinned. `WRITE` from it to the node (the driver pins
/// the source with `iov_iter_extract_pages`) and to an `O_DIRECT` file: PFN-mapped `EFAULT`;
/// page-backed (IOMMU) they work and are verified. The ring still works with a streaming buffer
/// afterwards.
pub fn coherent() -> TestResult {
    let before = vm_pin_kib()?;
    let dev = open(0)?;
    let coh = device_filled(&dev, BufKind::Coherent, LEN, 3430)?;
    let backing = coherent_backing(&coh.map)?;
    let mut ring = ring()?;
    // SAFETY: `coh` is mapped (and the registration is refused).
    expect_errno(
        unsafe { register(&ring, &[coh.iovec(LEN)]) },
        libc::EFAULT,
        "IORING_REGISTER_BUFFERS of a coherent mapping",
    )?;
    expect_vm_pin(before, "after the refused registration")?;
    let (f, path) = ext4_file("uring-coherent")?;
    let want = pattern(LEN, 3430);
    let inv: Vec<u8> = want[..WIN].iter().map(|b| !b).collect();
    dev.write_window_from(&inv, 0).ctx("window := inverse")?;
    let w = opcode::Write::new(types::Fd(dev.fd()), coh.map.as_ptr(), WIN as u32)
        .offset(0)
        .build();
    // SAFETY: `coh` is mapped for the whole call.
    let to_node = unsafe { run(&mut ring, w) };
    let w = opcode::Write::new(types::Fd(f.as_raw_fd()), coh.map.as_ptr(), LEN as u32)
        .offset(0)
        .build();
    // SAFETY: as above.
    let to_file = unsafe { run(&mut ring, w) };
    match backing {
        Backing::Pfn => {
            expect_errno(
                to_node,
                libc::EFAULT,
                "IORING_OP_WRITE from a PFN-mapped coherent buffer to the node",
            )?;
            expect_errno(
                to_file,
                libc::EFAULT,
                "IORING_OP_WRITE from a PFN-mapped coherent buffer to an O_DIRECT file",
            )?;
        }
        Backing::Pages => {
            ensure_eq(
                to_node.ctx("IORING_OP_WRITE from a page-backed coherent buffer to the node")?,
                WIN,
                "bytes written",
            )?;
            let mut back = vec![0u8; WIN];
            dev.read_window_into(&mut back, 0).ctx("read the window")?;
            check_same(
                &back,
                &want[..WIN],
                "the window after IORING_OP_WRITE from the coherent buffer",
            )?;
            ensure_eq(
                to_file.ctx(
                    "IORING_OP_WRITE from a page-backed coherent buffer to an O_DIRECT file",
                )?,
                LEN,
                "bytes written",
            )?;
            verify_file(
                &dev,
                &f,
                0,
                &want,
                "the file written from the coherent buffer",
            )?;
        }
    }
    let st = device_filled(&dev, BufKind::Streaming, LEN, 3431)?;
    // SAFETY: `st` lives until after the unregister below.
    unsafe { register(&ring, &[st.iovec(LEN)]) }
        .ctx("IORING_REGISTER_BUFFERS of a streaming mapping after")?;
    write_fixed_then_unregister(&mut ring, &f, st.map.as_ptr(), LEN, before, "WRITE_FIXED")?;
    verify_file(&dev, &f, 0, &pattern(LEN, 3431), "the file")?;
    let _ = std::fs::remove_file(path);
    Ok(())
}
