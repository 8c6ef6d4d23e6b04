// SPDX-License-Identifier: GPL-2.0

//! What a request asks of the device: its commands, one DMA piece each ([`Cmd`]), in a list
//! that keeps the common short requests inline ([`Cmds`]: a 4 KiB transfer is one or two
//! commands), so a synchronous 4 KiB call or a queued 4 KiB transfer allocates no command list.
//! Longer requests (a copy chunk is two to four commands) spill to a vector, once, at submit.
//!
//! Small on purpose: requests move by value from the file to the engine, and the kernel is
//! built for size (`CONFIG_CC_OPTIMIZE_FOR_SIZE`, tinyconfig's default), so a move of more than
//! 32 bytes is a `memcpy` call, which under `-icount` costs one instruction per byte
//! (docs/performance.md, section 11). Two commands are 32 bytes.

use kernel::prelude::*;

use crate::split::{
    Piece,
    WINDOW, //
};

/// Direction of a DMA command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// RAM to the device window (the device reads memory).
    ToDevice,
    /// Device window to RAM (the device writes memory).
    FromDevice,
}

/// One command of a queued request: a DMA piece and its window range, 16 bytes.
#[derive(Clone, Copy)]
pub(crate) struct Cmd {
    /// Bus address of the RAM side.
    bus: u64,
    /// Bytes, 1..=[`WINDOW`] (0 only in [`UNUSED`]).
    len: u16,
    /// Window offset of the device side; `win_off + len <= WINDOW`.
    win_off: u16,
    dir: Dir,
    /// Whether its bytes count as done once it completed (not for a copy's first half).
    credits: bool,
    /// The last command of a step: the next file may have the device after it.
    step_end: bool,
}

impl Cmd {
    /// The command moving `piece` to or from window offset `win_off`; `EINVAL` unless the
    /// piece is 1..=[`WINDOW`] bytes and `[win_off, win_off + piece.len)` inside the window.
    pub(crate) fn new(piece: Piece, win_off: usize, dir: Dir, credits: bool) -> Result<Self> {
        if piece.len == 0
            || win_off
                .checked_add(piece.len)
                .is_none_or(|end| end > WINDOW)
        {
            return Err(EINVAL);
        }
        Ok(Self {
            bus: piece.bus,
            len: u16::try_from(piece.len)?,
            win_off: u16::try_from(win_off)?,
            dir,
            credits,
            step_end: false,
        })
    }

    /// The RAM side.
    pub(crate) fn piece(&self) -> Piece {
        Piece {
            bus: self.bus,
            len: self.len.into(),
        }
    }

    /// Window offset of the device side.
    pub(crate) fn win_off(&self) -> usize {
        self.win_off.into()
    }

    pub(crate) fn dir(&self) -> Dir {
        self.dir
    }

    /// Bytes this command adds to its request's done count once it completed.
    pub(crate) fn credit(&self) -> usize {
        if self.credits {
            self.len.into()
        } else {
            0
        }
    }

    /// Whether it ends a step.
    pub(crate) fn step_end(&self) -> bool {
        self.step_end
    }

    /// Makes it the last command of its step.
    pub(crate) fn end_step(&mut self) {
        self.step_end = true;
    }
}

/// Commands kept inline: a 4 KiB transfer that straddles a page boundary.
const INLINE: usize = 2;

/// The unused inline entries (length 0, which no command has).
const UNUSED: Cmd = Cmd {
    bus: 0,
    len: 0,
    win_off: 0,
    dir: Dir::ToDevice,
    credits: false,
    step_end: false,
};

/// The commands of a request, in order: inline up to [`INLINE`] (the entries before the first
/// [`UNUSED`] one; 32 bytes in all, the variant's tag in a niche), else a vector.
pub(crate) enum Cmds {
    Inline([Cmd; INLINE]),
    Heap(KVec<Cmd>),
}

impl Cmds {
    /// An empty list with room for `n` commands (allocated now if they do not fit inline).
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        Ok(if n <= INLINE {
            Self::Inline([UNUSED; INLINE])
        } else {
            Self::Heap(KVec::with_capacity(n, GFP_KERNEL)?)
        })
    }

    /// The commands, leaving an empty list in their place.
    pub(crate) fn take(&mut self) -> Self {
        core::mem::replace(self, Self::Inline([UNUSED; INLINE]))
    }

    /// The commands.
    pub(crate) fn as_slice(&self) -> &[Cmd] {
        match self {
            Self::Inline(a) => a.get(..inline_len(a)).unwrap_or(&[]),
            Self::Heap(v) => v,
        }
    }

    /// How many there are.
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there is none.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Command `i`, if there is one.
    pub(crate) fn get(&self, i: usize) -> Option<&Cmd> {
        self.as_slice().get(i)
    }

    /// The last command, to be changed.
    pub(crate) fn last_mut(&mut self) -> Option<&mut Cmd> {
        match self {
            Self::Inline(a) => inline_len(a).checked_sub(1).and_then(|i| a.get_mut(i)),
            Self::Heap(v) => v.last_mut(),
        }
    }

    /// Appends `cmd`; the first command beyond the inline room moves the list to a vector.
    pub(crate) fn push(&mut self, cmd: Cmd) -> Result {
        match self {
            Self::Inline(a) => {
                let n = inline_len(a);
                if let Some(slot) = a.get_mut(n) {
                    *slot = cmd;
                    return Ok(());
                }
                let mut v = KVec::with_capacity(2 * INLINE, GFP_KERNEL)?;
                v.extend_from_slice(a, GFP_KERNEL)?;
                v.push(cmd, GFP_KERNEL)?;
                *self = Self::Heap(v);
                Ok(())
            }
            Self::Heap(v) => Ok(v.push(cmd, GFP_KERNEL)?),
        }
    }
}

/// How many of the inline entries are commands.
fn inline_len(a: &[Cmd; INLINE]) -> usize {
    a.iter().position(|c| c.len == 0).unwrap_or(INLINE)
}
