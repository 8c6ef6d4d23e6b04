// SPDX-License-Identifier: GPL-2.0

//! edu-dma: a DMA driver for QEMU's `edu` PCI device (1234:11e8).
//!
//! Per device: BAR0 registers, MSI (INTx fallback) with a threaded interrupt handler, factorials,
//! interrupt-completed DMA through the device's 4096-byte window, coherent and streaming buffers
//! mapped into userspace, and zero-copy DMA of pinned user memory. Userspace reaches each device
//! through `/dev/edu-dma<N>`; the API is `include/uapi/linux/edu_dma.h`.
//!
//! Files by responsibility:
//! - [`driver`]: PCI glue (probe/unbind).
//! - [`regs`]: the register map.
//! - [`device`]: per-device shared state and the command engine.
//! - [`irq`]: the interrupt handler.
//! - [`buffer`]: coherent and streaming DMA buffers.
//! - [`userpages`]: pinned user memory mapped through a scatter-gather table.
//! - [`file`]: the `/dev` node: ioctl, mmap, read/write.
//! - [`uapi`]: the userspace API (shared with the userspace library).
//! - [`raw`]: the only module that calls raw `bindings`, as thin safe wrappers.

mod buffer;
mod device;
mod driver;
mod file;
mod irq;
mod raw;
mod regs;
mod uapi;
mod userpages;

kernel::module_pci_driver! {
    type: driver::EduDriver,
    name: "edu_dma",
    authors: ["edu-dma developers"],
    description: "DMA driver for QEMU's edu PCI device",
    license: "GPL v2",
    params: {
        timeout_ms: u32 {
            default: 1000,
            description: "Default timeout of one device command, in milliseconds",
        },
        dma_bits: u32 {
            default: 28,
            description: "DMA mask width; raise it only with -device edu,dma_mask=... (28..=64)",
        },
        buf_cap_kib: u32 {
            default: 8192,
            description: "Cap on DMA buffer memory per device, in KiB",
        },
        file_cap_kib: u32 {
            default: 8192,
            description: "Cap on DMA buffer memory per open file, in KiB",
        },
        pin_window: u32 {
            default: 256,
            description: "Pages a copy request pins at once",
        },
    },
}
