// SPDX-License-Identifier: GPL-2.0

//! The unsafe layer: small safe wrappers over the kernel APIs that the 7.2 `kernel` crate does
//! not cover, one subject per file.
//!
//! Every file under `raw/` is a leaf: it imports nothing of the driver (only `kernel`, and its
//! siblings here), knows no driver type, and could move into `kernel::` as it is. Each file's
//! header names the gap it fills and where it would live upstream. Only these files call
//! `kernel::bindings` or the C shim (`shim.c`, for functions that are static inline in C and
//! have no `rust/helpers` wrapper). They are also the only ones that hand the kernel callbacks
//! with raw arguments: `misc` (`file_operations`, through `kernel::miscdevice`'s vtable, plus
//! `poll`), `vm`
//! (the `vm_operations_struct` of fault-mapped VMAs: `fault`, `open`, `close`, with an `Arc`
//! reference in `vm_private_data`) and `dmabuf` (the `dma_buf_ops` of exported dma-bufs, with an
//! `Arc` reference in the dma-buf's and each attachment's `priv`); `dmabuf_import` is the
//! importer side (a static attachment, no callbacks).
//!
//! The rest of the driver is safe Rust except where a `kernel` or `raw` API is `unsafe` by
//! contract, each with its proof: `device.rs` (`as_bound` under the lifetime protocol),
//! `driver.rs` (the QEMU vendor ID, DMA mask setup in probe), `file.rs` (the uapi structs as
//! plain bytes, `NodeFile`), `buffer.rs` (`mmap_coherent`, whose mapping unbind zaps).

pub(crate) mod cred;
pub(crate) mod dma;
pub(crate) mod dmabuf;
pub(crate) mod dmabuf_import;
pub(crate) mod eventfd;
pub(crate) mod gup;
pub(crate) mod irqlock;
pub(crate) mod memlock;
pub(crate) mod misc;
pub(crate) mod pci;
pub(crate) mod signal;
pub(crate) mod uring;
pub(crate) mod vec;
pub(crate) mod vm;

use core::ptr;
use kernel::{
    bindings,
    device,
    error::Error, //
};

/// `ECANCELED`: a queued request was cancelled (its file closed). 7.2 gap: `kernel::error::code`
/// has no `ECANCELED`.
pub(crate) fn ecanceled() -> Error {
    Error::from_errno(-(bindings::ECANCELED as i32))
}

/// The raw `struct device` of `dev`.
fn raw_dev<Ctx: device::DeviceContext>(dev: &device::Device<Ctx>) -> *mut bindings::device {
    // CAST: `device::Device` is `#[repr(transparent)]` over `Opaque<bindings::device>`.
    ptr::from_ref(dev).cast::<bindings::device>().cast_mut()
}
