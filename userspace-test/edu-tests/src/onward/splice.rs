//! `vmsplice` of a mapping into a pipe, `splice` from the pipe to an `O_DIRECT` file on ext4: the
//! pipe holds references to the mapping's pages themselves (GUP), and the `O_DIRECT` write DMAs
//! from those pages to the disk.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use edu_dma::{BufKind, Dir, SyncDir};

use super::*;

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as isize).ctx("pipe2")?;
    // SAFETY: both descriptors are fresh and owned from here on.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Moves LEN bytes from the pipe `r` to `f`, from offset 0, with `splice`.
fn splice_all(r: &OwnedFd, f: &std::fs::File) -> TestResult {
    let mut off: libc::loff_t = 0;
    while (off as usize) < LEN {
        // SAFETY: `off` is a valid loff_t the kernel updates; both descriptors are open.
        let n = cvt(unsafe {
            libc::splice(
                r.as_raw_fd(),
                std::ptr::null_mut(),
                f.as_raw_fd(),
                &mut off,
                LEN - off as usize,
                0,
            )
        })
        .ctx("splice pipe -> O_DIRECT file")?;
        ensure(n > 0, || format!("splice returned 0 at {off}"))?;
    }
    Ok(())
}

/// `vmsplice` of the first `len` bytes of `m` into the pipe (no `SPLICE_F_GIFT`).
fn vmsplice(w: &OwnedFd, m: &Mapped<'_>, len: usize) -> std::io::Result<usize> {
    let iov = m.iovec(len);
    // SAFETY: one iovec over a live mapping; the pipe takes page references, not the address.
    cvt(unsafe { libc::vmsplice(w.as_raw_fd(), &iov, 1, 0) })
}

/// device -> streaming buffer -> `vmsplice` -> pipe -> `splice` -> `O_DIRECT` ext4 file ->
/// `O_DIRECT` read into a streaming buffer -> device -> compare. Between the `vmsplice` and the
/// `splice`, the device rewrites page 1 of the buffer: the file must hold the new bytes, so the
/// pipe referenced the buffer's pages, not a copy of them.
pub fn streaming() -> TestResult {
    let dev = open(0)?;
    let src = device_filled(&dev, BufKind::Streaming, LEN, 3300)?;
    let (r, w) = pipe()?;
    let n = vmsplice(&w, &src, LEN).ctx("vmsplice of the streaming mapping")?;
    ensure_eq(n, LEN, "bytes vmspliced")?;
    // Page 1 := pattern 3301, by the device (ownership to the device and back).
    let page1 = pattern(WIN, 3301);
    src.buf
        .sync(WIN as u64, WIN as u64, SyncDir::ForDevice)
        .ctx("SYNC_FOR_DEVICE")?;
    dev.write_window_from(&page1, 0)
        .ctx("window := page 1's new bytes")?;
    src.buf
        .xfer(WIN as u64, 0, WIN as u32, Dir::FromDevice, 0)
        .ctx("XFER window -> page 1")?;
    src.buf
        .sync(WIN as u64, WIN as u64, SyncDir::ForCpu)
        .ctx("SYNC_FOR_CPU")?;
    let mut want = pattern(LEN, 3300);
    want[WIN..2 * WIN].copy_from_slice(&page1);
    let (f, path) = ext4_file("vmsplice")?;
    splice_all(&r, &f)?;
    let mut dst = client_target(&dev, &want)?;
    let n = f
        .read_at(&mut dst.map[..LEN], 0)
        .ctx("O_DIRECT read back")?;
    ensure_eq(n, LEN, "bytes read")?;
    verify_via_device(&dst, &want, "vmspliced, then spliced to the file")?;
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// `vmsplice` of a coherent mapping. PFN-mapped: GUP refuses it, `EFAULT`, the pipe stays empty
/// (`FIONREAD` 0). Page-backed (IOMMU): the pipe takes the pages, and `splice` to an `O_DIRECT`
/// file writes the coherent bytes.
pub fn coherent() -> TestResult {
    let dev = open(0)?;
    let coh = device_filled(&dev, BufKind::Coherent, LEN, 3310)?;
    let (r, w) = pipe()?;
    match coherent_backing(&coh.map)? {
        Backing::Pfn => {
            expect_errno(
                vmsplice(&w, &coh, LEN),
                libc::EFAULT,
                "vmsplice of a PFN-mapped coherent buffer",
            )?;
            let mut queued: libc::c_int = -1;
            // SAFETY: FIONREAD writes one int.
            cvt(unsafe { libc::ioctl(r.as_raw_fd(), libc::FIONREAD, &mut queued) } as isize)
                .ctx("FIONREAD")?;
            ensure_eq(queued, 0, "bytes in the pipe after the refused vmsplice")
        }
        Backing::Pages => {
            let n = vmsplice(&w, &coh, LEN).ctx("vmsplice of a page-backed coherent buffer")?;
            ensure_eq(n, LEN, "bytes vmspliced")?;
            let (f, path) = ext4_file("vmsplice-coherent")?;
            splice_all(&r, &f)?;
            verify_file(
                &dev,
                &f,
                0,
                &pattern(LEN, 3310),
                "coherent buffer vmspliced, spliced to the file",
            )?;
            let _ = std::fs::remove_file(path);
            Ok(())
        }
    }
}
