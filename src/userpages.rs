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
    prelude::*,
};

use crate::{
    engine::Dir,
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
        // One segment per command at most (probe also caps the device's segment size).
        let sg = SgMap::new(dev, pinned, data_direction(dir), WINDOW as u32)?;
        Ok(Self { sg })
    }

    /// Appends the device pieces, split at window steps of the range.
    pub(crate) fn pieces(&self, out: &mut KVec<Piece>) -> Result {
        split::segment_pieces(self.sg.segments(), |p| {
            out.push(p, GFP_KERNEL).map_err(Error::from)
        })
    }
}
