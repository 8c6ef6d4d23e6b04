// SPDX-License-Identifier: GPL-2.0

//! Per-device state shared by the PCI binding, the interrupt handler and open files, and the
//! command engine that runs one device command (DMA or factorial) at a time.
//!
//! Lifetime protocol: file operations reach the bound device only through [`EduDevice::bound`],
//! which counts them in `State::users` while `!gone`. `unbind` sets `gone`, wakes every waiter,
//! and waits until no command runs and no user is left before it quiesces the device; so every
//! DMA mapping made for the device is unmapped before the driver lets go of it.

use kernel::{
    device::{
        self,
        Bound,
        Core, //
    },
    devres::Devres,
    dma::DmaAddress,
    io::Io,
    new_condvar, new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Relaxed, //
        },
        Arc,
        CondVar,
        CondVarTimeoutResult,
        Mutex, //
    },
    time::{
        delay::fsleep,
        msecs_to_jiffies,
        Delta, //
    },
};

use crate::{
    buffer::Buffer,
    raw::{
        self,
        PciLocation, //
    },
    regs::{self, *},
};

/// BAR0, owned beyond `'bound` and revoked at unbind.
pub(crate) type Bar0 = pci::Bar<'static, BAR0_SIZE>;

/// Direction of a DMA command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// RAM to the device window.
    ToDevice,
    /// Device window to RAM.
    FromDevice,
}

/// Counters reported by the info ioctl.
pub(crate) struct Stats {
    pub(crate) irqs: Atomic<u64>,
    pub(crate) dma_cmds: Atomic<u64>,
    pub(crate) dma_bytes: Atomic<u64>,
    pub(crate) factorials: Atomic<u64>,
    pub(crate) timeouts: Atomic<u64>,
}

impl Stats {
    fn new() -> Self {
        Self {
            irqs: Atomic::new(0),
            dma_cmds: Atomic::new(0),
            dma_bytes: Atomic::new(0),
            factorials: Atomic::new(0),
            timeouts: Atomic::new(0),
        }
    }
}

/// State protected by `EduDevice::state`.
pub(crate) struct State {
    /// Unbind has started: no new user, no new command.
    gone: bool,
    /// A command sequence owns the engine.
    busy: bool,
    /// File operations currently using the bound device.
    users: u32,
    /// Interrupt status bits delivered by the handler and not yet consumed.
    pub(crate) irq_status: u32,
    /// Buffer memory charged to this device.
    pub(crate) buf_bytes: usize,
}

/// One edu device, shared (`Arc`) by the binding, its interrupt handler and open files.
#[pin_data]
pub(crate) struct EduDevice {
    pub(crate) pdev: ARef<pci::Device>,
    pub(crate) bar: Devres<Bar0>,
    pub(crate) instance: u32,
    pub(crate) irq_mode: u32,
    pub(crate) dma_bits: u32,
    pub(crate) loc: PciLocation,
    pub(crate) ident: u32,
    #[pin]
    pub(crate) state: Mutex<State>,
    #[pin]
    pub(crate) cv: CondVar,
    /// Every buffer of every open file, for revocation at unbind.
    #[pin]
    buffers: Mutex<KVec<Arc<Buffer>>>,
    /// Status bits the hard interrupt handler read and acknowledged, for the thread.
    pub(crate) irq_pending: Atomic<u32>,
    /// Fault injection: the next N DMA commands raise no interrupt.
    pub(crate) drop_irqs: Atomic<u32>,
    pub(crate) stats: Stats,
}

/// Parameters of [`EduDevice::new`].
pub(crate) struct EduConfig {
    pub(crate) bar: Devres<Bar0>,
    pub(crate) instance: u32,
    pub(crate) irq_mode: u32,
    pub(crate) dma_bits: u32,
    pub(crate) ident: u32,
}

impl EduDevice {
    /// Initialiser for the shared state of `pdev`.
    pub(crate) fn new(pdev: &pci::Device<Core<'_>>, cfg: EduConfig) -> impl PinInit<Self> {
        let loc = raw::pci_location(pdev);
        let pdev = ARef::<pci::Device>::from(pdev);
        pin_init!(Self {
            pdev,
            bar: cfg.bar,
            instance: cfg.instance,
            irq_mode: cfg.irq_mode,
            dma_bits: cfg.dma_bits,
            loc,
            ident: cfg.ident,
            state <- new_mutex!(State {
                gone: false,
                busy: false,
                users: 0,
                irq_status: 0,
                buf_bytes: 0,
            }),
            cv <- new_condvar!(),
            buffers <- new_mutex!(KVec::new()),
            irq_pending: Atomic::new(0),
            drop_irqs: Atomic::new(0),
            stats: Stats::new(),
        })
    }

    /// Runs `f` with the bound device, or fails with `ENODEV` once unbind has started. Unbind
    /// waits for `f` to return.
    pub(crate) fn bound<R>(
        &self,
        f: impl FnOnce(&device::Device<Bound>) -> Result<R>,
    ) -> Result<R> {
        {
            let mut st = self.state.lock();
            if st.gone {
                return Err(ENODEV);
            }
            st.users += 1;
        }
        // SAFETY: `users` is non-zero until `f` returns, and `shutdown` (called from `unbind`,
        // before the device is released) waits for it to drop to zero; so the device stays bound
        // while `f` runs.
        let dev = unsafe { self.pdev.as_ref().as_bound() };
        let ret = f(dev);
        let mut st = self.state.lock();
        st.users -= 1;
        if st.users == 0 && st.gone {
            self.cv.notify_all();
        }
        ret
    }

    /// Takes the command engine, waiting (interruptibly) while another command sequence runs.
    pub(crate) fn engine(&self) -> Result<Engine<'_>> {
        let mut st = self.state.lock();
        loop {
            if st.gone {
                return Err(ENODEV);
            }
            if !st.busy {
                st.busy = true;
                return Ok(Engine { edu: self });
            }
            if self.cv.wait_interruptible(&mut st) {
                return Err(EINTR);
            }
        }
    }

    /// Registers a new buffer for revocation at unbind.
    pub(crate) fn register_buffer(&self, buf: Arc<Buffer>) -> Result {
        self.buffers.lock().push(buf, GFP_KERNEL)?;
        Ok(())
    }

    /// Forgets a buffer its file let go of.
    pub(crate) fn unregister_buffer(&self, buf: &Arc<Buffer>) {
        self.buffers.lock().retain(|b| !Arc::ptr_eq(b, buf));
    }

    /// Unbind: refuse new work, wait for running commands and users, then quiesce the device.
    pub(crate) fn shutdown(&self, pdev: &pci::Device<Core<'_>>) {
        {
            let mut st = self.state.lock();
            st.gone = true;
            self.cv.notify_all();
            while st.busy || st.users > 0 {
                self.cv.wait(&mut st);
            }
        }
        if let Ok(bar) = self.bar.access(pdev.as_ref()) {
            // No factorial interrupt, nothing pending.
            bar.write_reg(STATUS::zeroed());
            bar.write_reg(IRQ_ACK::from_raw(!0));
        }
        raw::clear_master(pdev);
        // No DMA allocation or mapping outlives the binding.
        let buffers = core::mem::take(&mut *self.buffers.lock());
        for buf in buffers.iter() {
            buf.revoke();
        }
    }

    /// Accumulates interrupt status bits from the threaded handler and wakes waiters.
    pub(crate) fn deliver_irq(&self, status: u32) {
        let mut st = self.state.lock();
        st.irq_status |= status;
        self.cv.notify_all();
    }
}

/// Exclusive use of the device's command engine; released on drop.
pub(crate) struct Engine<'a> {
    edu: &'a EduDevice,
}

impl Drop for Engine<'_> {
    fn drop(&mut self) {
        let mut st = self.edu.state.lock();
        st.busy = false;
        self.edu.cv.notify_all();
    }
}

/// Upper bound on the time the device needs for one command once it started.
const IDLE_WAIT_MS: i64 = 2000;

impl Engine<'_> {
    /// Moves `len` (1..=4096) bytes between bus address `bus` and window offset `win_off`, and
    /// waits for the completion interrupt. On `EINTR` or `ETIMEDOUT` the device is idle again
    /// when this returns, so the caller may unmap and free the memory.
    pub(crate) fn dma(
        &self,
        bus: DmaAddress,
        win_off: usize,
        len: usize,
        dir: Dir,
        timeout_ms: u32,
    ) -> Result {
        if len == 0 || len > DMA_WINDOW_SIZE || win_off + len > DMA_WINDOW_SIZE {
            // The driver is the only bounds check edu has: never program a bad range.
            return Err(EINVAL);
        }
        let edu = self.edu;
        let window = DMA_WINDOW + win_off as u64;
        let (src, dst) = match dir {
            Dir::ToDevice => (bus, window),
            Dir::FromDevice => (window, bus),
        };
        let irq = !take_one(&edu.drop_irqs);
        edu.state.lock().irq_status &= !IRQ_DMA;
        edu.bar
            .try_access_with(|bar| {
                bar.write_reg(DMA_SRC::zeroed().with_addr(src));
                bar.write_reg(DMA_DST::zeroed().with_addr(dst));
                bar.write_reg(DMA_COUNT::zeroed().with_count(len as u64));
                bar.write_reg(
                    DMA_CMD::zeroed()
                        .with_start(true)
                        .with_from_device(dir == Dir::FromDevice)
                        .with_irq(irq),
                );
            })
            .ok_or(ENODEV)?;

        if let Err(e) = self.wait_irq(IRQ_DMA, timeout_ms, || self.dma_idle()) {
            self.wait_idle()?;
            // A device that vanished mid-command (surprise removal) reads all-ones.
            return Err(if e == ETIMEDOUT && !self.present() {
                ENODEV
            } else {
                e
            });
        }
        edu.stats.dma_cmds.add(1, Relaxed);
        edu.stats.dma_bytes.add(len as u64, Relaxed);
        Ok(())
    }

    /// Computes `n!` (n <= 12) with the device, completed by its interrupt.
    pub(crate) fn factorial(&self, n: u32, timeout_ms: u32) -> Result<u32> {
        if n > 12 {
            return Err(EOVERFLOW);
        }
        let edu = self.edu;
        edu.state.lock().irq_status &= !IRQ_FACT;
        edu.bar
            .try_access_with(|bar| {
                bar.write_reg(STATUS::zeroed().with_irq_enable(true));
                bar.write_reg(FACTORIAL::from_raw(n));
            })
            .ok_or(ENODEV)?;
        if let Err(e) = self.wait_irq(IRQ_FACT, timeout_ms, || true) {
            // edu computes in a host thread: under `-icount ... sleep=off` an idle guest's clock
            // can pass the timeout before that thread ran. Done is done, interrupt or not.
            if e != ETIMEDOUT || !self.poll(|bar| bar.read(STATUS).computing().get() == 0) {
                return Err(e);
            }
        }
        let v = edu
            .bar
            .try_access_with(|bar| bar.read(FACTORIAL).into_raw())
            .ok_or(ENODEV)?;
        edu.stats.factorials.add(1, Relaxed);
        Ok(v)
    }

    /// Waits for interrupt status `bit`, accepted only when `done()` agrees (a late interrupt of
    /// an earlier command cannot complete this one).
    fn wait_irq(&self, bit: u32, timeout_ms: u32, done: impl Fn() -> bool) -> Result {
        let edu = self.edu;
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut st = edu.state.lock();
        loop {
            if st.irq_status & bit != 0 {
                st.irq_status &= !bit;
                if done() {
                    return Ok(());
                }
            }
            match edu.cv.wait_interruptible_timeout(&mut st, left) {
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
                CondVarTimeoutResult::Timeout => {
                    edu.stats.timeouts.add(1, Relaxed);
                    return Err(ETIMEDOUT);
                }
            }
        }
    }

    /// Whether the device still answers (an unplugged one reads all-ones or is unmapped).
    fn present(&self) -> bool {
        self.edu
            .bar
            .try_access_with(|bar| bar.read(IDENT).into_raw() != u32::MAX)
            .unwrap_or(false)
    }

    /// Whether no DMA command runs, or the device is gone.
    fn dma_idle(&self) -> bool {
        self.edu.bar.try_access_with(dma_idle).unwrap_or(true)
    }

    /// Polls until the device finished its DMA command (uninterruptibly: the memory it targets
    /// must not be released before). `EIO` if it never does.
    fn wait_idle(&self) -> Result {
        if self.poll(dma_idle) {
            return Ok(());
        }
        dev_err!(
            self.edu.pdev.as_ref(),
            "DMA engine stuck; device left busy\n"
        );
        Err(EIO)
    }

    /// Polls `cond` every millisecond for up to `IDLE_WAIT_MS`; an unmapped BAR (unplugged
    /// device) counts as true.
    fn poll(&self, cond: impl Fn(&Bar0) -> bool) -> bool {
        for _ in 0..IDLE_WAIT_MS {
            if self.edu.bar.try_access_with(&cond).unwrap_or(true) {
                return true;
            }
            fsleep(Delta::from_millis(1));
        }
        false
    }
}

/// Whether no DMA command runs (an unplugged device reads all-ones and counts as idle: it cannot
/// reach memory any more).
fn dma_idle(bar: &Bar0) -> bool {
    let cmd = bar.read(DMA_CMD).into_raw();
    cmd == u64::MAX || cmd & 1 == 0
}

/// Decrements `counter` if it is non-zero; returns whether it did.
fn take_one(counter: &Atomic<u32>) -> bool {
    let mut cur = counter.load(Relaxed);
    while cur > 0 {
        match counter.cmpxchg(cur, cur - 1, Relaxed) {
            Ok(_) => return true,
            Err(v) => cur = v,
        }
    }
    false
}

/// Checks identification and liveness of a freshly mapped BAR; returns the identification.
pub(crate) fn check_identity(
    pdev: &pci::Device<Core<'_>>,
    bar: &pci::Bar<'_, BAR0_SIZE>,
) -> Result<u32> {
    let id = bar.read(IDENT);
    let (major, minor) = (id.major().get(), id.minor().get());
    if id.magic().get() != regs::IDENT_MAGIC || major != IDENT_MAJOR {
        dev_err!(
            pdev.as_ref(),
            "unsupported edu identification {:#010x} (version {}.{}); this driver knows {}.x\n",
            id.into_raw(),
            major,
            minor,
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
    Ok(id.into_raw())
}
