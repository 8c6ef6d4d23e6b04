// SPDX-License-Identifier: GPL-2.0

//! User memory as device pieces: pinned pages (`raw::gup`), mapped through a scatter-gather
//! table (`raw::dma`), cut at window steps (`split`).
//!
//! DMA-API rule: the pages are pinned before they are mapped and unmapped before they are
//! unpinned (the [`SgMap`] owns the pins and releases them after its unmap), and a mapping made
//! for one direction is only used in that direction.

use kernel::{
    device::{
        self,
        Bound, //
    },
    dma::DataDirection,
    page::PAGE_SIZE,
    prelude::*,
};

use crate::{
    cmds::Dir,
    raw::{
        dma::SgMap,
        gup::Pinned, //
    },
    split::{
        self,
        Piece,
        WINDOW, //
    },
};

/// The DMA-API direction of a device command's RAM side.
pub(crate) fn data_direction(dir: Dir) -> DataDirection {
    match dir {
        Dir::ToDevice => DataDirection::ToDevice,
        Dir::FromDevice => DataDirection::FromDevice,
    }
}

/// The longest scatter-gather segment the driver makes of pinned user pages: one window, or one
/// page where pages are larger (pieces are cut at window steps anyway; the device itself claims
/// no segment limit, see `driver.rs`).
pub(crate) fn max_segment() -> u32 {
    WINDOW.max(PAGE_SIZE) as u32
}

/// Pins `[addr, addr + len)` of the current process for a command in direction `dir`.
pub(crate) fn pin(addr: usize, len: usize, dir: Dir) -> Result<Pinned<'static>> {
    Pinned::from_user(addr, len, data_direction(dir))
}

/// Pinned user pages and their device mapping.
pub(crate) struct UserDma<'a> {
    sg: SgMap<'a>,
}

impl<'a> UserDma<'a> {
    /// Maps `pinned` for the device; `dir` is what the device does to the memory.
    pub(crate) fn map(dev: &device::Device<Bound>, pinned: Pinned<'a>, dir: Dir) -> Result<Self> {
        let sg = SgMap::new(dev, pinned, data_direction(dir), max_segment())?;
        Ok(Self { sg })
    }

    /// Appends the device pieces, split at window steps of the range.
    pub(crate) fn pieces(&self, out: &mut KVec<Piece>) -> Result {
        self.each_piece(|p| out.push(p, GFP_KERNEL).map_err(Error::from))
    }

    /// Emits the device pieces in order, split at window steps of the range.
    pub(crate) fn each_piece(&self, emit: impl FnMut(Piece) -> Result) -> Result {
        split::segment_pieces(self.sg.segments(), emit)
    }
}
