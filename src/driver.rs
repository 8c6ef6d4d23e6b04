// SPDX-License-Identifier: GPL-2.0

//! PCI glue: the ID table, probe (enable, DMA mask, BAR0, identity, interrupts, `/dev` node) and
//! unbind (quiesce), plus the allocator of `/dev/edu-dma<N>` instance numbers.

use kernel::{
    device::Core,
    dma::{
        Device as _,
        DmaMask, //
    },
    irq, pci,
    prelude::*,
    str::CString,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc, //
    },
};

use crate::{
    device::{
        self,
        EduConfig,
        EduDevice, //
    },
    raw::MiscNode,
    regs::BAR0_SIZE,
    uapi, //
};

// SAFETY: `pci::Vendor` is `#[repr(transparent)]` over `u16`, and any `u16` is a valid vendor ID.
// (7.2 has no constant for QEMU's 0x1234 and keeps `Vendor::from_raw` private.)
const VENDOR_QEMU: pci::Vendor = unsafe { core::mem::transmute::<u16, pci::Vendor>(0x1234) };

kernel::pci_device_table!(
    PCI_TABLE,
    MODULE_PCI_TABLE,
    <EduDriver as pci::Driver>::IdInfo,
    [(pci::DeviceId::from_id(VENDOR_QEMU, 0x11e8), ())]
);

/// Instance numbers in use, one bit each.
static INSTANCES: Atomic<u64> = Atomic::new(0);

/// An instance number N of `/dev/edu-dma<N>`, unique while the device is bound.
struct Instance(u32);

impl Instance {
    fn alloc() -> Result<Self> {
        let mut cur = INSTANCES.load(Relaxed);
        loop {
            let n = (!cur).trailing_zeros();
            if n >= 64 {
                return Err(ENOSPC);
            }
            match INSTANCES.cmpxchg(cur, cur | (1 << n), Relaxed) {
                Ok(_) => return Ok(Self(n)),
                Err(v) => cur = v,
            }
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let mut cur = INSTANCES.load(Relaxed);
        while let Err(v) = INSTANCES.cmpxchg(cur, cur & !(1 << self.0), Relaxed) {
            cur = v;
        }
    }
}

/// The driver.
pub(crate) struct EduDriver;

/// Per-binding data; fields drop in order: node, interrupt, instance number.
#[pin_data]
pub(crate) struct EduData {
    #[pin]
    node: MiscNode,
    #[pin]
    irq: irq::ThreadedRegistration<Arc<EduDevice>>,
    edu: Arc<EduDevice>,
    _instance: Instance,
}

impl pci::Driver for EduDriver {
    type IdInfo = ();
    type Data<'bound> = EduData;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: &'bound Self::IdInfo,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || -> Result<_> {
            pdev.enable_device_mem()?;
            pdev.set_master();

            let dma_bits = *crate::module_parameters::dma_bits.value();
            if !(28..=64).contains(&dma_bits) {
                dev_err!(pdev.as_ref(), "dma_bits={} out of 28..=64\n", dma_bits);
                return Err(EINVAL);
            }
            // SAFETY: probe: no DMA allocation or mapping exists for this device yet.
            unsafe {
                pdev.dma_set_mask_and_coherent(DmaMask::try_new(dma_bits)?)?;
                // One edu command moves at most one window; keep IOMMU merging below it.
                pdev.dma_set_max_seg_size(uapi::EDU_DMA_WINDOW_SIZE);
            }

            let bar = pdev.iomap_region_sized::<BAR0_SIZE>(0, c"edu_dma")?;
            let ident = device::check_identity(pdev, &bar)?;
            let bar = bar.into_devres()?;

            let (vectors, irq_mode) = match pdev.alloc_irq_vectors(
                1,
                1,
                pci::IrqTypes::default().with(pci::IrqType::Msi),
            ) {
                Ok(v) => (v, uapi::EDU_DMA_IRQ_MSI),
                Err(_) => (
                    pdev.alloc_irq_vectors(
                        1,
                        1,
                        pci::IrqTypes::default().with(pci::IrqType::Intx),
                    )?,
                    uapi::EDU_DMA_IRQ_INTX,
                ),
            };
            let flags = if irq_mode == uapi::EDU_DMA_IRQ_INTX {
                irq::Flags::SHARED
            } else {
                irq::Flags::TRIGGER_NONE
            };

            let instance = Instance::alloc()?;
            let cfg = EduConfig {
                bar,
                instance: instance.0,
                irq_mode,
                dma_bits,
                ident,
            };
            let edu = Arc::pin_init(EduDevice::new(pdev, cfg), GFP_KERNEL)?;
            let name = CString::try_from_fmt(fmt!("edu-dma{}", instance.0))?;
            let mode = if irq_mode == uapi::EDU_DMA_IRQ_MSI {
                "MSI"
            } else {
                "INTx"
            };
            dev_info!(
                pdev.as_ref(),
                "edu {}.{} bound as /dev/edu-dma{} ({}, {}-bit DMA)\n",
                ident >> 24,
                (ident >> 16) & 0xff,
                instance.0,
                mode,
                dma_bits
            );

            Ok(try_pin_init!(EduData {
                irq <- pdev.request_threaded_irq(*vectors.start(), flags, c"edu_dma", Ok::<_, Error>(edu.clone())),
                node <- MiscNode::register(name, pdev.as_ref(), edu.clone()),
                edu,
                _instance: instance,
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        this.edu.shutdown(pdev);
        dev_info!(pdev.as_ref(), "unbound /dev/edu-dma{}\n", this.edu.instance);
    }
}
