// SPDX-License-Identifier: GPL-2.0

//! The interrupt handler: the hard half reads and acknowledges edu's interrupt status (edu needs
//! the acknowledge even with MSI, and a level INTx line stays asserted until it), the threaded
//! half hands the bits to the engine's waiter under the engine lock, so a wakeup cannot be lost
//! between a waiter's check and its sleep.

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
};

use crate::{
    device::EduDevice,
    regs::*, //
};

impl ThreadedHandler for EduDevice {
    fn handle(&self, dev: &Device<Bound>) -> ThreadedIrqReturn {
        let Ok(bar) = self.bar(dev) else {
            return ThreadedIrqReturn::None;
        };
        let status = bar.read(IRQ_STATUS).into_raw();
        if status == 0 || status == u32::MAX {
            // Not ours (shared INTx), or the device is gone.
            return ThreadedIrqReturn::None;
        }
        bar.write_reg(IRQ_ACK::from_raw(status));
        self.engine.irq_acked(status);
        ThreadedIrqReturn::WakeThread
    }

    fn handle_threaded(&self, _dev: &Device<Bound>) -> IrqReturn {
        self.engine.irq_deliver();
        IrqReturn::Handled
    }
}
