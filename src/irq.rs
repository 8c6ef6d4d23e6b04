// SPDX-License-Identifier: GPL-2.0

//! The interrupt handler: the hard half reads and acknowledges edu's interrupt status (edu needs
//! the acknowledge even with MSI, and a level INTx line stays asserted until it), the threaded
//! half hands the bits to waiters under the state lock, so a wakeup cannot be lost between a
//! waiter's check and its sleep.

use kernel::{
    device::{
        Bound,
        Device, //
    },
    io::Io,
    irq::{
        IrqReturn,
        ThreadedHandler,
        ThreadedIrqReturn, //
    },
    sync::atomic::{
        Full,
        Relaxed, //
    },
};

use crate::{
    device::EduDevice,
    regs::*, //
};

impl ThreadedHandler for EduDevice {
    fn handle(&self, dev: &Device<Bound>) -> ThreadedIrqReturn {
        let Ok(bar) = self.bar.access(dev) else {
            return ThreadedIrqReturn::None;
        };
        let status = bar.read(IRQ_STATUS).into_raw();
        if status == 0 || status == u32::MAX {
            // Not ours (shared INTx), or the device is gone.
            return ThreadedIrqReturn::None;
        }
        bar.write_reg(IRQ_ACK::from_raw(status));
        self.stats.irqs.add(1, Relaxed);
        let mut cur = self.irq_pending.load(Relaxed);
        while let Err(v) = self.irq_pending.cmpxchg(cur, cur | status, Full) {
            cur = v;
        }
        ThreadedIrqReturn::WakeThread
    }

    fn handle_threaded(&self, _dev: &Device<Bound>) -> IrqReturn {
        let status = self.irq_pending.xchg(0, Full);
        if status != 0 {
            self.deliver_irq(status);
        }
        IrqReturn::Handled
    }
}
