//! Group `user`, large and alignment-sweeping COPY requests: one 16 MiB heap-to-heap copy, and
//! every source alignment 0..64 with its own destination alignment over page-crossing lengths.

use std::time::Instant;

use edu_dma::Device;

use crate::harness::*;

/// DMA commands the device completed (both directions) according to INFO.
fn dma_count(dev: &Device) -> Result<u64, String> {
    Ok(dev.info().ctx("info")?.dma_count)
}

/// Bytes to skip from `p` to the next page boundary.
fn to_page(p: *const u8) -> usize {
    let pg = page();
    (pg - p as usize % pg) % pg
}

/// One COPY ioctl of 16 MiB, heap to heap, verified byte for byte with guards around. Both
/// ends are page-aligned inside their heap blocks (so one command per 4 KiB each way: 8192
/// commands, ~14 min of device time; unaligned ends would double that, and are covered by
/// `copy_1mib` and `copy_alignments`).
pub fn copy_16mib() -> TestResult {
    let dev = open(0)?;
    let n = 16 << 20;
    let pg = page();
    let mut src = vec![0u8; n + pg];
    let sa = to_page(src.as_ptr());
    fill_pattern(&mut src[sa..sa + n], 1600);
    let mut dst = vec![GUARD; n + 3 * pg];
    let off = to_page(dst.as_ptr()) + pg;
    // Not the pattern beforehand, so an untouched destination cannot pass.
    dst[off..off + n].fill(!GUARD);
    let before = dma_count(&dev)?;
    let t = Instant::now();
    let done = dev
        .copy(&src[sa..sa + n], &mut dst[off..off + n])
        .ctx("copy 16 MiB")?;
    let secs = t.elapsed().as_secs_f64();
    let cmds = dma_count(&dev)? - before;
    diag(format!(
        "16 MiB copy: {cmds} commands, {secs:.1} s guest time"
    ));
    ensure_eq(done, n as u64, "done")?;
    check_guarded(&dst, off, n, 1600, "16 MiB destination")?;
    check_pattern(&src[sa..sa + n], 1600, "source changed")?;
    // Every 4 KiB chunk is at least one command each way.
    ensure(cmds >= 2 * (n as u64 / 4096), || {
        format!("only {cmds} DMA commands for 16 MiB")
    })?;
    ensure(off >= GUARD_LEN, || "no room for the guard".to_string())
}

/// Every source start alignment 0..64 (at varying page offsets, so that the longer lengths cross
/// pages at different points), destination alignment `(a * 7) % 64`; lengths 1 and 4095 for all,
/// 4097 and 8193 for every fourth alignment. Fewer than 2000 DMA commands in all.
pub fn copy_alignments() -> TestResult {
    let dev = open(1)?;
    let pg = page();
    let mut src = Anon::new(4 * pg).ctx("mmap source")?;
    let mut dst = Anon::new(4 * pg).ctx("mmap destination")?;
    let before = dma_count(&dev)?;
    let mut copies = 0u32;
    for a in 0..64usize {
        let mut lens = vec![1usize, 4095];
        if a % 4 == 0 {
            lens.push(4097);
        }
        if a % 4 == 1 {
            lens.push(8193);
        }
        for (k, &n) in lens.iter().enumerate() {
            let seed = 1700 + (a * 4 + k) as u64;
            // Page offsets 0, 1024, 2048, 3072 (plus the alignment) in turn.
            let s = (a % 4) * 1024 + a;
            let da = (a * 7) % 64;
            let d = GUARD_LEN + ((a + 2) % 4) * 1024 + da;
            let what = format!("src align {a} (page offset {s}) dst align {da} len {n}");
            src.bytes_mut().fill(0x5a);
            fill_pattern(&mut src.bytes_mut()[s..s + n], seed);
            dst.bytes_mut().fill(GUARD);
            fill_pattern_inverted(&mut dst.bytes_mut()[d..d + n], seed);
            let (sb, db) = (&src.bytes()[s..s + n], &mut dst.bytes_mut()[d..d + n]);
            let done = dev.copy(sb, db).ctx(format!("{what}: copy"))?;
            ensure_eq(done, n as u64, &format!("{what}: done"))?;
            check_guarded(dst.bytes(), d, n, seed, &what)?;
            check_pattern(&src.bytes()[s..s + n], seed, &format!("{what}: source"))?;
            copies += 1;
        }
    }
    let cmds = dma_count(&dev)? - before;
    diag(format!(
        "copy_alignments: {copies} copies, {cmds} DMA commands"
    ));
    ensure(cmds < 2000, || format!("{cmds} DMA commands, budget 2000"))
}
