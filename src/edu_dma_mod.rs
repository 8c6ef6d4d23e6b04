// SPDX-License-Identifier: GPL-2.0

//! edu-dma: a DMA driver for QEMU's `edu` PCI device (1234:11e8).
//!
//! Per device: BAR0 registers, MSI (INTx fallback) with a hard interrupt handler, factorials,
//! interrupt-completed DMA through the device's 4096-byte window, coherent and streaming buffers
//! mapped into userspace, zero-copy DMA of pinned user memory, and an asynchronous queue of
//! transfers (submit, reap, poll) that the interrupt handler drives. Userspace reaches each device
//! through `/dev/edu-dma<N>`; the API is `include/uapi/linux/edu_dma.h`.
//!
//! A newcomer should read [docs/walkthrough.md](../docs/walkthrough.md) first: it traces a
//! coherent, a streaming and a zero-copy transfer and an unbind through these files.
//!
//! Files, in the order a request flows (file -> validate -> pin/map -> engine <- interrupt):
//! - [`file`]: the `/dev` node: parses the uapi into typed requests (no uapi integer goes below
//!   it), buffer handles, mmap, read/write.
//! - [`xfer`]: transfers and the copy engine: turn a validated request into device pieces and
//!   run them on the engine.
//! - [`buffer`]: coherent and streaming DMA buffers, revoked at unbind.
//! - [`export`]: dma-buf export of streaming buffers (the device's side: ownership syncs, the
//!   buffer's lifetime while a dma-buf holds it).
//! - [`userpages`]: pinned user memory mapped through a scatter-gather table.
//! - [`registered`]: registered user memory (`REG_USER`): long-term pins charged to
//!   `RLIMIT_MEMLOCK`, mapped once, revoked at unbind.
//! - [`split`]: the arithmetic of ranges and pieces (no kernel dependency; unit-tested on the
//!   host, shared with userspace like `uapi`).
//! - [`device`]: per-device shared state, lifetime protocol, lock order, revocation, budget.
//! - [`cmds`]: a request's device commands (direction, piece, window offset, credit), kept
//!   inline for short requests.
//! - [`engine`]: the command engine (one command at a time on BAR0, completed by the IRQ): the
//!   synchronous holds and the per-file queues, round robin, cancellation.
//! - [`gaps`]: the ring of completion-interrupt-to-next-command gaps the engine records (no
//!   kernel dependency; unit-tested on the host, shared with userspace like `split`), read
//!   through debugfs.
//! - [`irq`]: the interrupt handler (hard IRQ: completes a queued command and starts the next)
//!   and the queue's watchdog timer.
//! - [`regs`]: the register map.
//! - [`driver`]: PCI glue (probe/unbind).
//! - [`uapi`]: the userspace API (shared with the userspace library).
//! - [`raw`]: the unsafe layer, one leaf per subject (`cred`, `dma`, `dmabuf`, `eventfd`, `gup`,
//!   `irqlock`, `memlock`, `misc`, `pci`, `signal`, `uring`, `vec`, `vm`): the only users of raw `bindings`, importing
//!   nothing of the driver.
//!
//! Import graph (`use crate::`; `../shared/tools/src-cycles` prints it), with no cycle:
//! `driver` -> `file` -> `xfer` -> `buffer` -> `device` -> `engine` -> `regs`; `file` and `xfer`
//! also use `userpages` (-> `cmds`), `file` also `buffer`, `device`, `engine` and `export`
//! (-> `buffer`, `device`), `xfer` also `device` and `engine`; `driver` also `device`, `engine`
//! and `regs`; `irq` -> `device`, `engine`, `regs`; `engine` also uses `raw` (its
//! irq-safe lock, `signal`, `eventfd`, `uring`) and `gaps`; `file` and `xfer` also use `registered` (->
//! `device`, `userpages`). `cmds` (-> `split`) is used by `engine`, `device`, `xfer`,
//! `userpages` and `file`. The leaves `raw`, `split`, `gaps`, `regs` and `uapi` (used by
//! `file` only) import no driver module.

mod buffer;
mod cmds;
mod device;
mod driver;
mod engine;
mod export;
mod file;
mod gaps;
mod import;
mod irq;
mod raw;
mod registered;
mod regs;
mod split;
mod uapi;
mod userpages;
mod xfer;

/// The kernel errno of a range that does not fit what it is split against.
impl From<split::OutOfRange> for kernel::error::Error {
    fn from(_: split::OutOfRange) -> Self {
        kernel::error::code::EINVAL
    }
}

kernel::module_pci_driver! {
    type: driver::EduDriver,
    name: "edu_dma",
    authors: ["edu-dma developers"],
    description: "DMA driver for QEMU's edu PCI device",
    license: "GPL v2",
    // dma-buf export (`raw::dmabuf`): `dma_buf_export` and friends are in this namespace.
    imports_ns: ["DMA_BUF"],
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
        queue_depth: u32 {
            default: 64,
            description: "Requests one open file may have queued (1..=1024)",
        },
    },
}
