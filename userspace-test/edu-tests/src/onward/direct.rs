//! `O_DIRECT` from and into the mappings: the block layer pins the mapping's pages (GUP) and
//! virtio-blk DMAs from and into them, no page cache in between.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use edu_dma::{BufKind, Dir};

use super::*;

/// Where the tests write on the raw scratch disk (any aligned offset would do).
const DISK_OFF: u64 = 1 << 20;
/// Where they write in the ext4 file: not at 0, so the file has a hole before the data.
const FILE_OFF: u64 = 2 * WIN as u64;

/// device -> streaming buffer -> `O_DIRECT` write to `f` at `off` -> `O_DIRECT` read into another
/// streaming buffer -> device -> compare.
fn round_trip(f: &File, off: u64, seed: u64, what: &str) -> TestResult {
    let dev = open(0)?;
    let src = device_filled(&dev, BufKind::Streaming, LEN, seed)?;
    let n = f
        .write_at(&src.map[..LEN], off)
        .ctx(format!("{what}: O_DIRECT write from the streaming mapping"))?;
    ensure_eq(n, LEN, &format!("{what}: bytes written"))?;
    verify_file(&dev, f, off, &pattern(LEN, seed), what)
}

pub fn streaming_file() -> TestResult {
    let (f, path) = ext4_file("odirect-streaming")?;
    round_trip(&f, FILE_OFF, 3100, "ext4 file")?;
    // The hole before the data reads as zeros, through O_DIRECT too.
    let dev = open(0)?;
    let zeros = vec![0u8; FILE_OFF as usize];
    let mut hole = client_target(&dev, &zeros)?;
    let n = f
        .read_at(&mut hole.map[..], 0)
        .ctx("O_DIRECT read of the hole")?;
    ensure_eq(n, FILE_OFF as usize, "hole bytes read")?;
    check_fill(&hole.map[..], 0, "the hole before the data")?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

pub fn streaming_blockdev() -> TestResult {
    let disk = scratch_disk()?;
    let f = open_direct(&disk, false)?;
    round_trip(&f, DISK_OFF, 3110, &format!("raw disk {}", disk.display()))
}

/// `statx(STATX_DIOALIGN)` of `path`: (memory alignment, offset alignment) for `O_DIRECT`.
fn dio_align(path: &Path) -> Result<(u32, u32), String> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: all-zero is a valid `statx`.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a writable statx.
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), 0, libc::STATX_DIOALIGN, &mut st) };
    cvt(r as isize).ctx(format!("statx {}", path.display()))?;
    ensure(st.stx_mask & libc::STATX_DIOALIGN != 0, || {
        format!("{}: no STATX_DIOALIGN", path.display())
    })?;
    Ok((st.stx_dio_mem_align, st.stx_dio_offset_align))
}

/// Unaligned `O_DIRECT` from and into a streaming mapping, on the ext4 file and on the raw disk:
/// an address, a length or a file offset one byte off the alignment `statx` reports is exactly
/// `EINVAL`, for writes and reads, and moves nothing (the aligned I/O around it still verifies).
pub fn unaligned() -> TestResult {
    let (file, path) = ext4_file("odirect-unaligned")?;
    let disk = scratch_disk()?;
    let raw = open_direct(&disk, false)?;
    for (f, p, off, seed) in [
        (&file, path.clone(), 0u64, 3120u64),
        (&raw, disk.clone(), DISK_OFF, 3121),
    ] {
        let what = p.display().to_string();
        let (mem, offa) = dio_align(&p)?;
        diag(format!(
            "{what}: O_DIRECT alignment: memory {mem}, offset {offa}"
        ));
        ensure(mem > 1 && offa > 1, || {
            format!("{what}: alignment {mem}/{offa}: a one-byte misalignment would be aligned")
        })?;
        let dev = open(0)?;
        let mut src = device_filled(&dev, BufKind::Streaming, LEN, seed)?;
        // Aligned first: the file then has LEN bytes, so the reads below are inside it.
        ensure_eq(
            f.write_at(&src.map[..LEN], off)
                .ctx(format!("{what}: aligned write"))?,
            LEN,
            "written",
        )?;
        let e = libc::EINVAL;
        let w = WIN;
        expect_errno(
            f.write_at(&src.map[1..1 + w], off),
            e,
            &format!("{what}: write, address +1"),
        )?;
        expect_errno(
            f.write_at(&src.map[..w - 1], off),
            e,
            &format!("{what}: write, length {}", w - 1),
        )?;
        expect_errno(
            f.write_at(&src.map[..w], off + 1),
            e,
            &format!("{what}: write, offset +1"),
        )?;
        // The same three for reads, into the mapping (which must stay as it was).
        expect_errno(
            f.read_at(&mut src.map[1..1 + w], off),
            e,
            &format!("{what}: read, address +1"),
        )?;
        expect_errno(
            f.read_at(&mut src.map[..w - 1], off),
            e,
            &format!("{what}: read, length {}", w - 1),
        )?;
        expect_errno(
            f.read_at(&mut src.map[..w], off + 1),
            e,
            &format!("{what}: read, offset +1"),
        )?;
        check_pattern(
            &src.map[..LEN],
            seed,
            &format!("{what}: the mapping after the refused reads"),
        )?;
        // Nothing of the refused writes reached the disk.
        verify_file(
            &dev,
            f,
            off,
            &pattern(LEN, seed),
            &format!("{what}: after the refused writes"),
        )?;
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// `O_DIRECT` on a coherent mapping. A buffered write from it (a CPU copy, `copy_from_user`)
/// always works and goes first, so that the read below is inside the file and the disk's
/// content is known. Then, by [`Backing`]: PFN-mapped, the `O_DIRECT` write and read fail with
/// `EFAULT` and move nothing; page-backed (IOMMU), both work: the write puts the coherent bytes on
/// the disk, the read fills the coherent buffer, which the device then reads back.
fn coherent(path: &Path, off: u64, seed: u64, what: &str) -> TestResult {
    let dev = open(0)?;
    let mut coh = device_filled(&dev, BufKind::Coherent, LEN, seed)?;
    let backing = coherent_backing(&coh.map)?;
    let b = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .ctx(format!("open {} (buffered)", path.display()))?;
    let n = b
        .write_at(&coh.map[..LEN], off)
        .ctx(format!("{what}: buffered write from the coherent mapping"))?;
    ensure_eq(n, LEN, &format!("{what}: bytes written"))?;
    b.sync_data().ctx(format!("{what}: fdatasync"))?;
    let f = open_direct(path, false)?;
    let want = pattern(LEN, seed);
    match backing {
        Backing::Pfn => {
            expect_errno(
                f.write_at(&coh.map[..LEN], off),
                libc::EFAULT,
                &format!("{what}: O_DIRECT write from a PFN-mapped coherent buffer"),
            )?;
            expect_errno(
                f.read_at(&mut coh.map[..LEN], off),
                libc::EFAULT,
                &format!("{what}: O_DIRECT read into a PFN-mapped coherent buffer"),
            )?;
            check_pattern(
                &coh.map[..LEN],
                seed,
                &format!("{what}: the coherent mapping after the refused read"),
            )?;
        }
        Backing::Pages => {
            let n = f.write_at(&coh.map[..LEN], off + LEN as u64).ctx(format!(
                "{what}: O_DIRECT write from a page-backed coherent buffer"
            ))?;
            ensure_eq(n, LEN, &format!("{what}: bytes written"))?;
            for (d, w) in coh.map.iter_mut().zip(&want) {
                *d = !w;
            }
            let n = f.read_at(&mut coh.map[..LEN], off).ctx(format!(
                "{what}: O_DIRECT read into a page-backed coherent buffer"
            ))?;
            ensure_eq(n, LEN, &format!("{what}: bytes read"))?;
            check_pattern(
                &coh.map[..LEN],
                seed,
                &format!("{what}: O_DIRECT read into the coherent buffer"),
            )?;
            // The device reads what the disk DMA wrote (coherent: no sync).
            let mut back = vec![0u8; WIN];
            for (p, chunk) in want.chunks(WIN).enumerate() {
                let inv: Vec<u8> = chunk.iter().map(|b| !b).collect();
                dev.write_window_from(&inv, 0).ctx("window := inverse")?;
                coh.buf
                    .xfer((p * WIN) as u64, 0, WIN as u32, Dir::ToDevice, 0)
                    .ctx("XFER coherent -> window")?;
                dev.read_window_into(&mut back, 0).ctx("read the window")?;
                check_same(
                    &back,
                    chunk,
                    &format!("{what}: page {p} of the coherent buffer, by the device"),
                )?;
            }
            let mut dst = client_target(&dev, &want)?;
            let n = f
                .read_at(&mut dst.map[..LEN], off + LEN as u64)
                .ctx(format!("{what}: O_DIRECT read back"))?;
            ensure_eq(n, LEN, &format!("{what}: bytes read"))?;
            verify_via_device(
                &dst,
                &want,
                &format!("{what}: O_DIRECT write from the coherent buffer"),
            )?;
        }
    }
    let mut dst = client_target(&dev, &want)?;
    let n = f
        .read_at(&mut dst.map[..LEN], off)
        .ctx(format!("{what}: O_DIRECT read back"))?;
    ensure_eq(n, LEN, &format!("{what}: bytes read"))?;
    verify_via_device(&dst, &want, &format!("{what}: the buffered write's data"))?;
    diag(format!("{what}: coherent mapping {backing:?}-backed"));
    Ok(())
}

pub fn coherent_file() -> TestResult {
    let (f, path) = ext4_file("odirect-coherent")?;
    drop(f);
    coherent(&path, FILE_OFF, 3130, "ext4 file")?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

pub fn coherent_blockdev() -> TestResult {
    let disk = scratch_disk()?;
    coherent(
        &disk,
        DISK_OFF,
        3140,
        &format!("raw disk {}", disk.display()),
    )
}
