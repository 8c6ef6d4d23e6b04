// SPDX-License-Identifier: GPL-2.0

//! PCI glue: the ID table, probe (enable, DMA mask, BAR0, identity, interrupts, `/dev` node) and
//! unbind (quiesce), plus the allocator of `/dev/edu-dma<N>` instance numbers.

use kernel::{
    debugfs,
    device::Core,
    dma::{
        Device as _,
        DmaMask, //
    },
    io::Io,
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
    time::hrtimer::{
        ArcHrTimerHandle,
        HrTimerPointer, //
    },
    uaccess::UserSliceReader,
};

use crate::{
    device::{
        EduDevice,
        Ident,
        Identity,
        IrqMode,
        Params, //
    },
    engine::WATCHDOG_PERIOD,
    file::EduNode,
    raw,
    regs::*, //
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

/// Per-binding data; fields drop in order: node, debugfs, interrupt, watchdog, instance number.
#[pin_data]
pub(crate) struct EduData {
    #[pin]
    node: EduNode,
    /// debugfs `edu-dma<N>/gaps`: the engine's command gaps (`crate::gaps`); writing `on` clears
    /// them and starts recording, `off` clears them and stops it (the default).
    #[pin]
    gaps: debugfs::File<Arc<EduDevice>>,
    #[pin]
    irq: irq::Registration<Arc<EduDevice>>,
    /// The queue's watchdog timer; dropping the handle cancels it (waiting for a running tick).
    _watchdog: ArcHrTimerHandle<EduDevice>,
    edu: Arc<EduDevice>,
    _instance: Instance,
}

/// Checks identification and liveness of a freshly mapped BAR; returns the identification.
fn check_identity(pdev: &pci::Device<Core<'_>>, bar: &pci::Bar<'_, BAR0_SIZE>) -> Result<Ident> {
    let id = bar.read(IDENT);
    let ident = Ident {
        raw: id.into_raw(),
        major: id.major().get(),
        minor: id.minor().get(),
    };
    if id.magic().get() != IDENT_MAGIC || ident.major != IDENT_MAJOR {
        dev_err!(
            pdev.as_ref(),
            "unsupported edu identification {:#010x} (version {}.{}); this driver knows {}.x\n",
            ident.raw,
            ident.major,
            ident.minor,
            IDENT_MAJOR
        );
        return Err(ENODEV);
    }
    for probe in [0x1234_5678u32, 0xa5a5_0f0f] {
        bar.write_reg(LIVENESS::from_raw(probe));
        let got = bar.read(LIVENESS).into_raw();
        if got != !probe {
            dev_err!(
                pdev.as_ref(),
                "liveness check failed: wrote {:#x}, read {:#x}\n",
                probe,
                got
            );
            return Err(EIO);
        }
    }
    Ok(ident)
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
            let params = Params::read();
            pdev.enable_device_mem()?;
            pdev.set_master();

            if !(28..=64).contains(&params.dma_bits) {
                dev_err!(
                    pdev.as_ref(),
                    "dma_bits={} out of 28..=64\n",
                    params.dma_bits
                );
                return Err(EINVAL);
            }
            // SAFETY: probe: no DMA allocation or mapping exists for this device yet, and none is
            // made concurrently (nothing else knows the device).
            unsafe { pdev.dma_set_mask_and_coherent(DmaMask::try_new(params.dma_bits)?)? };
            // No segment limit: one edu command moves at most one window, but the driver cuts
            // every bus-contiguous range at window steps itself (`split.rs`), whatever length the
            // DMA API or an exporter hands it. A claimed limit (one window, before) is not one the
            // device has, and exporters that ignore it (udmabuf builds its tables with
            // `sg_alloc_table_from_pages`, merging contiguous memfd pages) then trip DMA-API
            // debug's "mapping sg segment longer than device claims to support" (seen in the
            // 64-bit boot, where such pages are often contiguous).
            // SAFETY: probe: no DMA mapping exists for this device yet, and none is made
            // concurrently.
            unsafe { pdev.dma_set_max_seg_size(u32::MAX) };

            let bar = pdev.iomap_region_sized::<BAR0_SIZE>(0, c"edu_dma")?;
            let ident = check_identity(pdev, &bar)?;
            let bar = bar.into_devres()?;

            let msi = pci::IrqTypes::default().with(pci::IrqType::Msi);
            let intx = pci::IrqTypes::default().with(pci::IrqType::Intx);
            let (vectors, irq_mode) = match pdev.alloc_irq_vectors(1, 1, msi) {
                Ok(v) => (v, IrqMode::Msi),
                Err(_) => (pdev.alloc_irq_vectors(1, 1, intx)?, IrqMode::Intx),
            };
            let (flags, mode) = match irq_mode {
                IrqMode::Intx => (irq::Flags::SHARED, "INTx"),
                IrqMode::Msi => (irq::Flags::TRIGGER_NONE, "MSI"),
            };

            let dma_coherent = raw::dma::is_coherent(pdev.as_ref());
            let instance = Instance::alloc()?;
            let id = Identity {
                instance: instance.0,
                ident,
                irq_mode,
                loc: raw::pci::location(pdev),
                dma_coherent,
            };
            let edu = Arc::pin_init(EduDevice::new(pdev, bar, id, params)?, GFP_KERNEL)?;
            let name = CString::try_from_fmt(fmt!("edu-dma{}", instance.0))?;
            dev_info!(
                pdev.as_ref(),
                "edu {}.{} bound as /dev/edu-dma{} ({}, {}-bit DMA, {})\n",
                ident.major,
                ident.minor,
                instance.0,
                mode,
                params.dma_bits,
                if dma_coherent {
                    "coherent"
                } else {
                    "non-coherent"
                }
            );

            let watchdog = edu.clone().start(WATCHDOG_PERIOD);
            // Best effort, like every debugfs entry: without debugfs the file simply is not there.
            let dir = debugfs::Dir::new(&name);
            Ok(try_pin_init!(EduData {
                irq <- pdev.request_irq(*vectors.start(), flags, c"edu_dma", Ok::<_, Error>(edu.clone())),
                _watchdog: watchdog,
                gaps <- dir.read_write_callback_file(
                    c"gaps",
                    edu.clone(),
                    &|edu: &Arc<EduDevice>, f| edu.engine.write_gaps(f),
                    &|edu: &Arc<EduDevice>, r| {
                        edu.engine.record_gaps(gaps_switch(r)?);
                        Ok(())
                    },
                ),
                node <- EduNode::register(name, pdev.as_ref(), edu.clone()),
                edu,
                _instance: instance,
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        this.edu.shutdown(pdev);
        dev_info!(
            pdev.as_ref(),
            "unbound /dev/edu-dma{}\n",
            this.edu.id.instance
        );
    }
}

/// What a write to debugfs `gaps` asks for: `on` (record) or `off`, a trailing newline allowed;
/// `EINVAL` for anything else.
fn gaps_switch(r: &mut UserSliceReader) -> Result<bool> {
    let mut buf = [0u8; 4];
    let n = r.len();
    r.read_slice(buf.get_mut(..n).ok_or(EINVAL)?)?;
    match buf.get(..n).ok_or(EINVAL)?.trim_ascii_end() {
        b"on" => Ok(true),
        b"off" => Ok(false),
        _ => Err(EINVAL),
    }
}
