// SPDX-License-Identifier: GPL-2.0

//! The interrupt handler and the queue's watchdog.
//!
//! The handler runs in hard-IRQ context only (no thread): it reads and acknowledges edu's
//! interrupt status (edu needs the acknowledge even with MSI, and a level INTx line stays
//! asserted until it) and hands it to the engine under the engine's irq-safe spinlock, which
//! delivers it to a synchronous waiter or completes the running queued command and programs the
//! next one (see `engine.rs` for why this is done in the hard handler).
//!
//! The watchdog is a periodic hrtimer of the device (started at probe, cancelled when the
//! binding goes): it ends a queued command whose completion interrupt is overdue.

use kernel::{
    device::{
        Bound,
        Device, //
    },
    impl_has_hr_timer,
    io::Io,
    irq::{
        Handler,
        IrqReturn, //
    },
    sync::{
        Arc,
        ArcBorrow, //
    },
    time::{
        hrtimer::{
            HrTimerCallback,
            HrTimerCallbackContext,
            HrTimerRestart,
            RelativeMode, //
        },
        Monotonic,
    },
};

use crate::{
    device::EduDevice,
    engine::WATCHDOG_PERIOD,
    regs::*, //
};

impl Handler for EduDevice {
    fn handle(&self, dev: &Device<Bound>) -> IrqReturn {
        let Ok(bar) = self.bar(dev) else {
            return IrqReturn::None;
        };
        let status = bar.read(IRQ_STATUS).into_raw();
        if status == 0 || status == u32::MAX {
            // Not ours (shared INTx), or the device is gone.
            return IrqReturn::None;
        }
        bar.write_reg(IRQ_ACK::from_raw(status));
        self.engine.irq(status, bar);
        IrqReturn::Handled
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for EduDevice {
        mode: RelativeMode<Monotonic>, field: self.watchdog
    }
}

impl HrTimerCallback for EduDevice {
    type Pointer<'a> = Arc<Self>;

    fn run(this: ArcBorrow<'_, Self>, mut ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        {
            // RCU-protected access: `None` once unbind revoked BAR0.
            let bar = this.bar_guard();
            this.engine.watchdog(bar.as_deref());
        }
        ctx.forward_now(WATCHDOG_PERIOD);
        HrTimerRestart::Restart
    }
}
