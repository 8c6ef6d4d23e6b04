//! `edudma share`: cross-device zero-copy through a dma-buf. A streaming buffer of one device is
//! exported, the other device imports the dma-buf; the first device writes a pattern into it by
//! DMA, the second reads it back by DMA; nobody copies it on the CPU.

use std::os::fd::AsFd;
use std::path::Path;

use edu_dma::dmabuf::{self, DMA_BUF_SYNC_END, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START};
use edu_dma::{first_mismatch, pattern, uapi, BufKind, Device, Dir};

use crate::{fail, Failure, Op};

/// Shares `size` bytes (a multiple of 4 KiB) from device `from` to device `to`.
pub(crate) fn share(from: &Path, to: &Path, size: u64) -> Result<(), Failure> {
    let win = u64::from(uapi::EDU_DMA_WINDOW_SIZE);
    if size == 0 || !size.is_multiple_of(win) {
        return fail(
            "share",
            format!("size must be a non-zero multiple of {win}"),
        );
    }
    let len = usize::try_from(size).or_else(|_| fail("share", "size too large".to_string()))?;
    let src = Device::open(from).op("open --from")?;
    let dst = Device::open(to).op("open --to")?;
    let (si, di) = (src.info().op("info")?, dst.info().op("info")?);
    let buf = src.alloc(size, BufKind::Streaming).op("alloc")?;
    let fd = buf.export().op("export")?;
    println!(
        "share: {} ({}) exported streaming buffer {} ({size} bytes) as dma-buf fd",
        from.display(),
        si.pci_address(),
        buf.handle()
    );
    let imp = dst.import(fd.as_fd()).op("import")?;
    println!(
        "share: {} ({}) imported it as handle {} ({} bytes)",
        to.display(),
        di.pci_address(),
        imp.handle(),
        imp.size()
    );
    let data = pattern(len, 0x5a4e);
    let mut off = 0usize;
    while off < len {
        let n = win as usize;
        // The source device's window gets the pattern, then the device writes it into the buffer.
        src.write_window_from(&data[off..off + n], 0)
            .op("window := pattern")?;
        buf.xfer(off as u64, 0, n as u32, Dir::FromDevice, 0)
            .op("xfer window -> buffer")?;
        off += n;
    }
    println!(
        "share: {} wrote the pattern into the buffer by DMA ({} commands)",
        from.display(),
        len / win as usize
    );
    // Ownership: from the writing device to the CPU (its bounce buffers, if any, to the pages),
    // then to every importer (the pages to their bounce buffers).
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW)
        .op("DMA_BUF_IOCTL_SYNC start")?;
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW).op("DMA_BUF_IOCTL_SYNC end")?;
    let mut back = vec![0u8; len];
    let mut off = 0usize;
    while off < len {
        let n = win as usize;
        imp.xfer(off as u64, 0, n as u32, Dir::ToDevice, 0)
            .op("xfer import -> window")?;
        dst.read_window_into(&mut back[off..off + n], 0)
            .op("read window")?;
        off += n;
    }
    if let Some(i) = first_mismatch(&data, &back) {
        return fail(
            "share",
            format!(
                "mismatch at byte {i}: {} wrote {:#04x}, {} read {:#04x}",
                from.display(),
                data[i],
                to.display(),
                back[i]
            ),
        );
    }
    println!(
        "share: {} read it back from the dma-buf by DMA: {size} bytes verified",
        to.display()
    );
    imp.free().op("free import")?;
    buf.free().op("free")?;
    Ok(())
}
