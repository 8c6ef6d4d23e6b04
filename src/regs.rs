// SPDX-License-Identifier: GPL-2.0

//! The edu register map (BAR0) and device constants.
//!
//! Offsets below 0x80 take 4-byte accesses only; the DMA registers take 8-byte accesses (a 4-byte
//! write would replace the whole 64-bit field). See `docs/edu-device.md` in the shared docs.

use kernel::{
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*, //
};

/// Bytes of BAR0 the driver maps: the registers end at 0x9f.
pub(crate) const BAR0_SIZE: usize = 0x100;
/// BAR0, owned beyond `'bound` (a `Devres` revokes it at unbind).
pub(crate) type Bar0 = pci::Bar<'static, BAR0_SIZE>;
/// Device address of the DMA window (its size is `split::WINDOW`).
pub(crate) const DMA_WINDOW: u64 = 0x40000;
/// Identification value's low byte.
pub(crate) const IDENT_MAGIC: u32 = 0xed;
/// The only major version this driver knows.
pub(crate) const IDENT_MAJOR: u32 = 1;
/// Interrupt status: factorial done.
pub(crate) const IRQ_FACT: u32 = 0x1;
/// Interrupt status: DMA done.
pub(crate) const IRQ_DMA: u32 = 0x100;

register! {
    /// Identification: 0xRRrr00ed.
    pub(crate) IDENT(u32) @ 0x00 {
        31:24 major;
        23:16 minor;
        7:0 magic;
    }

    /// Liveness check: reads back the bitwise inverse of what was written.
    pub(crate) LIVENESS(u32) @ 0x04 {
        31:0 value;
    }

    /// Factorial: write n; reads n! (u32) once the computation is done.
    pub(crate) FACTORIAL(u32) @ 0x08 {
        31:0 value;
    }

    /// Status.
    pub(crate) STATUS(u32) @ 0x20 {
        /// A factorial is being computed.
        0:0 computing => bool;
        /// Raise `IRQ_FACT` when a factorial is done.
        7:7 irq_enable => bool;
    }

    /// Interrupt status: OR of the raised values.
    pub(crate) IRQ_STATUS(u32) @ 0x24 {
        31:0 value;
    }

    /// Interrupt raise.
    pub(crate) IRQ_RAISE(u32) @ 0x60 {
        31:0 value;
    }

    /// Interrupt acknowledge: clears the written bits of `IRQ_STATUS`.
    pub(crate) IRQ_ACK(u32) @ 0x64 {
        31:0 value;
    }

    /// DMA source address.
    pub(crate) DMA_SRC(u64) @ 0x80 {
        63:0 addr;
    }

    /// DMA destination address.
    pub(crate) DMA_DST(u64) @ 0x88 {
        63:0 addr;
    }

    /// DMA byte count.
    pub(crate) DMA_COUNT(u64) @ 0x90 {
        63:0 count;
    }

    /// DMA command; writes to the DMA registers are ignored while `start` reads 1.
    pub(crate) DMA_CMD(u64) @ 0x98 {
        /// Start; reads 1 while the transfer runs.
        0:0 start => bool;
        /// 0: RAM to device, 1: device to RAM.
        1:1 from_device => bool;
        /// Raise `IRQ_DMA` when done.
        2:2 irq => bool;
    }
}

/// Leaves the device quiet: no factorial interrupt armed, every interrupt status bit acknowledged.
pub(crate) fn quiesce(bar: &Bar0) {
    bar.write_reg(STATUS::zeroed());
    bar.write_reg(IRQ_ACK::from_raw(!0));
}
