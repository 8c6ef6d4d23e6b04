// SPDX-License-Identifier: GPL-2.0

//! PCI accessors that the 7.2 `kernel::pci::Device` lacks: the device's bus location and
//! clearing bus mastering.
//!
//! 7.2 gap: `pci::Device` has `set_master()` but no `clear_master()`, and no domain/bus/devfn
//! getters. Upstream home: `kernel::pci::Device` (`pci.rs`).

use core::ptr;
use kernel::{
    bindings,
    device::{
        self,
        Bound,
        Core, //
    },
    pci,
    prelude::*,
};

// The shim (`shim.c`): `pci_domain_nr` is static inline on x86. `improper_ctypes`: bindgen
// gives some kernel structs zero-sized members, which only matters for by-value use; this takes
// a pointer.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_pci_domain_nr(pdev: *mut bindings::pci_dev) -> c_int;
}

/// The raw `struct pci_dev` of `pdev`.
fn raw_pdev<Ctx: device::DeviceContext>(pdev: &pci::Device<Ctx>) -> *mut bindings::pci_dev {
    // CAST: `pci::Device` is `#[repr(transparent)]` over `Opaque<bindings::pci_dev>`.
    ptr::from_ref(pdev).cast::<bindings::pci_dev>().cast_mut()
}

/// A PCI address: domain, bus, slot, function.
#[derive(Clone, Copy, Default)]
pub(crate) struct PciLocation {
    pub(crate) domain: u32,
    pub(crate) bus: u32,
    pub(crate) slot: u32,
    pub(crate) func: u32,
}

/// Where `pdev` sits on the PCI bus.
pub(crate) fn location(pdev: &pci::Device<Bound>) -> PciLocation {
    let raw = raw_pdev(pdev);
    // SAFETY: `raw` is a valid, bound `pci_dev`; `bus` is set at enumeration and stays valid
    // while the device exists.
    let domain = unsafe { edu_pci_domain_nr(raw) };
    // SAFETY: `raw` is a valid, bound `pci_dev` whose `bus` points to its (live) bus, set at
    // enumeration; `number` is constant after enumeration.
    let bus = unsafe { (*(*raw).bus).number };
    // SAFETY: `raw` is valid; `devfn` is constant after enumeration.
    let devfn = unsafe { (*raw).devfn };
    PciLocation {
        domain: domain as u32,
        bus: bus.into(),
        slot: (devfn >> 3) & 0x1f,
        func: devfn & 0x7,
    }
}

/// Stops the device from mastering the bus (no DMA, no MSI).
pub(crate) fn clear_master(pdev: &pci::Device<Core<'_>>) {
    // SAFETY: `pdev` is a valid device in a `Core` context (probe/unbind), in which the driver
    // core serialises updates of the command register with the rest of the driver.
    unsafe { bindings::pci_clear_master(raw_pdev(pdev)) };
}
