// SPDX-License-Identifier: GPL-2.0

//! What a request asks of the device: its commands, one DMA piece each ([`Cmd`]), in a list
//! that keeps the common short requests inline ([`Cmds`]: a 4 KiB transfer is one or two
//! commands, a 4 KiB copy chunk two to four), so a synchronous 4 KiB call or a queued 4 KiB
//! request allocates no command list. Longer requests spill to a vector, once, at submit.

use kernel::prelude::*;

use crate::split::Piece;

/// Direction of a DMA command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// RAM to the device window (the device reads memory).
    ToDevice,
    /// Device window to RAM (the device writes memory).
    FromDevice,
}

/// One command of a queued request.
#[derive(Clone, Copy)]
pub(crate) struct Cmd {
    /// The RAM side.
    pub(crate) piece: Piece,
    /// Window offset of the device side.
    pub(crate) win_off: usize,
    /// Direction.
    pub(crate) dir: Dir,
    /// Bytes the request has done once this command completed (0 for a copy's first half).
    pub(crate) credit: usize,
    /// The last command of a step: the next file may have the device after it.
    pub(crate) step_end: bool,
}

/// Commands kept inline: a copy chunk of one window whose sides both straddle a page boundary.
const INLINE: usize = 4;

/// Filler of the unused inline entries (never read: only the first `len` entries are).
const UNUSED: Cmd = Cmd {
    piece: Piece { bus: 0, len: 0 },
    win_off: 0,
    dir: Dir::ToDevice,
    credit: 0,
    step_end: false,
};

/// The commands of a request, in order: inline up to [`INLINE`], else a vector.
pub(crate) enum Cmds {
    /// The first `.1` entries are the commands.
    Inline([Cmd; INLINE], usize),
    Heap(KVec<Cmd>),
}

impl Cmds {
    /// An empty list with room for `n` commands (allocated now if they do not fit inline).
    pub(crate) fn with_capacity(n: usize) -> Result<Self> {
        Ok(if n <= INLINE {
            Self::Inline([UNUSED; INLINE], 0)
        } else {
            Self::Heap(KVec::with_capacity(n, GFP_KERNEL)?)
        })
    }

    /// The commands.
    pub(crate) fn as_slice(&self) -> &[Cmd] {
        match self {
            Self::Inline(a, n) => a.get(..*n).unwrap_or(&[]),
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
            Self::Inline(a, n) => n.checked_sub(1).and_then(|i| a.get_mut(i)),
            Self::Heap(v) => v.last_mut(),
        }
    }

    /// Appends `cmd`; the first command beyond the inline room moves the list to a vector.
    pub(crate) fn push(&mut self, cmd: Cmd) -> Result {
        match self {
            Self::Inline(a, n) => {
                if let Some(slot) = a.get_mut(*n) {
                    *slot = cmd;
                    *n += 1;
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
