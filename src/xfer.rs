// SPDX-License-Identifier: GPL-2.0

//! Transfers: a buffer range or pinned user memory to or from the window, and the copy engine
//! (RAM -> window -> RAM, user memory and buffers alike, any length).
//!
//! Each transfer is validated by the caller, turned into device pieces (`Buffer::pieces`,
//! `UserDma::pieces`) and run on the engine; pins and mappings are released when the function
//! returns, after the engine is idle.
//!
//! The `queued_*` functions build the same transfers as queued requests instead: the commands,
//! computed at submit, and the hold that keeps their memory pinned and mapped (or the buffer
//! referenced) until the request is reaped or cancelled.

use kernel::{page::PAGE_SIZE, prelude::*, sync::Arc};

use crate::{
    buffer::Buffer,
    cmds::{
        Cmd,
        Cmds,
        Dir, //
    },
    device::Live,
    engine::{
        Held,
        Hold,
        Request, //
    },
    raw::{
        gup::Pinned,
        signal, //
    },
    registered::Registered,
    split::{
        self,
        Piece,
        WINDOW, //
    },
    userpages::{
        self,
        UserDma, //
    },
};

/// Longest range one copy request may name.
pub(crate) const COPY_MAX: u64 = 1 << 32;

/// Moves `[offset, offset + count)` of `buf` (range already checked) to or from the window at
/// `win_off`.
pub(crate) fn buffer_xfer(
    live: &Live<'_>,
    buf: &Buffer,
    offset: usize,
    win_off: usize,
    count: usize,
    dir: Dir,
    timeout_ms: u32,
) -> Result {
    let mut pieces = KVec::new();
    buf.pieces(offset, count, &mut pieces)?;
    live.run_sync(xfer_cmds(&pieces, win_off, dir)?, timeout_ms)
        .1
}

/// Zero-copy transfer between pinned memory and the window at `win_off` (range already
/// validated); the mapping is undone and the pins released when this returns. Returns the bytes
/// that landed (from the start of the memory, exact also when the transfer failed) and the
/// result.
pub(crate) fn pinned_xfer(
    live: &Live<'_>,
    pinned: Pinned<'_>,
    win_off: usize,
    dir: Dir,
    timeout_ms: u32,
) -> (usize, Result) {
    let run = || {
        let dma = UserDma::map(live.dev, pinned, dir)?;
        // `dma` (the pins and the mapping) lives until the request is over: it drops (unmap,
        // then unpin) when this closure returns, after the engine is done with it.
        Ok(live.run_sync(user_cmds(&dma, win_off, dir)?, timeout_ms))
    };
    run().unwrap_or_else(|e| (0, Err(e)))
}

/// One side of a copy: user memory or a buffer (ranges already checked).
pub(crate) enum Side {
    /// A user address range, from this address.
    User(usize),
    /// A buffer, from an offset.
    Buf(Arc<Buffer>, usize),
}

impl Side {
    /// Device pieces for `[pos, pos + len)` of this side (relative to its start); the returned
    /// holder keeps user pages pinned and mapped while the pieces are used.
    fn window(
        &self,
        live: &Live<'_>,
        pos: usize,
        len: usize,
        dir: Dir,
        out: &mut KVec<Piece>,
    ) -> Result<Option<UserDma<'static>>> {
        match self {
            Side::User(addr) => {
                let addr = addr.checked_add(pos).ok_or(EFAULT)?;
                let dma = UserDma::map(live.dev, userpages::pin(addr, len, dir)?, dir)?;
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
    /// Copies `len` bytes from `src` to `dst` through the device window, one pin window at a
    /// time (one synchronous request each, a window step per turn on the device). Stops early
    /// (with the bytes that landed in `done`) on the first error or a signal.
    ///
    /// Interrupted by task work only (no real signal), it fails with `ERESTARTSYS`
    /// ([`signal::interrupted`]): the restarted ioctl copies again from the start, which writes
    /// the same bytes to `dst` again unless the ranges overlap (whose result is unspecified
    /// anyway); a real signal ends it in `EINTR` with `done` as it is.
    pub(crate) fn run(&self, live: &Live<'_>, done: &mut usize) -> Result {
        let step = split::copy_step(self.pin_pages, PAGE_SIZE);
        let mut src_pieces = KVec::new();
        let mut dst_pieces = KVec::new();
        while *done < self.len {
            if kernel::current!().signal_pending() {
                return Err(signal::interrupted());
            }
            let n = step.min(self.len - *done);
            src_pieces.clear();
            dst_pieces.clear();
            // Pinned and mapped until the request is over.
            let _src_hold = self
                .src
                .window(live, *done, n, Dir::ToDevice, &mut src_pieces)?;
            let _dst_hold = self
                .dst
                .window(live, *done, n, Dir::FromDevice, &mut dst_pieces)?;
            let cmds = copy_cmds(&src_pieces, &dst_pieces, n)?;
            let (landed, ret) = live.run_sync(cmds, self.timeout_ms);
            *done += landed;
            ret?;
        }
        Ok(())
    }
}

/// The commands of a transfer of `pieces` at consecutive window offsets from `win_off`: one
/// step (nobody else's command runs in between).
fn xfer_cmds(pieces: &[Piece], win_off: usize, dir: Dir) -> Result<Cmds> {
    let mut b = CmdsBuilder::new(Cmds::with_capacity(pieces.len())?, win_off, dir);
    for &piece in pieces {
        b.push(piece)?;
    }
    b.finish()
}

/// [`xfer_cmds`] for pinned user memory, its pieces taken straight from the mapping (no piece
/// list of their own, and for up to two pieces, a 4 KiB range aligned or not, no command list
/// either: no allocation per command).
fn user_cmds(dma: &UserDma<'_>, win_off: usize, dir: Dir) -> Result<Cmds> {
    let mut b = CmdsBuilder::new(Cmds::with_capacity(0)?, win_off, dir);
    dma.each_piece(|piece| b.push(piece))?;
    b.finish()
}

/// The commands of a one-step transfer, built piece by piece: consecutive window offsets from
/// the start, the bytes credited as each completes, the step ending with the last.
struct CmdsBuilder {
    cmds: Cmds,
    win_off: usize,
    dir: Dir,
}

impl CmdsBuilder {
    fn new(cmds: Cmds, win_off: usize, dir: Dir) -> Self {
        Self { cmds, win_off, dir }
    }

    fn push(&mut self, piece: Piece) -> Result {
        self.cmds
            .push(Cmd::new(piece, self.win_off, self.dir, true)?)?;
        self.win_off += piece.len;
        Ok(())
    }

    /// The commands (`EINVAL` if none).
    fn finish(mut self) -> Result<Cmds> {
        self.cmds.last_mut().ok_or(EINVAL)?.end_step();
        Ok(self.cmds)
    }
}

/// The commands of a copy of `len` bytes from `src_pieces` to `dst_pieces` (split at the same
/// window steps): one step per window chunk, both halves of a chunk back to back (nobody else
/// uses the window in between). A chunk's bytes count as its second half's pieces complete.
fn copy_cmds(src_pieces: &[Piece], dst_pieces: &[Piece], len: usize) -> Result<Cmds> {
    let mut cmds = Cmds::with_capacity(src_pieces.len() + dst_pieces.len())?;
    let (mut s, mut d) = (src_pieces, dst_pieces);
    let mut off = 0;
    while off < len {
        let chunk = WINDOW.min(len - off);
        // Both sides were split at the same window steps: a chunk is whole pieces.
        let si = split::chunk_pieces(s, chunk).ok_or(EINVAL)?;
        let di = split::chunk_pieces(d, chunk).ok_or(EINVAL)?;
        let ((sc, s_rest), (dc, d_rest)) = (s.split_at(si), d.split_at(di));
        let mut w = 0;
        for &piece in sc {
            cmds.push(Cmd::new(piece, w, Dir::ToDevice, false)?)?;
            w += piece.len;
        }
        let mut w = 0;
        for &piece in dc {
            cmds.push(Cmd::new(piece, w, Dir::FromDevice, true)?)?;
            w += piece.len;
        }
        cmds.last_mut().ok_or(EINVAL)?.end_step();
        (s, d) = (s_rest, d_rest);
        off += chunk;
    }
    if cmds.is_empty() {
        return Err(EINVAL);
    }
    Ok(cmds)
}

/// A queued request of `cmds` whose memory `hold` keeps alive until it is reaped or cancelled.
fn queued(cmds: Cmds, hold: impl Held + 'static, cookie: u64, timeout_ms: u32) -> Result<Request> {
    let hold: Hold = KBox::new(hold, GFP_KERNEL)?;
    Ok(Request {
        cookie,
        cmds,
        timeout_ms,
        hold: Some(hold),
    })
}

/// A queued [`buffer_xfer`]; the request holds a reference to `buf`.
pub(crate) fn queued_buffer_xfer(
    buf: Arc<Buffer>,
    offset: usize,
    win_off: usize,
    count: usize,
    dir: Dir,
    cookie: u64,
    timeout_ms: u32,
) -> Result<Request> {
    let mut pieces = KVec::new();
    buf.pieces(offset, count, &mut pieces)?;
    queued(xfer_cmds(&pieces, win_off, dir)?, buf, cookie, timeout_ms)
}

/// A queued zero-copy transfer of `[addr, addr + len)` of the current process (ranges already
/// validated): pinned and mapped now, released with the request.
pub(crate) fn queued_user_xfer(
    live: &Live<'_>,
    addr: usize,
    len: usize,
    win_off: usize,
    dir: Dir,
    cookie: u64,
    timeout_ms: u32,
) -> Result<Request> {
    let dma = UserDma::map(live.dev, userpages::pin(addr, len, dir)?, dir)?;
    queued(user_cmds(&dma, win_off, dir)?, dma, cookie, timeout_ms)
}

/// A queued request's use of a registration: the range goes back to the CPU when the hold
/// drops (the request is reaped, cancelled or released at unbind, always after the device is
/// done with it), and the reference keeps the registration mapped until then.
struct RegHold {
    reg: Arc<Registered>,
    offset: usize,
    len: usize,
}

impl Drop for RegHold {
    fn drop(&mut self) {
        self.reg.sync_for_cpu(self.offset, self.len);
    }
}

/// A queued transfer between `[offset, offset + count)` of registration `reg` (range already
/// checked) and the window at `win_off`; the range is handed to the device now.
pub(crate) fn queued_reg_xfer(
    reg: Arc<Registered>,
    offset: usize,
    win_off: usize,
    count: usize,
    dir: Dir,
    cookie: u64,
    timeout_ms: u32,
) -> Result<Request> {
    let mut pieces = KVec::new();
    reg.pieces_for_device(offset, count, &mut pieces)?;
    let hold = RegHold {
        reg,
        offset,
        len: count,
    };
    queued(xfer_cmds(&pieces, win_off, dir)?, hold, cookie, timeout_ms)
}

/// The longest queued copy: one pin window (both sides are pinned whole at submit).
pub(crate) fn queued_copy_max(pin_pages: usize) -> usize {
    split::copy_step(pin_pages, PAGE_SIZE)
}

/// A queued copy of `len` bytes (ranges already checked, `len` at most [`queued_copy_max`]):
/// both sides pinned and mapped now; one step per window chunk, both halves of a chunk back to
/// back. A chunk's bytes count as its second half's pieces complete.
pub(crate) fn queued_copy(
    live: &Live<'_>,
    src: Side,
    dst: Side,
    len: usize,
    cookie: u64,
    timeout_ms: u32,
) -> Result<Request> {
    let mut src_pieces = KVec::new();
    let mut dst_pieces = KVec::new();
    let src_hold = src.window(live, 0, len, Dir::ToDevice, &mut src_pieces)?;
    let dst_hold = dst.window(live, 0, len, Dir::FromDevice, &mut dst_pieces)?;
    let cmds = copy_cmds(&src_pieces, &dst_pieces, len)?;
    queued(cmds, (src, dst, src_hold, dst_hold), cookie, timeout_ms)
}
