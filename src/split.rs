// SPDX-License-Identifier: GPL-2.0

//! The arithmetic of a transfer: range checks, and the splitting of a range into the pieces that
//! single device commands move.
//!
//! edu moves at most one window (4096 bytes) per command, and a command's RAM side must be one
//! bus-contiguous range. So every transfer is split twice: at *window steps* of the transfer (the
//! bytes `[k * 4096, (k + 1) * 4096)` of the range go through the window together), and at the
//! boundaries of bus-contiguous memory (pages of a streaming buffer, segments of a mapped
//! scatter-gather table). A *chunk* is one window step: the pieces of a chunk fill the window
//! from offset 0 in order.
//!
//! This file knows no kernel type and allocates nothing (pieces go to a caller's `emit`), so it is
//! shared verbatim with the userspace library (`#[path]`, like `uapi.rs`) and unit-tested there
//! by `cargo test` on the host.

// In the module these items are crate-internal; in the userspace library they are public API.
#![allow(unreachable_pub)]

/// Size of edu's DMA window: the most one command moves.
pub const WINDOW: usize = 4096;

/// One device command's RAM side: a bus-contiguous range of at most one window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    /// Bus address of the first byte (what the device is programmed with).
    pub bus: u64,
    /// Bytes, 1..=`WINDOW`.
    pub len: usize,
}

/// Checks `[offset, offset + len)` against an object of `size` bytes; returns the range as
/// `(offset, end)`. `None` when it overflows or runs past the end.
pub fn range_in(offset: u64, len: u64, size: usize) -> Option<(usize, usize)> {
    let end = offset.checked_add(len)?;
    if end > size as u64 {
        return None;
    }
    Some((usize::try_from(offset).ok()?, usize::try_from(end).ok()?))
}

/// Checks a window range: `count` in 1..=`WINDOW` bytes at `win_off`, inside the window. Returns
/// `(win_off, count)`.
pub fn window_range(win_off: u32, count: u32) -> Option<(usize, usize)> {
    let (w, c) = (usize::try_from(win_off).ok()?, usize::try_from(count).ok()?);
    if c == 0 || w.checked_add(c)? > WINDOW {
        return None;
    }
    Some((w, c))
}

/// Checks a user range: non-empty and not wrapping around the address space. Returns
/// `(addr, len)`.
pub fn user_range(addr: u64, len: u64) -> Option<(usize, usize)> {
    if len == 0 {
        return None;
    }
    addr.checked_add(len)?;
    Some((usize::try_from(addr).ok()?, usize::try_from(len).ok()?))
}

/// A range that does not fit what it was split against (a page without a bus address, an
/// overflowing end, a zero page size). Callers validate ranges first, so this is a bug guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// Splits `[offset, offset + len)` at page boundaries: calls `f(page_index, offset_in_page, n)`
/// for each part, in order.
pub fn for_each_page_span<E: From<OutOfRange>>(
    offset: usize,
    len: usize,
    page_size: usize,
    mut f: impl FnMut(usize, usize, usize) -> Result<(), E>,
) -> Result<(), E> {
    let end = offset.checked_add(len).ok_or(OutOfRange)?;
    if page_size == 0 {
        return Err(OutOfRange.into());
    }
    let mut pos = offset;
    while pos < end {
        let in_page = pos % page_size;
        let n = (page_size - in_page).min(end - pos);
        f(pos / page_size, in_page, n)?;
        pos += n;
    }
    Ok(())
}

/// Where a buffer's bytes live on the bus.
pub enum Backing<F: Fn(usize) -> Option<u64>> {
    /// One bus-contiguous range of `len` bytes from `bus` (coherent memory).
    Contiguous {
        /// Bus address of the first byte.
        bus: u64,
        /// Bytes.
        len: usize,
    },
    /// Separately mapped pages of `page_size`; `bus_of(i)` is page `i`'s bus address, `None`
    /// past the last page (streaming memory).
    Pages {
        /// Page size.
        page_size: usize,
        /// Bus address of page `i`.
        bus_of: F,
    },
}

/// Emits the pieces covering `[offset, offset + len)` of a buffer, split at window steps of the
/// range and, for page-backed memory, at page boundaries. `OutOfRange` if the range runs past
/// the backing.
pub fn buffer_pieces<F: Fn(usize) -> Option<u64>, E: From<OutOfRange>>(
    backing: &Backing<F>,
    offset: usize,
    len: usize,
    mut emit: impl FnMut(Piece) -> Result<(), E>,
) -> Result<(), E> {
    let end = offset.checked_add(len).ok_or(OutOfRange)?;
    let mut pos = offset;
    while pos < end {
        // The end of the window step `pos` lies in (cannot pass `end`, so cannot overflow).
        let step_end = end.min(pos + (WINDOW - (pos - offset) % WINDOW));
        let piece = match backing {
            Backing::Contiguous { bus, len } => {
                if end > *len {
                    return Err(OutOfRange.into());
                }
                Piece {
                    bus: bus.checked_add(pos as u64).ok_or(OutOfRange)?,
                    len: step_end - pos,
                }
            }
            Backing::Pages { page_size, bus_of } => {
                if *page_size == 0 {
                    return Err(OutOfRange.into());
                }
                let in_page = pos % page_size;
                let page_bus = bus_of(pos / page_size).ok_or(OutOfRange)?;
                Piece {
                    bus: page_bus.checked_add(in_page as u64).ok_or(OutOfRange)?,
                    len: (page_size - in_page).min(step_end - pos),
                }
            }
        };
        emit(piece)?;
        pos += piece.len;
    }
    Ok(())
}

/// Bits of an mmap offset below the buffer handle: `offset = handle << 32 | byte offset`.
pub const MMAP_HANDLE_SHIFT: u32 = 32;

/// The mmap offset of buffer `handle`'s first byte.
pub fn mmap_offset(handle: u32) -> u64 {
    u64::from(handle) << MMAP_HANDLE_SHIFT
}

/// Decodes a mapping request: the VMA's page offset `pgoff` (in pages of `1 << page_shift`) and
/// its length in pages, against buffers of `buf_pages(handle)` pages. Returns the handle and the
/// buffer's first mapped page; `None` for an unknown handle, a range outside the buffer, or an
/// offset that names no handle.
pub fn mmap_request(
    pgoff: usize,
    pages: usize,
    page_shift: u32,
    buf_pages: impl FnOnce(u32) -> Option<usize>,
) -> Option<(u32, usize)> {
    let shift = MMAP_HANDLE_SHIFT.checked_sub(page_shift)?;
    let handle = u32::try_from(pgoff.checked_shr(shift)?).ok()?;
    let first = pgoff & ((1usize << shift) - 1);
    let have = buf_pages(handle)?;
    (first.checked_add(pages)? <= have).then_some((handle, first))
}

/// Emits the pieces of mapped segments `(bus, len)` that together form one logical range, split
/// at window steps of that range (a segment may cross one).
pub fn segment_pieces<E: From<OutOfRange>>(
    segments: impl IntoIterator<Item = (u64, usize)>,
    mut emit: impl FnMut(Piece) -> Result<(), E>,
) -> Result<(), E> {
    let mut logical = 0usize;
    for (mut bus, mut len) in segments {
        while len > 0 {
            let n = len.min(WINDOW - logical % WINDOW);
            emit(Piece { bus, len: n })?;
            len -= n;
            logical = logical.checked_add(n).ok_or(OutOfRange)?;
            if len > 0 {
                bus = bus.checked_add(n as u64).ok_or(OutOfRange)?;
            }
        }
    }
    Ok(())
}

/// How many pieces from the front of `pieces` make up exactly `chunk` bytes. `None` if no prefix
/// does (the pieces were not split at that chunk's boundary, or there are too few).
pub fn chunk_pieces(pieces: &[Piece], chunk: usize) -> Option<usize> {
    let mut got = 0usize;
    for (i, p) in pieces.iter().enumerate() {
        if got == chunk {
            return Some(i);
        }
        got = got.checked_add(p.len)?;
        if got > chunk {
            return None;
        }
    }
    (got == chunk).then_some(pieces.len())
}

/// Bytes a copy request pins per side at a time: `pin_pages` pages (at least one), rounded up to
/// whole window steps so that no chunk straddles two pin windows.
pub fn copy_step(pin_pages: usize, page_size: usize) -> usize {
    let bytes = pin_pages.max(1).saturating_mul(page_size);
    bytes
        .checked_next_multiple_of(WINDOW)
        .unwrap_or(usize::MAX / WINDOW * WINDOW)
}

/// Whether every mapped segment `(bus, len)` lies at or below `mask` (a device's DMA mask: its
/// highest reachable bus address), none wrapping around the address space.
pub fn segments_within(segments: &[(u64, usize)], mask: u64) -> bool {
    segments.iter().all(|&(bus, len)| {
        len == 0
            || u64::try_from(len - 1)
                .ok()
                .and_then(|l| bus.checked_add(l))
                .is_some_and(|last| last <= mask)
    })
}

/// The parts of mapped segments `(bus, len)`, which together form one logical range, that cover
/// `[offset, offset + len)` of that range, in order (feed them to [`segment_pieces`] for the
/// device pieces). `None` if the range runs past the segments or a segment wraps around.
pub fn range_segments(
    segments: &[(u64, usize)],
    offset: usize,
    len: usize,
) -> Option<impl Iterator<Item = (u64, usize)> + '_> {
    let end = offset.checked_add(len)?;
    let mut total = 0usize;
    for &(bus, n) in segments {
        bus.checked_add(u64::try_from(n).ok()?)?;
        total = total.checked_add(n)?;
    }
    if end > total {
        return None;
    }
    // The logical offset of the segment at hand.
    let mut start = 0usize;
    Some(segments.iter().filter_map(move |&(bus, n)| {
        // No overflow: the segments' lengths add up to `total` and none wraps (checked above).
        let (s, e) = (start, start + n);
        start = e;
        let (lo, hi) = (s.max(offset), e.min(end));
        (lo < hi).then(|| (bus + (lo - s) as u64, hi - lo))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    /// Pages of `page_size` that `[addr, addr + len)` touches (0 for an empty range).
    fn pages_spanned(addr: usize, len: usize, page_size: usize) -> Option<usize> {
        if len == 0 {
            return Some(0);
        }
        let first = addr / page_size;
        let last = addr.checked_add(len - 1)? / page_size;
        Some(last - first + 1)
    }

    fn collect(
        f: impl FnOnce(&mut dyn FnMut(Piece) -> Result<(), OutOfRange>) -> Result<(), OutOfRange>,
    ) -> Vec<Piece> {
        let mut v = Vec::new();
        let r = f(&mut |p| {
            v.push(p);
            Ok(())
        });
        assert_eq!(r, Ok(()));
        v
    }

    /// Bus address of page `i` of a made-up streaming buffer: scattered, never adjacent.
    fn scattered(i: usize) -> u64 {
        0x10_0000 + (i as u64 * 7 % 13) * 0x2000
    }

    /// A 16-page made-up streaming buffer.
    fn pages16(i: usize) -> Option<u64> {
        (i < 16).then(|| scattered(i))
    }

    fn contiguous(bus: u64) -> Backing<fn(usize) -> Option<u64>> {
        Backing::Contiguous { bus, len: 1 << 20 }
    }

    /// Checks the invariants of a split of `[offset, offset + len)`: the pieces cover it in order,
    /// each within one window step and 1..=WINDOW long, with the bus addresses `bus_of` says.
    fn check_split(pieces: &[Piece], offset: usize, len: usize, bus_of: impl Fn(usize) -> u64) {
        let mut pos = offset;
        for p in pieces {
            assert!(p.len >= 1 && p.len <= WINDOW, "{p:?}");
            let step = (pos - offset) / WINDOW;
            let step_last = (pos + p.len - 1 - offset) / WINDOW;
            assert_eq!(
                step, step_last,
                "piece {p:?} at {pos} crosses a window step"
            );
            assert_eq!(p.bus, bus_of(pos), "bus address of byte {pos}");
            pos += p.len;
        }
        assert_eq!(pos, offset + len, "pieces cover the range");
    }

    #[test]
    fn ranges() {
        assert_eq!(range_in(0, 4096, 4096), Some((0, 4096)));
        assert_eq!(range_in(4095, 1, 4096), Some((4095, 4096)));
        assert_eq!(range_in(4096, 0, 4096), Some((4096, 4096)));
        assert_eq!(range_in(4096, 1, 4096), None);
        assert_eq!(range_in(u64::MAX, 1, 4096), None);
        assert_eq!(range_in(1, u64::MAX, usize::MAX), None);
        assert_eq!(window_range(0, 4096), Some((0, 4096)));
        assert_eq!(window_range(4095, 1), Some((4095, 1)));
        assert_eq!(window_range(4095, 2), None);
        assert_eq!(window_range(0, 0), None);
        assert_eq!(window_range(0, 4097), None);
        assert_eq!(window_range(u32::MAX, u32::MAX), None);
        assert_eq!(window_range(1, u32::MAX), None);
        assert_eq!(user_range(0x1000, 1), Some((0x1000, 1)));
        assert_eq!(user_range(0x1000, 0), None);
        assert_eq!(user_range(u64::MAX, 1), None);
        assert_eq!(user_range(u64::MAX - 1, 1), Some((usize::MAX - 1, 1)));
    }

    #[test]
    fn page_counts() {
        assert_eq!(pages_spanned(0, 0, PAGE), Some(0));
        assert_eq!(pages_spanned(0, 1, PAGE), Some(1));
        assert_eq!(pages_spanned(0, 4096, PAGE), Some(1));
        assert_eq!(pages_spanned(1, 4096, PAGE), Some(2));
        assert_eq!(pages_spanned(4095, 2, PAGE), Some(2));
        assert_eq!(pages_spanned(4095, 4098, PAGE), Some(3));
        assert_eq!(pages_spanned(usize::MAX, 1, PAGE), Some(1));
        assert_eq!(pages_spanned(usize::MAX, 2, PAGE), None);
        assert_eq!(pages_spanned(100, 1, 16384), Some(1));
    }

    #[test]
    fn page_spans() {
        let mut v = Vec::new();
        for_each_page_span::<OutOfRange>(4000, 5000, PAGE, |i, o, n| {
            v.push((i, o, n));
            Ok(())
        })
        .unwrap();
        assert_eq!(v, [(0, 4000, 96), (1, 0, 4096), (2, 0, 808)]);
        let mut n = 0;
        for_each_page_span::<OutOfRange>(5, 0, PAGE, |_, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn every_count_contiguous_and_paged() {
        // Every count 1..=4096 at offsets that cross pages and not, in both backings.
        for offset in [0usize, 1, 100, 4095, 4096, 8191, 12000] {
            for len in 1..=WINDOW {
                let c = contiguous(0x4000_0000);
                let pieces = collect(|e| buffer_pieces(&c, offset, len, e));
                check_split(&pieces, offset, len, |pos| 0x4000_0000 + pos as u64);
                assert_eq!(pieces.len(), 1, "one window step is one contiguous piece");

                let p = Backing::Pages {
                    page_size: PAGE,
                    bus_of: pages16,
                };
                let pieces = collect(|e| buffer_pieces(&p, offset, len, e));
                check_split(&pieces, offset, len, |pos| {
                    scattered(pos / PAGE) + (pos % PAGE) as u64
                });
                let want = pages_spanned(offset, len, PAGE).unwrap();
                assert_eq!(pieces.len(), want, "offset {offset} len {len}");
                assert_eq!(chunk_pieces(&pieces, len), Some(pieces.len()));
            }
        }
    }

    #[test]
    fn window_steps_of_long_ranges() {
        // A contiguous range of 3 windows + 1 byte from an unaligned offset: 4 pieces, the steps
        // counted from the range's start, not from the buffer's.
        let c = contiguous(0);
        let pieces = collect(|e| buffer_pieces(&c, 10, 3 * WINDOW + 1, e));
        let lens: Vec<usize> = pieces.iter().map(|p| p.len).collect();
        assert_eq!(lens, [4096, 4096, 4096, 1]);
        assert_eq!(pieces[1].bus, 10 + 4096);
        // Paged, unaligned: each step splits at one page boundary.
        let p = Backing::Pages {
            page_size: PAGE,
            bus_of: pages16,
        };
        let pieces = collect(|e| buffer_pieces(&p, 100, 2 * WINDOW, e));
        let lens: Vec<usize> = pieces.iter().map(|p| p.len).collect();
        assert_eq!(lens, [3996, 100, 3996, 100]);
        check_split(&pieces, 100, 2 * WINDOW, |pos| {
            scattered(pos / PAGE) + (pos % PAGE) as u64
        });
        assert_eq!(chunk_pieces(&pieces, WINDOW), Some(2));
        assert_eq!(chunk_pieces(&pieces[2..], WINDOW), Some(2));
    }

    #[test]
    fn larger_pages() {
        // 16 KiB pages (arm64): a page holds four window steps.
        let p = Backing::Pages {
            page_size: 16384,
            bus_of: |i| Some(0x100_0000 * (i as u64 + 1)),
        };
        let pieces = collect(|e| buffer_pieces(&p, 16000, 8192, e));
        let lens: Vec<usize> = pieces.iter().map(|p| p.len).collect();
        assert_eq!(lens, [384, 3712, 4096]);
        assert_eq!(pieces[1].bus, 0x200_0000);
    }

    #[test]
    fn segments_split_at_window_steps() {
        // An SG table of a user range starting 100 bytes into a page: first segment 3996 bytes,
        // then merged (IOMMU) segments that cross window steps.
        let segs = [
            (0x1000_0064u64, 3996usize),
            (0x2000_0000, 8192),
            (0x3000_0000, 5),
        ];
        let pieces = collect(|e| segment_pieces(segs, e));
        let got: Vec<(u64, usize)> = pieces.iter().map(|p| (p.bus, p.len)).collect();
        assert_eq!(
            got,
            [
                (0x1000_0064, 3996),
                (0x2000_0000, 100),
                (0x2000_0064, 4096),
                (0x2000_1064, 3996),
                (0x3000_0000, 5)
            ]
        );
        let total: usize = pieces.iter().map(|p| p.len).sum();
        assert_eq!(total, 3996 + 8192 + 5);
        assert_eq!(chunk_pieces(&pieces, 4096), Some(2));
        assert_eq!(chunk_pieces(&pieces[2..], 4096), Some(1));
        assert_eq!(chunk_pieces(&pieces[3..], 4001), Some(2));
    }

    #[test]
    fn every_count_segments() {
        for len in 1..=WINDOW {
            for first in [1usize, 100, 4096] {
                let a = first.min(len);
                let segs = [(0x5000u64, a), (0x9000, len - a)];
                let pieces = collect(|e| segment_pieces(segs.into_iter().filter(|s| s.1 > 0), e));
                assert_eq!(chunk_pieces(&pieces, len), Some(pieces.len()));
                assert!(pieces.iter().all(|p| p.len >= 1 && p.len <= WINDOW));
            }
        }
    }

    #[test]
    fn chunks() {
        let p = |len| Piece { bus: 0, len };
        assert_eq!(chunk_pieces(&[], 0), Some(0));
        assert_eq!(chunk_pieces(&[], 1), None);
        assert_eq!(chunk_pieces(&[p(10), p(20)], 10), Some(1));
        assert_eq!(chunk_pieces(&[p(10), p(20)], 30), Some(2));
        assert_eq!(chunk_pieces(&[p(10), p(20)], 15), None);
        assert_eq!(chunk_pieces(&[p(10), p(20)], 31), None);
        assert_eq!(chunk_pieces(&[p(usize::MAX), p(1)], usize::MAX), Some(1));
        assert_eq!(chunk_pieces(&[p(usize::MAX), p(1)], 0), Some(0));
    }

    #[test]
    fn copy_steps() {
        assert_eq!(copy_step(0, PAGE), 4096);
        assert_eq!(copy_step(1, PAGE), 4096);
        assert_eq!(copy_step(256, PAGE), 1 << 20);
        assert_eq!(copy_step(1, 16384), 16384);
        assert_eq!(copy_step(3, 1024), 4096);
        assert_eq!(copy_step(5, 1024), 8192);
        assert_eq!(copy_step(usize::MAX, PAGE) % WINDOW, 0);
    }

    #[derive(Debug, PartialEq)]
    enum TestErr {
        Full,
        Range,
    }

    impl From<OutOfRange> for TestErr {
        fn from(_: OutOfRange) -> Self {
            TestErr::Range
        }
    }

    #[test]
    fn emit_errors_stop_the_split() {
        let c = contiguous(0);
        let mut n = 0;
        let r = buffer_pieces(&c, 0, 3 * WINDOW, |_| {
            n += 1;
            if n == 2 {
                Err(TestErr::Full)
            } else {
                Ok(())
            }
        });
        assert_eq!(r, Err(TestErr::Full));
        assert_eq!(n, 2);
    }

    #[test]
    fn out_of_range_is_an_error_not_a_panic() {
        let ok = |_: Piece| Ok::<(), TestErr>(());
        // Past the last page, past a contiguous backing, an overflowing end, a zero page size.
        let p = Backing::Pages {
            page_size: PAGE,
            bus_of: pages16,
        };
        assert_eq!(buffer_pieces(&p, 15 * PAGE, PAGE, ok), Ok(()));
        assert_eq!(
            buffer_pieces(&p, 15 * PAGE, PAGE + 1, ok),
            Err(TestErr::Range)
        );
        let c = Backing::<fn(usize) -> Option<u64>>::Contiguous { bus: 0, len: 8192 };
        assert_eq!(buffer_pieces(&c, 8191, 1, ok), Ok(()));
        assert_eq!(buffer_pieces(&c, 8191, 2, ok), Err(TestErr::Range));
        assert_eq!(buffer_pieces(&c, usize::MAX, 2, ok), Err(TestErr::Range));
        let top = Backing::<fn(usize) -> Option<u64>>::Contiguous {
            bus: u64::MAX - 10,
            len: 8192,
        };
        assert_eq!(buffer_pieces(&top, 0, 11, ok), Ok(()));
        assert_eq!(buffer_pieces(&top, 11, 1, ok), Err(TestErr::Range));
        let zero = Backing::Pages {
            page_size: 0,
            bus_of: pages16,
        };
        assert_eq!(buffer_pieces(&zero, 0, 1, ok), Err(TestErr::Range));
        let span = |_, _, _| Ok::<(), TestErr>(());
        assert_eq!(for_each_page_span(0, 1, 0, span), Err(TestErr::Range));
        assert_eq!(
            for_each_page_span(usize::MAX, 1, PAGE, span),
            Err(TestErr::Range)
        );
        // A segment ending exactly at the top of the bus address space is fine.
        let segs = [(u64::MAX - 4095, 4096usize)];
        assert_eq!(segment_pieces(segs, ok), Ok(()));
    }

    #[test]
    fn mmap_requests() {
        let shift = 12;
        // Buffers 1 (4 pages) and 7 (1 page).
        let bufs = |h: u32| match h {
            1 => Some(4),
            7 => Some(1),
            _ => None,
        };
        let pgoff = |h: u32, first: usize| (mmap_offset(h) >> shift) as usize + first;
        assert_eq!(mmap_offset(1), 1 << 32);
        assert_eq!(mmap_request(pgoff(1, 0), 4, shift, bufs), Some((1, 0)));
        assert_eq!(mmap_request(pgoff(1, 3), 1, shift, bufs), Some((1, 3)));
        assert_eq!(mmap_request(pgoff(1, 3), 2, shift, bufs), None);
        assert_eq!(mmap_request(pgoff(1, 4), 1, shift, bufs), None);
        assert_eq!(mmap_request(pgoff(7, 0), 1, shift, bufs), Some((7, 0)));
        assert_eq!(mmap_request(pgoff(2, 0), 1, shift, bufs), None);
        assert_eq!(mmap_request(0, 1, shift, bufs), None);
        assert_eq!(mmap_request(pgoff(1, 0), usize::MAX, shift, bufs), None);
        // 16 KiB and 64 KiB pages.
        assert_eq!(mmap_request(1 << 18, 4, 14, bufs), Some((1, 0)));
        assert_eq!(mmap_request((1 << 16) + 3, 1, 16, bufs), Some((1, 3)));
        // A page offset whose handle bits do not fit a u32 names no buffer.
        assert_eq!(
            mmap_request(usize::MAX, 1, shift, |_| Some(usize::MAX)),
            None
        );
        assert_eq!(mmap_request(0, 1, 40, bufs), None);
    }

    #[test]
    fn segments_within_the_mask() {
        let mask = (1u64 << 28) - 1;
        assert!(segments_within(
            &[(0x1000, 0x1000), (0x0fff_f000, 0x1000)],
            mask
        ));
        assert!(!segments_within(&[(0x0fff_f000, 0x1001)], mask));
        assert!(!segments_within(&[(0x1000_0000, 1)], mask));
        assert!(!segments_within(&[(u64::MAX, 2)], u64::MAX));
        assert!(segments_within(
            &[(u64::MAX, 1), (0x5000_0000, 0)],
            u64::MAX
        ));
        assert!(segments_within(&[], 0));
    }

    #[test]
    fn range_segments_clip_and_split() {
        let segs = [
            (0x10_0000u64, 0x3000usize),
            (0x50_0000, 0x1000),
            (0x20_0000, 0x2000),
        ];
        let got = |off, len| range_segments(&segs, off, len).map(|i| i.collect::<Vec<_>>());
        assert_eq!(got(0, 0x6000), Some(segs.to_vec()));
        assert_eq!(
            got(0x2800, 0x1000),
            Some(vec![(0x10_2800, 0x800), (0x50_0000, 0x800)])
        );
        assert_eq!(got(0x3000, 0x1000), Some(vec![(0x50_0000, 0x1000)]));
        assert_eq!(got(0x5fff, 1), Some(vec![(0x20_1fff, 1)]));
        assert_eq!(got(0x1234, 0), Some(vec![]));
        assert_eq!(got(0x5fff, 2), None);
        assert_eq!(got(usize::MAX, 2), None);
        assert!(range_segments(&[(u64::MAX, 2)], 0, 1).is_none());
        // Then into device pieces: a window step of the range crosses the segment boundary.
        let pieces = collect(|emit| {
            segment_pieces(
                range_segments(&segs, 0x2800, 0x2000).ok_or(OutOfRange)?,
                emit,
            )
        });
        assert_eq!(
            pieces,
            [
                Piece {
                    bus: 0x10_2800,
                    len: 0x800
                },
                Piece {
                    bus: 0x50_0000,
                    len: 0x800
                },
                Piece {
                    bus: 0x50_0800,
                    len: 0x800
                },
                Piece {
                    bus: 0x20_0000,
                    len: 0x800
                },
            ]
        );
    }
}
