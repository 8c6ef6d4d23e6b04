// SPDX-License-Identifier: GPL-2.0

//! Zero-copy DMA of user memory: pin the pages, map them with a scatter-gather table, and have the
//! device move them in window-sized commands; plus the DMA copy engine (RAM -> window -> RAM) that
//! works on user ranges and buffers alike.

use kernel::{
    device::{
        self,
        Bound, //
    },
    dma::DataDirection,
    page::PAGE_SIZE,
    prelude::*,
    sync::Arc,
};

use crate::{
    buffer::{
        Buffer,
        Piece, //
    },
    device::{
        Dir,
        EduDevice,
        Engine, //
    },
    raw::{
        Pinned,
        SgMap, //
    },
    regs::DMA_WINDOW_SIZE,
};

/// Longest range one copy request may name.
pub(crate) const COPY_MAX: u64 = 1 << 32;

/// Pinned user pages and their device mapping (unmapped before unpinned).
pub(crate) struct UserDma {
    sg: SgMap,
    _pinned: Pinned,
}

impl UserDma {
    /// Pins and maps `pinned`; `dir` is what the device does to the memory.
    pub(crate) fn map(dev: &device::Device<Bound>, mut pinned: Pinned, dir: Dir) -> Result<Self> {
        let dma_dir = match dir {
            Dir::ToDevice => DataDirection::ToDevice,
            Dir::FromDevice => DataDirection::FromDevice,
        };
        let sg = SgMap::new(dev, &mut pinned, dma_dir, DMA_WINDOW_SIZE as u32)?;
        Ok(Self {
            sg,
            _pinned: pinned,
        })
    }

    /// Appends the device pieces, split at window-size steps of the range.
    pub(crate) fn pieces(&self, out: &mut KVec<Piece>) -> Result {
        let mut logical = 0usize;
        for (mut bus, mut len) in self.sg.segments() {
            while len > 0 {
                let room = DMA_WINDOW_SIZE - logical % DMA_WINDOW_SIZE;
                let n = len.min(room);
                out.push((bus, n), GFP_KERNEL)?;
                bus += n as u64;
                len -= n;
                logical += n;
            }
        }
        Ok(())
    }
}

/// Checks a user range: non-empty and not wrapping around.
pub(crate) fn check_user_range(addr: u64, len: u64) -> Result<(usize, usize)> {
    if len == 0 || addr.checked_add(len).is_none() {
        return Err(EINVAL);
    }
    Ok((
        usize::try_from(addr).map_err(|_| EINVAL)?,
        usize::try_from(len).map_err(|_| EINVAL)?,
    ))
}

/// Runs `pieces` (all within one window) through the device starting at window offset `win_off`.
pub(crate) fn run_pieces(
    engine: &Engine<'_>,
    pieces: &[Piece],
    win_off: usize,
    dir: Dir,
    timeout_ms: u32,
) -> Result {
    let mut w = win_off;
    for &(bus, len) in pieces {
        engine.dma(bus, w, len, dir, timeout_ms)?;
        w += len;
    }
    Ok(())
}

/// Zero-copy transfer between pinned memory and the window at `win_off` (range already
/// validated); the mapping is undone and the pins released when this returns.
pub(crate) fn pinned_xfer(
    edu: &EduDevice,
    dev: &device::Device<Bound>,
    pinned: Pinned,
    win_off: usize,
    dir: Dir,
    timeout_ms: u32,
) -> Result {
    let dma = UserDma::map(dev, pinned, dir)?;
    let mut pieces = KVec::new();
    dma.pieces(&mut pieces)?;
    run_pieces(&edu.engine()?, &pieces, win_off, dir, timeout_ms)
}

/// One side of a copy: user memory or a buffer.
pub(crate) enum Side {
    /// A user address range.
    User(usize),
    /// A buffer, from an offset.
    Buf(Arc<Buffer>, usize),
}

impl Side {
    /// Device pieces for `[pos, pos + len)` of this side (relative to its start); the returned
    /// holder keeps user pages pinned and mapped while the pieces are used.
    fn window(
        &self,
        dev: &device::Device<Bound>,
        pos: usize,
        len: usize,
        dir: Dir,
        out: &mut KVec<Piece>,
    ) -> Result<Option<UserDma>> {
        match self {
            Side::User(addr) => {
                let pinned = Pinned::from_user(addr + pos, len, dir == Dir::FromDevice)?;
                let dma = UserDma::map(dev, pinned, dir)?;
                dma.pieces(out)?;
                Ok(Some(dma))
            }
            Side::Buf(buf, off) => {
                buf.pieces(off + pos, len, out)?;
                Ok(None)
            }
        }
    }
}

/// A request to the copy engine.
pub(crate) struct CopyJob {
    pub(crate) src: Side,
    pub(crate) dst: Side,
    pub(crate) len: usize,
    /// Pages of user memory pinned at a time, per side.
    pub(crate) pin_pages: usize,
    pub(crate) timeout_ms: u32,
}

impl CopyJob {
    /// Copies `len` bytes from `src` to `dst` through the device window, a window of pinned
    /// pages at a time. Stops early (with the count so far in `done`) on the first error or a
    /// pending signal.
    pub(crate) fn run(
        &self,
        edu: &EduDevice,
        dev: &device::Device<Bound>,
        done: &mut usize,
    ) -> Result {
        let (src, dst, len, timeout_ms) = (&self.src, &self.dst, self.len, self.timeout_ms);
        let pin_pages = self.pin_pages;
        // A pin window of whole window-size chunks keeps chunks from straddling two pin windows.
        let step = (pin_pages.max(1) * PAGE_SIZE).next_multiple_of(DMA_WINDOW_SIZE);
        let mut src_pieces = KVec::new();
        let mut dst_pieces = KVec::new();
        while *done < len {
            let n = step.min(len - *done);
            src_pieces.clear();
            dst_pieces.clear();
            let _src_hold = src.window(dev, *done, n, Dir::ToDevice, &mut src_pieces)?;
            let _dst_hold = dst.window(dev, *done, n, Dir::FromDevice, &mut dst_pieces)?;
            let (mut si, mut di) = (0, 0);
            let mut off = 0;
            while off < n {
                let chunk = DMA_WINDOW_SIZE.min(n - off);
                if kernel::current!().signal_pending() {
                    return Err(EINTR);
                }
                let s0 = si;
                let mut got = 0;
                while got < chunk {
                    got += src_pieces[si].1;
                    si += 1;
                }
                let d0 = di;
                got = 0;
                while got < chunk {
                    got += dst_pieces[di].1;
                    di += 1;
                }
                // One engine hold for both halves: nobody else may use the window in between.
                let engine = edu.engine()?;
                run_pieces(&engine, &src_pieces[s0..si], 0, Dir::ToDevice, timeout_ms)?;
                run_pieces(&engine, &dst_pieces[d0..di], 0, Dir::FromDevice, timeout_ms)?;
                off += chunk;
                *done += chunk;
            }
        }
        Ok(())
    }
}
