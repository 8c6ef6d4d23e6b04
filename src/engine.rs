// SPDX-License-Identifier: GPL-2.0

//! The command engine of one device: one command (a DMA piece or a factorial) at a time,
//! programmed through BAR0 and completed by the interrupt.
//!
//! A caller takes the engine ([`Engine::acquire`], interruptibly; `ENODEV` once unbind closed
//! it) and gets an [`EngineHold`], which borrows BAR0 for as long as it lives: a command
//! sequence (e.g. both halves of a copy chunk) runs with nobody else in the window. Each command
//! waits for its completion bit, which the interrupt thread delivers ([`Engine::irq_deliver`])
//! under the engine lock, so no wakeup is lost between a waiter's check and its sleep.
//!
//! On `EINTR` or `ETIMEDOUT` a DMA command is not abandoned: the engine polls the device idle
//! before it returns, so the caller may unmap and free the memory the command targeted.
//!
//! An interrupted wait ends in [`signal::interrupted`]: `EINTR` for a real signal, `ERESTARTSYS`
//! when only task work (io_uring's `TWA_SIGNAL`) broke it, which restarts the system call.

use kernel::{
    device::{
        Bound,
        Device, //
    },
    io::{
        poll::{
            read_poll_timeout,
            read_poll_timeout_atomic, //
        },
        Io, //
    },
    new_condvar, new_mutex,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        CondVar,
        CondVarTimeoutResult,
        Mutex, //
    },
    time::{
        msecs_to_jiffies,
        Delta, //
    },
};

use crate::{
    raw::signal,
    regs::*,
    split::{
        Piece,
        WINDOW, //
    },
};

/// Direction of a DMA command.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    /// RAM to the device window (the device reads memory).
    ToDevice,
    /// Device window to RAM (the device writes memory).
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

/// State protected by `Engine::state`.
struct State {
    /// A command sequence owns the engine (an [`EngineHold`] exists).
    busy: bool,
    /// The device is going away: no new command sequence.
    closed: bool,
    /// Interrupt status bits delivered by the interrupt thread and not yet consumed.
    irq_status: u32,
}

/// The command engine of one device.
#[pin_data]
pub(crate) struct Engine {
    /// The innermost lock of the driver: nothing else is taken while it is held.
    #[pin]
    state: Mutex<State>,
    /// Signalled on every change of `state`.
    #[pin]
    cv: CondVar,
    /// Status bits the hard interrupt handler read and acknowledged, for the thread.
    pending: Atomic<u32>,
    /// Fault injection: the next N DMA commands raise no interrupt.
    drop_irqs: Atomic<u32>,
    stats: Stats,
}

impl Engine {
    /// A free engine.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            state <- new_mutex!(
                State {
                    busy: false,
                    closed: false,
                    irq_status: 0,
                },
                "Engine::state"
            ),
            cv <- new_condvar!("Engine::cv"),
            pending: Atomic::new(0),
            drop_irqs: Atomic::new(0),
            stats: Stats {
                irqs: Atomic::new(0),
                dma_cmds: Atomic::new(0),
                dma_bytes: Atomic::new(0),
                factorials: Atomic::new(0),
                timeouts: Atomic::new(0),
            },
        })
    }

    /// The counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Takes the engine, waiting (interruptibly: [`signal::interrupted`]) while another command
    /// sequence runs. `dev` and its BAR0 `bar` are borrowed for as long as the hold lives.
    pub(crate) fn acquire<'a>(
        &'a self,
        dev: &'a Device<Bound>,
        bar: &'a Bar0,
    ) -> Result<EngineHold<'a>> {
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return Err(ENODEV);
            }
            if !st.busy {
                st.busy = true;
                return Ok(EngineHold {
                    engine: self,
                    dev,
                    bar,
                });
            }
            if self.cv.wait_interruptible(&mut st) {
                return Err(signal::interrupted());
            }
        }
    }

    /// Hard interrupt half: records status bits that were read and acknowledged. Takes no
    /// lock (a hard handler may not take the engine's mutex).
    pub(crate) fn irq_acked(&self, status: u32) {
        self.stats.irqs.add(1, Relaxed);
        let mut cur = self.pending.load(Relaxed);
        while let Err(v) = self.pending.cmpxchg(cur, cur | status, Full) {
            cur = v;
        }
    }

    /// Interrupt thread: hands the recorded bits to the waiter under the engine lock, so the
    /// wakeup cannot fall between the waiter's check and its sleep.
    pub(crate) fn irq_deliver(&self) {
        let status = self.pending.xchg(0, Full);
        if status == 0 {
            return;
        }
        let mut st = self.state.lock();
        st.irq_status |= status;
        self.cv.notify_all();
    }

    /// Fault injection: the next `n` DMA commands raise no completion interrupt.
    pub(crate) fn drop_next_irqs(&self, n: u32) {
        self.drop_irqs.store(n, Relaxed);
    }

    /// Refuses new command sequences: waiters and later callers get `ENODEV`; a running one
    /// finishes (its caller's `bound` section keeps unbind waiting for it).
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        self.cv.notify_all();
    }

    /// Takes one injected fault if any is left; returns whether it did.
    fn take_dropped_irq(&self) -> bool {
        let mut cur = self.drop_irqs.load(Relaxed);
        while cur > 0 {
            match self.drop_irqs.cmpxchg(cur, cur - 1, Relaxed) {
                Ok(_) => return true,
                Err(v) => cur = v,
            }
        }
        false
    }
}

/// Exclusive use of the engine and its BAR for a command sequence; released on drop.
pub(crate) struct EngineHold<'a> {
    engine: &'a Engine,
    dev: &'a Device<Bound>,
    bar: &'a Bar0,
}

impl Drop for EngineHold<'_> {
    fn drop(&mut self) {
        let mut st = self.engine.state.lock();
        st.busy = false;
        self.engine.cv.notify_all();
    }
}

/// Upper bound on the time the device needs to finish a command once it started.
// TIMEOUT: edu completes a DMA command 100 ms of virtual time after it starts and computes a
// factorial at once; two seconds also cover an emulator on a loaded host.
const IDLE_WAIT: Delta = Delta::from_millis(2000);

impl EngineHold<'_> {
    /// Runs `pieces` in order through the window starting at offset `win_off`.
    pub(crate) fn run(
        &self,
        pieces: &[Piece],
        win_off: usize,
        dir: Dir,
        timeout_ms: u32,
    ) -> Result {
        let mut w = win_off;
        for &piece in pieces {
            self.dma(piece, w, dir, timeout_ms)?;
            w += piece.len;
        }
        Ok(())
    }

    /// Moves one piece between RAM and window offset `win_off`, and waits for the completion
    /// interrupt.
    pub(crate) fn dma(&self, piece: Piece, win_off: usize, dir: Dir, timeout_ms: u32) -> Result {
        let Piece { bus, len } = piece;
        if len == 0 || len > WINDOW || win_off.checked_add(len).is_none_or(|end| end > WINDOW) {
            // The driver is the only bounds check edu has: never program a bad range.
            return Err(EINVAL);
        }
        let window = DMA_WINDOW + win_off as u64;
        let (src, dst) = match dir {
            Dir::ToDevice => (bus, window),
            Dir::FromDevice => (window, bus),
        };
        let irq = !self.engine.take_dropped_irq();
        self.engine.state.lock().irq_status &= !IRQ_DMA;
        let bar = self.bar;
        bar.write_reg(DMA_SRC::zeroed().with_addr(src));
        bar.write_reg(DMA_DST::zeroed().with_addr(dst));
        bar.write_reg(DMA_COUNT::zeroed().with_count(len as u64));
        bar.write_reg(
            DMA_CMD::zeroed()
                .with_start(true)
                .with_from_device(dir == Dir::FromDevice)
                .with_irq(irq),
        );

        if let Err(e) = self.wait_irq(IRQ_DMA, timeout_ms, || dma_idle(bar)) {
            self.wait_idle()?;
            // A device that vanished mid-command (surprise removal) reads all-ones.
            if e == ETIMEDOUT && !self.present() {
                return Err(ENODEV);
            }
            if e == ETIMEDOUT {
                self.engine.stats.timeouts.add(1, Relaxed);
            }
            return Err(e);
        }
        let stats = &self.engine.stats;
        stats.dma_cmds.add(1, Relaxed);
        stats.dma_bytes.add(len as u64, Relaxed);
        Ok(())
    }

    /// Computes `n!` (n <= 12) with the device, completed by its interrupt.
    pub(crate) fn factorial(&self, n: u32, timeout_ms: u32) -> Result<u32> {
        if n > 12 {
            return Err(EOVERFLOW);
        }
        let bar = self.bar;
        self.engine.state.lock().irq_status &= !IRQ_FACT;
        bar.write_reg(STATUS::zeroed().with_irq_enable(true));
        bar.write_reg(FACTORIAL::from_raw(n));
        if let Err(e) = self.wait_irq(IRQ_FACT, timeout_ms, || true) {
            // edu computes in a host thread: under `-icount ... sleep=off` an idle guest's clock
            // jumps to its next timer (this timeout) at once, before a busy host ran that thread.
            // Done is done, interrupt or not: poll busily, which keeps the guest's clock tied to
            // instructions executed (and so to real time), not to timers.
            if e != ETIMEDOUT || !self.poll_busy(|bar| !bar.read(STATUS).computing()) {
                if e == ETIMEDOUT {
                    self.engine.stats.timeouts.add(1, Relaxed);
                }
                return Err(e);
            }
        }
        let v = bar.read(FACTORIAL).into_raw();
        self.engine.stats.factorials.add(1, Relaxed);
        Ok(v)
    }

    /// Waits for interrupt status `bit`, accepted only when `done()` agrees (a late interrupt of
    /// an earlier command cannot complete this one). Interruptible: [`signal::interrupted`].
    fn wait_irq(&self, bit: u32, timeout_ms: u32, done: impl Fn() -> bool) -> Result {
        let engine = self.engine;
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut st = engine.state.lock();
        loop {
            if st.irq_status & bit != 0 {
                st.irq_status &= !bit;
                if done() {
                    return Ok(());
                }
            }
            match engine.cv.wait_interruptible_timeout(&mut st, left) {
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(signal::interrupted()),
                CondVarTimeoutResult::Timeout => return Err(ETIMEDOUT),
            }
        }
    }

    /// Whether the device still answers (an unplugged one reads all-ones).
    fn present(&self) -> bool {
        self.bar.read(IDENT).into_raw() != u32::MAX
    }

    /// Polls until the device finished its DMA command (uninterruptibly: the memory it targets
    /// must not be released before). `EIO` if it never does.
    fn wait_idle(&self) -> Result {
        if self.poll(dma_idle) {
            return Ok(());
        }
        dev_err!(self.dev, "DMA engine stuck; device left busy\n");
        Err(EIO)
    }

    /// Polls `cond` every millisecond for up to [`IDLE_WAIT`].
    fn poll(&self, cond: impl Fn(&Bar0) -> bool) -> bool {
        read_poll_timeout(
            || Ok(cond(self.bar)),
            |&done| done,
            Delta::from_millis(1),
            IDLE_WAIT,
        )
        .is_ok()
    }

    /// Polls `cond` busily (no sleep) every 10 us for up to [`IDLE_WAIT`].
    fn poll_busy(&self, cond: impl Fn(&Bar0) -> bool) -> bool {
        const STEP_US: i64 = 10;
        let retries = (IDLE_WAIT.as_micros_ceil() / STEP_US) as usize;
        read_poll_timeout_atomic(
            || Ok(cond(self.bar)),
            |&done| done,
            Delta::from_micros(STEP_US),
            retries,
        )
        .is_ok()
    }
}

/// Whether no DMA command runs (an unplugged device reads all-ones and counts as idle: it cannot
/// reach memory any more).
fn dma_idle(bar: &Bar0) -> bool {
    let cmd = bar.read(DMA_CMD);
    cmd.into_raw() == u64::MAX || !cmd.start()
}
