// SPDX-License-Identifier: GPL-2.0

//! The userspace API: Rust mirror of `include/uapi/linux/edu_dma.h`.
//!
//! The C header is the source of truth; `make check-uapi` compares this file against it (sizes,
//! field offsets, ioctl numbers, constants). This file is shared verbatim by the kernel module and
//! the userspace library (`#[path]`), so it uses `core` only.

// In the module these items are crate-internal; in the userspace library they are public API.
#![allow(unreachable_pub, dead_code)]

/// ioctl type byte of every edu-dma ioctl.
pub const EDU_DMA_IOC_MAGIC: u32 = 0xED;
/// Size of the device's DMA window; one command moves 1..=4096 bytes.
pub const EDU_DMA_WINDOW_SIZE: u32 = 4096;

/// `edu_dma_info.irq_mode`: legacy INTx.
pub const EDU_DMA_IRQ_INTX: u32 = 1;
/// `edu_dma_info.irq_mode`: MSI.
pub const EDU_DMA_IRQ_MSI: u32 = 2;

/// Coherent buffer (`dma_alloc_coherent`).
pub const EDU_DMA_BUF_COHERENT: u32 = 1;
/// Streaming buffer (ordinary pages, streaming DMA API).
pub const EDU_DMA_BUF_STREAMING: u32 = 2;

/// `edu_dma_buf_export.flags`: close-on-exec dma-buf fd (the value of `O_CLOEXEC`).
pub const EDU_DMA_EXPORT_CLOEXEC: u32 = 0o2000000;
/// `edu_dma_buf_export.flags`: writable dma-buf (the value of `O_RDWR`).
pub const EDU_DMA_EXPORT_RDWR: u32 = 0o2;

/// Sync a streaming buffer range for the device.
pub const EDU_DMA_SYNC_FOR_DEVICE: u32 = 1;
/// Sync a streaming buffer range for the CPU.
pub const EDU_DMA_SYNC_FOR_CPU: u32 = 2;

/// Transfer direction: RAM to the device window.
pub const EDU_DMA_TO_DEVICE: u32 = 1;
/// Transfer direction: device window to RAM.
pub const EDU_DMA_FROM_DEVICE: u32 = 2;

/// `edu_dma_copy.src` is an offset into buffer `src_handle`.
pub const EDU_DMA_COPY_SRC_BUF: u32 = 1;
/// `edu_dma_copy.dst` is an offset into buffer `dst_handle`.
pub const EDU_DMA_COPY_DST_BUF: u32 = 2;

/// `struct edu_dma_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaInfo {
    /// Identification register.
    pub ident: u32,
    /// Major version.
    pub version_major: u32,
    /// Minor version.
    pub version_minor: u32,
    /// N of `/dev/edu-dma<N>`.
    pub instance: u32,
    /// DMA mask bits.
    pub dma_mask_bits: u32,
    /// `EDU_DMA_IRQ_*`.
    pub irq_mode: u32,
    /// PCI domain.
    pub pci_domain: u32,
    /// PCI bus.
    pub pci_bus: u32,
    /// PCI slot.
    pub pci_slot: u32,
    /// PCI function.
    pub pci_func: u32,
    /// Window size.
    pub window_size: u32,
    /// 1 when the device's DMA is cache-coherent, 0 when the kernel does cache maintenance for
    /// it (`dev_is_dma_coherent()`).
    pub dma_coherent: u32,
    /// Interrupts handled.
    pub irq_count: u64,
    /// DMA commands completed.
    pub dma_count: u64,
    /// Bytes moved.
    pub dma_bytes: u64,
    /// Factorials computed.
    pub fact_count: u64,
    /// Commands that timed out.
    pub timeout_count: u64,
    /// Reserved.
    pub reserved: [u64; 3],
}

/// `struct edu_dma_factorial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaFactorial {
    /// Input.
    pub n: u32,
    /// Must be 0.
    pub flags: u32,
    /// n!.
    pub result: u64,
}

/// `struct edu_dma_buf_alloc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaBufAlloc {
    /// Size in bytes.
    pub size: u64,
    /// `EDU_DMA_BUF_*`.
    pub kind: u32,
    /// Must be 0.
    pub flags: u32,
    /// Out: handle.
    pub handle: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Out: mmap offset.
    pub mmap_offset: u64,
}

/// `struct edu_dma_buf_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaBufFree {
    /// Handle.
    pub handle: u32,
    /// Must be 0.
    pub flags: u32,
}

/// `struct edu_dma_buf_export`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaBufExport {
    /// Handle of a streaming buffer.
    pub handle: u32,
    /// `EDU_DMA_EXPORT_*`.
    pub flags: u32,
    /// Out: the dma-buf fd.
    pub fd: i32,
    /// Must be 0.
    pub reserved: u32,
}

/// `struct edu_dma_buf_import`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaBufImport {
    /// The dma-buf fd.
    pub fd: i32,
    /// Must be 0.
    pub flags: u32,
    /// Out: the handle.
    pub handle: u32,
    /// Must be 0.
    pub reserved: u32,
    /// Out: the dma-buf's size in bytes.
    pub size: u64,
}

/// `struct edu_dma_buf_sync`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaBufSync {
    /// Handle.
    pub handle: u32,
    /// `EDU_DMA_SYNC_*`.
    pub flags: u32,
    /// Range start.
    pub offset: u64,
    /// Range length.
    pub len: u64,
}

/// `struct edu_dma_xfer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaXfer {
    /// Buffer handle.
    pub handle: u32,
    /// `EDU_DMA_TO_DEVICE` or `EDU_DMA_FROM_DEVICE`.
    pub flags: u32,
    /// Offset in the buffer.
    pub buf_offset: u64,
    /// Offset in the window.
    pub win_offset: u32,
    /// Bytes, 1..=4096.
    pub count: u32,
    /// Timeout, 0 for the default.
    pub timeout_ms: u32,
    /// Must be 0.
    pub reserved: u32,
}

/// `struct edu_dma_user_xfer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaUserXfer {
    /// User address.
    pub addr: u64,
    /// Bytes, 1..=4096.
    pub len: u32,
    /// Offset in the window.
    pub win_offset: u32,
    /// `EDU_DMA_TO_DEVICE` or `EDU_DMA_FROM_DEVICE`.
    pub flags: u32,
    /// Timeout, 0 for the default.
    pub timeout_ms: u32,
}

/// `struct edu_dma_copy`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaCopy {
    /// Source address or buffer offset.
    pub src: u64,
    /// Destination address or buffer offset.
    pub dst: u64,
    /// Bytes to copy.
    pub len: u64,
    /// Out: bytes copied.
    pub done: u64,
    /// `EDU_DMA_COPY_*`.
    pub flags: u32,
    /// Per-command timeout, 0 for the default.
    pub timeout_ms: u32,
    /// Source buffer handle.
    pub src_handle: u32,
    /// Destination buffer handle.
    pub dst_handle: u32,
}

/// `struct edu_dma_fault`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaFault {
    /// The next N DMA commands raise no completion interrupt.
    pub drop_irqs: u32,
    /// Must be 0.
    pub flags: u32,
}

/// `edu_dma_req.op`: buffer <-> window.
pub const EDU_DMA_OP_XFER: u32 = 1;
/// `edu_dma_req.op`: user memory <-> window.
pub const EDU_DMA_OP_USER_XFER: u32 = 2;
/// `edu_dma_req.op`: RAM -> window -> RAM.
pub const EDU_DMA_OP_COPY: u32 = 3;
/// `edu_dma_req.op`: registered user memory <-> window.
pub const EDU_DMA_OP_REG_XFER: u32 = 4;
/// `edu_dma_reap.flags`: do not wait.
pub const EDU_DMA_REAP_NONBLOCK: u32 = 1;

/// `struct edu_dma_req`: one queued request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaReq {
    /// Returned in the completion.
    pub cookie: u64,
    /// `EDU_DMA_OP_*`.
    pub op: u32,
    /// Direction (transfers) or `EDU_DMA_COPY_*` (copy).
    pub flags: u32,
    /// Buffer offset, user address, or copy source.
    pub addr: u64,
    /// Copy destination.
    pub dst: u64,
    /// Bytes.
    pub len: u64,
    /// Buffer handle (transfer) or copy source handle.
    pub handle: u32,
    /// Copy destination handle.
    pub dst_handle: u32,
    /// Offset in the window (transfers).
    pub win_offset: u32,
    /// Per-command timeout, 0 for the default.
    pub timeout_ms: u32,
    /// Must be 0.
    pub reserved: u64,
}

/// `struct edu_dma_submit`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaSubmit {
    /// User pointer to `count` requests.
    pub reqs: u64,
    /// Number of requests.
    pub count: u32,
    /// Must be 0.
    pub flags: u32,
}

/// `struct edu_dma_cqe`: one completion.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaCqe {
    /// The request's cookie.
    pub cookie: u64,
    /// 0 or a negative errno.
    pub status: i32,
    /// 0.
    pub reserved: u32,
    /// Bytes that landed.
    pub done: u64,
}

/// `struct edu_dma_reap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaReap {
    /// User pointer to `max` completions.
    pub cqes: u64,
    /// Room in `cqes`.
    pub max: u32,
    /// Completions to wait for.
    pub min: u32,
    /// Timeout of the wait, 0 for none.
    pub timeout_ms: u32,
    /// `EDU_DMA_REAP_*`.
    pub flags: u32,
}

/// `struct edu_dma_set_eventfd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaSetEventfd {
    /// An eventfd, or -1 to remove the file's.
    pub fd: i32,
    /// 0.
    pub flags: u32,
}

/// Registrations an open file may hold.
pub const EDU_DMA_REG_MAX: u32 = 16;
/// Longest registered range, in bytes.
pub const EDU_DMA_REG_MAX_LEN: u32 = 16 << 20;

/// `struct edu_dma_reg_user`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaRegUser {
    /// User address, page aligned.
    pub addr: u64,
    /// Bytes, a page multiple.
    pub len: u64,
    /// Must be 0.
    pub flags: u32,
    /// Out: the registration's id.
    pub id: u32,
}

/// `struct edu_dma_unreg_user`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EduDmaUnregUser {
    /// The registration's id.
    pub id: u32,
    /// Must be 0.
    pub flags: u32,
}

const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    // The asm-generic encoding used on x86: dir:2 | size:14 | type:8 | nr:8.
    (dir << 30) | ((size as u32) << 16) | (EDU_DMA_IOC_MAGIC << 8) | nr
}

/// `EDU_DMA_IOC_INFO`.
pub const EDU_DMA_IOC_INFO: u32 = ioc(IOC_READ, 0x00, core::mem::size_of::<EduDmaInfo>());
/// `EDU_DMA_IOC_FACTORIAL`.
pub const EDU_DMA_IOC_FACTORIAL: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x01,
    core::mem::size_of::<EduDmaFactorial>(),
);
/// `EDU_DMA_IOC_BUF_ALLOC`.
pub const EDU_DMA_IOC_BUF_ALLOC: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x10,
    core::mem::size_of::<EduDmaBufAlloc>(),
);
/// `EDU_DMA_IOC_BUF_FREE`.
pub const EDU_DMA_IOC_BUF_FREE: u32 = ioc(IOC_WRITE, 0x11, core::mem::size_of::<EduDmaBufFree>());
/// `EDU_DMA_IOC_BUF_SYNC`.
pub const EDU_DMA_IOC_BUF_SYNC: u32 = ioc(IOC_WRITE, 0x12, core::mem::size_of::<EduDmaBufSync>());
/// `EDU_DMA_IOC_BUF_EXPORT`.
pub const EDU_DMA_IOC_BUF_EXPORT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x13,
    core::mem::size_of::<EduDmaBufExport>(),
);
/// `EDU_DMA_IOC_BUF_IMPORT`.
pub const EDU_DMA_IOC_BUF_IMPORT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x14,
    core::mem::size_of::<EduDmaBufImport>(),
);
/// `EDU_DMA_IOC_XFER`.
pub const EDU_DMA_IOC_XFER: u32 = ioc(IOC_WRITE, 0x20, core::mem::size_of::<EduDmaXfer>());
/// `EDU_DMA_IOC_USER_XFER`.
pub const EDU_DMA_IOC_USER_XFER: u32 = ioc(IOC_WRITE, 0x21, core::mem::size_of::<EduDmaUserXfer>());
/// `EDU_DMA_IOC_COPY`.
pub const EDU_DMA_IOC_COPY: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x22,
    core::mem::size_of::<EduDmaCopy>(),
);
/// `EDU_DMA_IOC_FAULT`.
pub const EDU_DMA_IOC_FAULT: u32 = ioc(IOC_WRITE, 0x30, core::mem::size_of::<EduDmaFault>());
/// `EDU_DMA_IOC_SUBMIT`.
pub const EDU_DMA_IOC_SUBMIT: u32 = ioc(IOC_WRITE, 0x40, core::mem::size_of::<EduDmaSubmit>());
/// `EDU_DMA_IOC_REAP`.
pub const EDU_DMA_IOC_REAP: u32 = ioc(IOC_WRITE, 0x41, core::mem::size_of::<EduDmaReap>());
/// `EDU_DMA_IOC_SET_EVENTFD`.
pub const EDU_DMA_IOC_SET_EVENTFD: u32 =
    ioc(IOC_WRITE, 0x42, core::mem::size_of::<EduDmaSetEventfd>());
/// `EDU_DMA_IOC_REG_USER`.
pub const EDU_DMA_IOC_REG_USER: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x43,
    core::mem::size_of::<EduDmaRegUser>(),
);
/// `EDU_DMA_IOC_UNREG_USER`.
pub const EDU_DMA_IOC_UNREG_USER: u32 =
    ioc(IOC_WRITE, 0x44, core::mem::size_of::<EduDmaUnregUser>());
/// `EDU_DMA_URING_CMD_XFER`: the `cmd_op` of an `IORING_OP_URING_CMD` carrying one request.
pub const EDU_DMA_URING_CMD_XFER: u32 = ioc(IOC_WRITE, 0x48, core::mem::size_of::<EduDmaReq>());
