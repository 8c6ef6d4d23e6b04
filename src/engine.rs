// SPDX-License-Identifier: GPL-2.0

//! The command engine of one device: one command (a DMA piece or a factorial) at a time,
//! programmed through BAR0 and completed by the interrupt. All DMA goes through one mechanism,
//! the queue:
//!
//! - **The queue**: each file that submits gets a [`FileQueue`] of up to `queue_depth` requests,
//!   each a list of commands built at submit (pins and mappings included, in the request's
//!   [`Hold`]). The interrupt handler drives it: when a command completes it credits the bytes,
//!   programs the request's next command (the rest of a step, e.g. the second half of a copy
//!   chunk) or, at a step's end, the first command of the next file that has work (round robin),
//!   and marks finished requests done. No thread runs between two queued commands.
//! - **Synchronous DMA calls** (`XFER`, `USER_XFER`, `COPY`, read/write) are submit + wait on
//!   the same machinery ([`Engine::run_sync`]): a request on a one-slot queue of their own, its
//!   memory held by the caller until the request is over. A signal cancels what has not started
//!   and waits until the running step finished (polling the device idle, in case an interrupt
//!   is lost), so the caller may unmap and free the memory at once, and the bytes done are exact.
//!
//! Cancellation (close, signal) and unbind let the running step finish (at most a copy chunk's
//! two halves), then end the request; requests that have not started end at once.
//! - **Factorials** take the engine ([`Engine::acquire`], interruptibly; `ENODEV` once unbind
//!   closed it) and get an [`EngineHold`], which borrows BAR0 for as long as it lives; the
//!   completion bit is delivered by the interrupt handler under the engine lock, so no wakeup is
//!   lost between the waiter's check and its sleep.
//!
//! Why the hard handler and not the interrupt thread: completing a command and starting the
//! next is a few register accesses and list updates, with nothing that sleeps (holds are dropped
//! later, in process context), so it fits hard-IRQ context; doing it there saves a thread wakeup
//! per command and leaves the device idle for the shortest time. The lock it takes,
//! `Engine::state`, is an [`IrqSpinLock`] (interrupts off while held), so process context can
//! never hold it when the handler interrupts it on the same CPU.
//!
//! Completions are reaped (`REAP`: a reaper waiting for N is woken once, when the N-th is there,
//! not at every completion: [`Engine::notify_ended`]), polled (`poll_cv`: `POLLIN`) and, if the
//! file set one, counted
//! on its eventfd (`set_eventfd`): every place that ends a request ([`end`], under the lock) signals
//! it, so the count is one per request, whatever ends it. A request that came as an io_uring
//! command ([`Engine::submit_cmd`]) also queues its command's task work there (from the hard
//! handler too: `io_uring_cmd_done` must not run in hard-IRQ context), which takes the
//! completion ([`Engine::take`]), drops the hold in process context and posts the CQE; io_uring's
//! cancellation ([`Engine::cancel`]) ends it like a close ends a file's requests, one request.
//!
//! While switched on ([`Engine::record_gaps`], debugfs `edu-dma<N>/gaps`), the gap from each DMA
//! completion interrupt to the next command's start, and the handler's time here, are recorded
//! under the lock ([`Engine::write_gaps`]; see `gaps.rs`). Off by default: two clock reads per
//! interrupt that nobody reads.
//!
//! Lost interrupts: a periodic watchdog (the device's hrtimer, [`Engine::watchdog`]) ends the
//! running queued command once its timeout has passed and the device reads idle (`ETIMEDOUT`,
//! its bytes counted: they landed), or `IDLE_WAIT` later if it never does (`EIO`).
//!
//! A factorial and the queue alternate: a waiting factorial gets the device at the next step
//! boundary, and a released hold starts the queue's next step before the next factorial.
//!
//! Every interruptible wait here (the engine, a synchronous request, a reap) ends in
//! [`signal::interrupted`]: `EINTR` for a real signal, `ERESTARTSYS` when only task work
//! (io_uring's `TWA_SIGNAL`) broke it, which restarts the system call. No completion status ever
//! holds `ERESTARTSYS`: a queued request is not ended by a signal.

use kernel::{
    fmt,
    io::{
        poll::read_poll_timeout_atomic,
        Io, //
    },
    new_condvar, new_poll_condvar,
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        poll::PollCondVar,
        CondVar, CondVarTimeoutResult,
    },
    time::{
        delay::fsleep,
        msecs_to_jiffies,
        Delta,
        Instant,
        Monotonic, //
    },
};

use crate::{
    cmds::{
        Cmds,
        Dir, //
    },
    gaps::{
        write_text,
        Gaps,
        GAP_SAMPLES, //
    },
    raw::{
        ecanceled,
        eventfd::EventFd,
        irqlock::{
            new_irq_spinlock,
            IrqSpinLock,
            IrqSpinLockGuard, //
        },
        signal,
        uring::UringCmd,
        vec::push_in_place,
    },
    regs::*,
    split::{
        Piece,
        WINDOW, //
    },
};

/// Counters reported by the info ioctl.
pub(crate) struct Stats {
    pub(crate) irqs: Atomic<u64>,
    pub(crate) dma_cmds: Atomic<u64>,
    pub(crate) dma_bytes: Atomic<u64>,
    pub(crate) factorials: Atomic<u64>,
    pub(crate) timeouts: Atomic<u64>,
}

/// What a queued request keeps alive for the device: pins, scatter-gather mappings, buffer
/// references. Dropped in process context only, while the device is bound, once the device is
/// done with the request (never in the interrupt handler, never under the engine lock).
pub(crate) trait Held: Send {}
impl<T: Send> Held for T {}

/// A request's resources (see [`Held`]).
pub(crate) type Hold = KBox<dyn Held>;

/// A validated request, ready to queue.
pub(crate) struct Request {
    /// The user's cookie.
    pub(crate) cookie: u64,
    /// Its commands, in order (non-empty).
    pub(crate) cmds: Cmds,
    /// Per-command timeout.
    pub(crate) timeout_ms: u32,
    /// What the commands' bus addresses belong to (`None`: the caller keeps it, see
    /// [`Engine::run_sync`]).
    pub(crate) hold: Option<Hold>,
}

/// A queued request of a file.
struct Slot {
    /// Unique in the engine.
    seq: u64,
    cookie: u64,
    cmds: Cmds,
    timeout_ms: u32,
    /// `None` once released (taken out to be dropped outside the lock).
    hold: Option<Hold>,
    /// Index of the next command to run.
    next: usize,
    /// Bytes done.
    done: usize,
    /// `None` while in flight; then 0 or a negative errno.
    status: Option<i32>,
    /// The io_uring command the request came as: ended with it ([`end`]).
    cmd: Option<UringCmd>,
    /// io_uring cancelled it while it ran: it ends `ECANCELED` after its current step.
    cancelled: bool,
}

impl Slot {
    /// Request `req`, sequence number `seq`, not started; `cmd`: the io_uring command it came as.
    fn new(seq: u64, req: Request, cmd: Option<UringCmd>) -> Self {
        Self {
            seq,
            cookie: req.cookie,
            cmds: req.cmds,
            timeout_ms: req.timeout_ms,
            hold: req.hold,
            next: 0,
            done: 0,
            status: None,
            cmd,
            cancelled: false,
        }
    }
}

/// The queue of one file: its slots, in submission order (in flight and completed alike).
struct FileQueue {
    id: u64,
    /// Capacity reserved at attach; never exceeded (no allocation under the lock).
    slots: KVec<Slot>,
    /// The file is closing: nothing of it starts any more.
    closing: bool,
    /// Signalled each time one of its requests ends (`EDU_DMA_IOC_SET_EVENTFD`).
    eventfd: Option<EventFd>,
    /// Its requests that ended and are not removed yet (the completions waiting to be reaped):
    /// the slots whose `status` is set, counted as [`end`] sets it and `take` removes them.
    ended: usize,
    /// The fewest completions a reaper of this file waits for (0: none waits): `reap_cv` is
    /// signalled only once `ended` reaches it, not at every completion.
    reap_min: usize,
}

impl FileQueue {
    /// An open queue `id` with `slots` (its capacity: the queue's depth), no eventfd, no reaper.
    fn new(id: u64, slots: KVec<Slot>) -> Self {
        Self {
            id,
            slots,
            closing: false,
            eventfd: None,
            ended: 0,
            reap_min: 0,
        }
    }
}

/// Ends request `slot` of the file with eventfd `eventfd` with `status`: one count on the eventfd,
/// and its io_uring command's task work queued (under the engine lock, also in hard-IRQ context:
/// `EventFd::signal` takes only the eventfd's own irq-safe lock, task work is queued locklessly).
fn end(slot: &mut Slot, status: i32, eventfd: &Option<EventFd>, ended: &mut usize) {
    slot.status = Some(status);
    *ended += 1;
    if let Some(e) = eventfd {
        e.signal();
    }
    if let Some(cmd) = slot.cmd.take() {
        cmd.complete_in_task();
    }
}

/// A completion, as reaped.
#[derive(Clone, Copy)]
pub(crate) struct Done {
    pub(crate) cookie: u64,
    pub(crate) status: i32,
    pub(crate) done: u64,
    seq: u64,
}

/// What `poll` reports for a file's queue.
pub(crate) struct Readiness {
    /// Another request fits.
    pub(crate) room: bool,
    /// Completions waiting to be reaped.
    pub(crate) done: usize,
    /// The device is going away or gone.
    pub(crate) gone: bool,
}

/// The queued command on the device.
#[derive(Clone, Copy)]
struct Running {
    file: u64,
    seq: u64,
    /// When its timeout passes.
    deadline: Instant<Monotonic>,
}

/// State protected by `Engine::state`.
struct State {
    /// A command sequence owns the engine (an [`EngineHold`] exists).
    busy: bool,
    /// The device is going away: no new command sequence.
    closed: bool,
    /// Interrupt status bits delivered by the interrupt handler and not yet consumed.
    irq_status: u32,
    /// Synchronous callers waiting for the engine (the queue yields at its next step).
    sync_waiters: u32,
    /// The queues of the files that submitted.
    files: KVec<FileQueue>,
    /// Round robin: the file served last (the next turn goes to the file after it in `files`,
    /// so a file that just arrived is served after the current one).
    last: u64,
    /// The queued command on the device.
    running: Option<Running>,
    /// Unbind released every hold (after `closed`): completions are reapable without `bound`.
    released: bool,
    next_seq: u64,
    next_file: u64,
    /// When the last DMA completion interrupt arrived, until the next command starts.
    gap_from: Option<Instant<Monotonic>>,
    /// Completion-interrupt-to-next-start gaps (`crate::gaps`).
    gaps: Gaps,
    /// Whether `gaps` records (and interrupts are timed).
    gaps_on: bool,
    /// The slot array of the last synchronous call's one-slot queue (empty), reused by the next
    /// one: a synchronous call allocates nothing in the engine.
    spare: Option<KVec<Slot>>,
}

/// The command engine of one device.
#[pin_data]
pub(crate) struct Engine {
    /// The innermost lock of the driver, taken by the hard interrupt handler and the watchdog:
    /// nothing else is taken while it is held, and nothing that sleeps runs under it.
    #[pin]
    state: IrqSpinLock<State>,
    /// Signalled on every change of `state`: synchronous waiters, closers, `poll`.
    #[pin]
    cv: PollCondVar,
    /// Reapers (`wait_done`): signalled when a file's completions reach its `reap_min`
    /// ([`Engine::notify_ended`]), so a reaper waiting for N wakes once, not N times.
    #[pin]
    reap_cv: CondVar,
    /// Fault injection: the next N DMA commands raise no interrupt.
    drop_irqs: Atomic<u32>,
    stats: Stats,
}

impl Engine {
    /// A free engine.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            state <- new_irq_spinlock!(
                State {
                    busy: false,
                    closed: false,
                    irq_status: 0,
                    sync_waiters: 0,
                    files: KVec::new(),
                    last: 0,
                    running: None,
                    released: false,
                    next_seq: 1,
                    next_file: 1,
                    gap_from: None,
                    gaps: Gaps::new(),
                    gaps_on: false,
                    spare: None,
                },
                "Engine::state"
            ),
            cv <- new_poll_condvar!("Engine::cv"),
            reap_cv <- new_condvar!("Engine::reap_cv"),
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

    /// The wait queue `poll` registers with: signalled on every completion and freed slot.
    pub(crate) fn poll_cv(&self) -> &PollCondVar {
        &self.cv
    }

    /// Takes the engine (for a factorial), waiting (interruptibly: [`signal::interrupted`])
    /// while another command sequence or a queued step runs. BAR0 `bar` is borrowed for as long
    /// as the hold lives.
    pub(crate) fn acquire<'a>(&'a self, bar: &'a Bar0) -> Result<EngineHold<'a>> {
        let mut st = self.state.lock();
        loop {
            if st.closed {
                return Err(ENODEV);
            }
            if !st.busy && st.running.is_none() {
                st.busy = true;
                // Bits of an earlier sequence (a late interrupt) mean nothing to this one; done
                // here, under the lock this already holds, rather than a lock more per command.
                st.irq_status = 0;
                return Ok(EngineHold { engine: self, bar });
            }
            st.sync_waiters += 1;
            let broken = self.cv.wait_interruptible(&mut st);
            st.sync_waiters -= 1;
            if broken {
                // The queue may have yielded to this caller: let it go on.
                self.dispatch(&mut st, bar);
                return Err(signal::interrupted());
            }
        }
    }

    /// The interrupt handler, with `status` read from and acknowledged to the device: hands
    /// the bits to a synchronous command sequence, or completes the running queued command
    /// (accepted only when the device reads idle: a late interrupt of an earlier command cannot
    /// complete it) and starts the next one.
    pub(crate) fn irq(&self, status: u32, bar: &Bar0) {
        self.stats.irqs.add(1, Relaxed);
        let mut st = self.state.lock();
        let at = st.gaps_on.then(Instant::now);
        if st.busy {
            st.irq_status |= status;
            self.cv.notify_all();
        } else if status & IRQ_DMA != 0 && st.running.is_some() && dma_idle(bar) {
            st.gap_from = at;
            self.command_done(&mut st, Some(bar), Ok(()));
        }
        if let Some(at) = at {
            st.gaps.handled((Instant::now() - at).as_nanos());
        }
    }

    /// The debugfs text of the gaps recorded since the last [`Engine::record_gaps`]
    /// (`crate::gaps::write_text`).
    pub(crate) fn write_gaps(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kept = KVec::with_capacity(GAP_SAMPLES, GFP_KERNEL).map_err(|_| fmt::Error)?;
        let (total, irqs) = {
            let st = self.state.lock();
            // Within the capacity reserved above: no allocation under the lock.
            for &g in st.gaps.kept() {
                kept.push_within_capacity(g).map_err(|_| fmt::Error)?;
            }
            (st.gaps.total(), st.gaps.irq_time())
        };
        write_text(f, total, &kept, irqs)
    }

    /// Forgets the recorded gaps and interrupt times (and the last completion, so the next
    /// command records no gap), and records from now on if `on`.
    pub(crate) fn record_gaps(&self, on: bool) {
        let mut st = self.state.lock();
        st.gaps.clear();
        st.gap_from = None;
        st.gaps_on = on;
    }

    /// Fault injection: the next `n` DMA commands raise no completion interrupt.
    pub(crate) fn drop_next_irqs(&self, n: u32) {
        self.drop_irqs.store(n, Relaxed);
    }

    /// Refuses new command sequences: waiters and later callers get `ENODEV`; a running one
    /// finishes (its caller's `bound` section keeps unbind waiting for it). Every queued request
    /// that has not started ends with `ENODEV`; the running one ends after its current step.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        let running = st.running.map(|r| r.seq);
        for fq in st.files.iter_mut() {
            for slot in fq.slots.iter_mut() {
                if slot.status.is_none() && Some(slot.seq) != running {
                    end(slot, ENODEV.to_errno(), &fq.eventfd, &mut fq.ended);
                }
            }
        }
        self.notify_ended(&mut st);
    }

    /// Unbind, after [`Engine::close`]: waits (uninterruptibly; bounded by the watchdog) until
    /// no queued command runs.
    pub(crate) fn wait_quiet(&self) {
        let mut st = self.state.lock();
        while st.running.is_some() {
            self.cv.wait(&mut st);
        }
    }

    /// Unbind, once the device is quiet: releases every hold of every request (their
    /// completions stay, to be reaped). Call it while the device is bound.
    pub(crate) fn release_all(&self) {
        while let Some(hold) = self.take_hold(None) {
            drop(hold);
        }
        self.state.lock().released = true;
        self.cv.notify_all();
    }

    /// Once the device is going away: waits (interruptibly; unbind is bounded by the watchdog)
    /// until unbind released every hold, so that every completion can be reaped. Interrupted:
    /// [`signal::interrupted`].
    pub(crate) fn wait_released(&self) -> Result {
        let mut st = self.state.lock();
        while !st.released {
            if self.cv.wait_interruptible(&mut st) {
                return Err(signal::interrupted());
            }
        }
        Ok(())
    }

    /// [`Engine::wait_released`], uninterruptibly: for task work, which cannot restart.
    pub(crate) fn wait_released_uninterruptible(&self) {
        let mut st = self.state.lock();
        while !st.released {
            self.cv.wait(&mut st);
        }
    }

    /// Takes one hold of a request that is no longer in flight (of file `file`, or of any file
    /// for `None`), to be dropped by the caller outside the lock.
    fn take_hold(&self, file: Option<u64>) -> Option<Hold> {
        let mut st = self.state.lock();
        let closed = st.closed && st.running.is_none();
        st.files
            .iter_mut()
            .filter(|fq| file.is_none_or(|id| id == fq.id))
            .flat_map(|fq| fq.slots.iter_mut())
            .find(|s| s.hold.is_some() && (s.status.is_some() || closed))
            .and_then(|s| s.hold.take())
    }

    /// The file's queue, created with room for `depth` requests; returns its id.
    pub(crate) fn attach(&self, depth: usize) -> Result<u64> {
        let slots = KVec::with_capacity(depth, GFP_KERNEL)?;
        let mut st = self.state.lock();
        if st.closed {
            return Err(ENODEV);
        }
        let id = st.next_file;
        st.next_file += 1;
        let fq = FileQueue::new(id, slots);
        // Under a spinlock: no sleeping allocation (and none at all once `files` has grown to
        // the most files that used the device at once).
        st.files.push(fq, GFP_ATOMIC)?;
        Ok(id)
    }

    /// Makes `eventfd` file `id`'s eventfd (`None`: removes it); on success `eventfd` holds the
    /// one it replaced, to be dropped by the caller outside the lock. `ENODEV` once the device is
    /// going away.
    pub(crate) fn set_eventfd(&self, id: u64, eventfd: &mut Option<EventFd>) -> Result {
        let mut st = self.state.lock();
        if st.closed {
            return Err(ENODEV);
        }
        let fq = st.files.iter_mut().find(|fq| fq.id == id).ok_or(ENODEV)?;
        core::mem::swap(&mut fq.eventfd, eventfd);
        Ok(())
    }

    /// Queues `req` on file `id`'s queue and starts the device if it is idle. `EAGAIN` when the
    /// queue is full, `ENODEV` once the device is going away; the request's hold then comes back,
    /// to be dropped by the caller outside the lock.
    pub(crate) fn submit(
        &self,
        id: u64,
        req: Request,
        bar: &Bar0,
    ) -> core::result::Result<(), (Error, Option<Hold>)> {
        self.submit_cmd(id, req, None, bar)
            .map_err(|(e, hold, _)| (e, hold))
    }

    /// [`Engine::submit`] of a request that came as io_uring command `cmd`, which the engine
    /// tags with the request's sequence number (under the lock, before anything can end it) and
    /// ends with the request ([`end`]). Refused, the command comes back too.
    pub(crate) fn submit_cmd(
        &self,
        id: u64,
        req: Request,
        cmd: Option<UringCmd>,
        bar: &Bar0,
    ) -> core::result::Result<(), (Error, Option<Hold>, Option<UringCmd>)> {
        let mut st = self.state.lock();
        if st.closed {
            return Err((ENODEV, req.hold, cmd));
        }
        let seq = st.next_seq;
        let Some(fq) = st.files.iter_mut().find(|fq| fq.id == id) else {
            return Err((ENODEV, req.hold, cmd));
        };
        if fq.closing || fq.slots.len() >= fq.slots.capacity() {
            return Err((EAGAIN, req.hold, cmd));
        }
        if let Some(c) = &cmd {
            c.set_tag(seq);
        }
        // Built in the slot array itself (a slot is over 100 bytes: not built aside and copied in).
        // Cannot fail: the capacity was checked above (no allocation under the lock).
        let pushed = push_in_place(&mut fq.slots, || Slot::new(seq, req, cmd));
        if let Err(make) = pushed {
            let mut slot = make();
            return Err((EAGAIN, slot.hold.take(), slot.cmd.take()));
        }
        st.next_seq += 1;
        self.dispatch(&mut st, bar);
        Ok(())
    }

    /// Attaches a synchronous call's one-slot queue (the spare one if there is one) holding a
    /// request `req`, and lets the engine start it, in one critical section, whose guard comes
    /// back for the wait: the queue's file id. The slot and the queue are built in place.
    fn attach_sync(&self, req: Request, bar: &Bar0) -> (IrqSpinLockGuard<'_, State>, Result<u64>) {
        let mut st = self.state.lock();
        let mut slots = match st.spare.take() {
            Some(slots) => slots,
            None => {
                drop(st);
                let slots = KVec::with_capacity(1, GFP_KERNEL);
                st = self.state.lock();
                match slots {
                    Ok(slots) => slots,
                    Err(e) => return (st, Err(e.into())),
                }
            }
        };
        if st.closed {
            st.spare = Some(slots);
            return (st, Err(ENODEV));
        }
        // Under a spinlock: no sleeping allocation (and none at all once `files` has grown to
        // the most files that used the device at once).
        if let Err(e) = st.files.reserve(1, GFP_ATOMIC) {
            st.spare = Some(slots);
            return (st, Err(e.into()));
        }
        let (id, seq) = (st.next_file, st.next_seq);
        let slot = || Slot::new(seq, req, None);
        // Neither push can fail: `slots` has room for one (a spare is empty), `files` was
        // reserved above.
        if push_in_place(&mut slots, slot).is_err() {
            st.spare = Some(slots);
            return (st, Err(ENOMEM));
        }
        let queue = || FileQueue::new(id, slots);
        if push_in_place(&mut st.files, queue).is_err() {
            return (st, Err(ENOMEM));
        }
        st.next_file += 1;
        st.next_seq += 1;
        self.dispatch(&mut st, bar);
        (st, Ok(id))
    }

    /// A synchronous call: runs `cmds` as a request on a queue of its own, sharing the device
    /// with the files' queues (round robin), and waits for it. A signal cancels the steps that
    /// have not started and waits (uninterruptibly) until the running one finished, polling the
    /// device idle in case an interrupt is lost; the call then fails with `EINTR` if a real
    /// signal is pending, even if the request completed meanwhile. If only task work broke the
    /// wait it fails with `ERESTARTSYS` ([`signal::interrupted`], the system call restarts),
    /// unless the request completed meanwhile: then nothing is left to redo and it succeeds.
    /// Returns the bytes done (exact: commands that completed) and the result. The caller keeps
    /// the memory the commands name pinned and mapped until this returns.
    pub(crate) fn run_sync(&self, cmds: Cmds, timeout_ms: u32, bar: &Bar0) -> (usize, Result) {
        let req = Request {
            cookie: 0,
            cmds,
            timeout_ms,
            hold: None,
        };
        let (mut st, attached) = self.attach_sync(req, bar);
        let id = match attached {
            Ok(id) => id,
            Err(e) => return (0, Err(e)),
        };
        let mut signalled = false;
        let (done, status) = loop {
            let running = st.running.filter(|r| r.file == id).map(|r| r.seq);
            let Some(slot) = st
                .files
                .iter()
                .find(|fq| fq.id == id)
                .and_then(|fq| fq.slots.first())
            else {
                break (0, EINVAL.to_errno());
            };
            if let Some(status) = slot.status {
                break (slot.done, status);
            }
            if !signalled {
                if !self.cv.wait_interruptible(&mut st) {
                    continue;
                }
                signalled = true;
                let running = st.running.filter(|r| r.file == id).map(|r| r.seq);
                if let Some(fq) = st.files.iter_mut().find(|fq| fq.id == id) {
                    fq.closing = true;
                    if let Some(slot) = fq.slots.first_mut() {
                        if running.is_none() && slot.status.is_none() {
                            end(slot, ecanceled().to_errno(), &fq.eventfd, &mut fq.ended);
                        }
                    }
                }
                continue;
            }
            // Cancelled, a command still runs: it ends by its interrupt, the watchdog, or here
            // as soon as the device reads idle (the interrupt may be lost).
            if running.is_some() && dma_idle(bar) {
                self.command_done(&mut st, Some(bar), Ok(()));
                continue;
            }
            drop(st);
            fsleep(Delta::from_millis(1));
            st = self.state.lock();
        };
        let mut fq = match st.files.iter().position(|fq| fq.id == id) {
            Some(i) => st.files.remove(i).ok(),
            None => None,
        };
        // The request is over (the caller's memory is free to go). What its slot owns is taken
        // out, to be dropped outside the lock, and the slot emptied in place (not moved out: a
        // slot is over 100 bytes, and under `-icount` each byte a `memcpy` moves costs an
        // instruction); the emptied slot array is kept for the next synchronous call.
        let owned = fq
            .as_mut()
            .and_then(|fq| fq.slots.first_mut())
            .map(|s| (s.cmds.take(), s.hold.take(), s.cmd.take()));
        if let Some(fq) = fq.as_mut() {
            fq.slots.clear();
        }
        if st.spare.is_none() {
            st.spare = fq.take().map(|fq| fq.slots);
        }
        drop(st);
        drop(owned);
        drop(fq);
        // Judged now, after the uninterruptible wait for the running step: a real signal that
        // arrived meanwhile is `EINTR` too (never a restart behind a handler's back). `done`
        // tells what landed.
        let ret = match status {
            _ if signalled && signal::real_signal_pending() => Err(EINTR),
            0 => Ok(()),
            _ if signalled => Err(ERESTARTSYS),
            s => Err(Error::from_errno(s)),
        };
        (done, ret)
    }

    /// `poll` readiness of file `id`'s queue (`None`: it never submitted).
    pub(crate) fn readiness(&self, id: Option<u64>) -> Readiness {
        let st = self.state.lock();
        let Some(fq) = id.and_then(|id| st.files.iter().find(|fq| fq.id == id)) else {
            return Readiness {
                room: !st.closed,
                done: 0,
                gone: st.closed,
            };
        };
        Readiness {
            room: !st.closed && !fq.closing && fq.slots.len() < fq.slots.capacity(),
            done: fq.ended,
            gone: st.closed,
        }
    }

    /// Waits until file `id` has `min` completions waiting (at most as many as it has requests)
    /// or `timeout_ms` (0: none) passes, or a signal arrives; returns how many are waiting, or,
    /// when none is: `ETIMEDOUT` at the timeout, `EINTR` on a signal. Task work alone (no signal:
    /// [`signal::interrupted`]) is `ERESTARTSYS` whatever is waiting: the restarted reap waits
    /// for `min` again (and its whole timeout).
    pub(crate) fn wait_done(&self, id: u64, min: usize, timeout_ms: u32) -> Result<usize> {
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut st = self.state.lock();
        loop {
            let Some(fq) = st.files.iter_mut().find(|fq| fq.id == id) else {
                return Ok(0);
            };
            let done = fq.ended;
            let need = min.min(fq.slots.len());
            if done >= need {
                return Ok(done);
            }
            // Woken when `need` completions wait (or fewer, for another reaper of the file: the
            // smallest count of those waiting; each then registers again). Requests only end
            // (`notify_ended` looks), or are taken with their completion, which leaves `done`
            // below `need`: no wakeup is lost.
            fq.reap_min = match fq.reap_min {
                0 => need,
                m => m.min(need),
            };
            let err = if timeout_ms == 0 {
                if !self.reap_cv.wait_interruptible(&mut st) {
                    continue;
                }
                signal::interrupted()
            } else {
                match self.reap_cv.wait_interruptible_timeout(&mut st, left) {
                    CondVarTimeoutResult::Woken { jiffies } => {
                        left = jiffies;
                        continue;
                    }
                    CondVarTimeoutResult::Signal { .. } => signal::interrupted(),
                    CondVarTimeoutResult::Timeout => ETIMEDOUT,
                }
            };
            if err == ERESTARTSYS {
                // Task work, no signal: the restarted reap waits for `min` again. Nothing was
                // consumed (completions are removed only after they are copied out, below the
                // wait), so the restart is invisible, and no early return shows it either.
                return Err(err);
            }
            let done = st
                .files
                .iter()
                .find(|fq| fq.id == id)
                .map_or(0, |fq| fq.ended);
            return if done > 0 { Ok(done) } else { Err(err) };
        }
    }

    /// Appends (up to the room in `out`) the completions of file `id` in submission order,
    /// without removing them. With `bound` false (the device is gone) only those whose hold
    /// unbind already released.
    pub(crate) fn peek_done(&self, id: u64, out: &mut KVec<Done>, bound: bool) {
        let st = self.state.lock();
        let Some(fq) = st.files.iter().find(|fq| fq.id == id) else {
            return;
        };
        for s in fq.slots.iter() {
            let Some(status) = s.status else { continue };
            if !bound && s.hold.is_some() {
                continue;
            }
            let d = Done {
                cookie: s.cookie,
                status,
                done: s.done as u64,
                seq: s.seq,
            };
            if out.push_within_capacity(d).is_err() {
                break;
            }
        }
    }

    /// Removes the reaped completions `done` of file `id`; returns their holds (to be dropped
    /// by the caller outside the lock, while the device is bound) one at a time through `put`.
    pub(crate) fn remove_done(&self, id: u64, done: &[Done], mut put: impl FnMut(Hold)) {
        for d in done {
            if let Some((_, Some(h))) = self.take(id, d.seq) {
                put(h);
            }
        }
    }

    /// Removes the ended request `seq` of file `id`: its completion and its hold (to be dropped
    /// by the caller outside the lock, while the device is bound; `None` once unbind released
    /// it). `None` if there is no such request, or it has not ended.
    pub(crate) fn take(&self, id: u64, seq: u64) -> Option<(Done, Option<Hold>)> {
        let taken = {
            let mut st = self.state.lock();
            let fq = st.files.iter_mut().find(|fq| fq.id == id)?;
            let i = fq
                .slots
                .iter()
                .position(|s| s.seq == seq && s.status.is_some())?;
            let slot = fq.slots.remove(i).ok()?;
            fq.ended = fq.ended.saturating_sub(1);
            Some(slot)
        };
        // A slot left: the queue has room.
        self.cv.notify_all();
        let mut slot = taken?;
        let done = Done {
            cookie: slot.cookie,
            status: slot.status?,
            done: slot.done as u64,
            seq,
        };
        Some((done, slot.hold.take()))
    }

    /// io_uring cancels request `seq` of file `id`: if it has not started, it ends `ECANCELED`
    /// now; if it runs, after its current step. Nothing if it has ended, or is unknown.
    pub(crate) fn cancel(&self, id: u64, seq: u64) {
        let mut st = self.state.lock();
        let running = st.running.map(|r| r.seq);
        let Some(fq) = st.files.iter_mut().find(|fq| fq.id == id) else {
            return;
        };
        let Some(slot) = fq
            .slots
            .iter_mut()
            .find(|s| s.seq == seq && s.status.is_none())
        else {
            return;
        };
        if running == Some(seq) {
            slot.cancelled = true;
        } else {
            end(slot, ecanceled().to_errno(), &fq.eventfd, &mut fq.ended);
            self.notify_ended(&mut st);
        }
    }

    /// Close of a file: cancels its requests that have not started (`ECANCELED`), waits
    /// (uninterruptibly; bounded by the watchdog) until its running step finishes, removes
    /// its queue and drops every hold. Call it while the device is bound.
    pub(crate) fn detach(&self, id: u64, bar: &Bar0) {
        {
            let mut st = self.state.lock();
            let running = st.running.map(|r| r.seq);
            let Some(fq) = st.files.iter_mut().find(|fq| fq.id == id) else {
                return;
            };
            fq.closing = true;
            for slot in fq.slots.iter_mut() {
                if slot.status.is_none() && Some(slot.seq) != running {
                    end(slot, ecanceled().to_errno(), &fq.eventfd, &mut fq.ended);
                }
            }
            while st.running.is_some_and(|r| r.file == id) {
                self.cv.wait(&mut st);
            }
        }
        while let Some(hold) = self.take_hold(Some(id)) {
            drop(hold);
        }
        let fq = {
            let mut st = self.state.lock();
            let fq = match st.files.iter().position(|fq| fq.id == id) {
                Some(i) => st.files.remove(i).ok(),
                None => None,
            };
            self.dispatch(&mut st, bar);
            fq
        };
        // Every hold was released above: this frees only the slot arrays.
        drop(fq);
    }

    /// Close of a file after unbind: forgets its queue once unbind released its holds.
    pub(crate) fn detach_gone(&self, id: u64) {
        let fq = {
            let mut st = self.state.lock();
            let at = st.files.iter().position(|fq| fq.id == id);
            let released = at
                .and_then(|i| st.files.get(i))
                .is_some_and(|fq| fq.slots.iter().all(|s| s.hold.is_none()));
            match at {
                Some(i) if released => st.files.remove(i).ok(),
                _ => None,
            }
        };
        drop(fq);
    }

    /// Starts the next queued step if the device is free and no synchronous caller waits for
    /// it: round robin over the files.
    fn dispatch(&self, st: &mut IrqSpinLockGuard<'_, State>, bar: &Bar0) {
        self.dispatch_next(st, bar, true);
    }

    /// [`Engine::dispatch`]; `yield_to_sync`: not while a synchronous caller waits.
    fn dispatch_next(&self, st: &mut IrqSpinLockGuard<'_, State>, bar: &Bar0, yield_to_sync: bool) {
        if st.closed
            || st.busy
            || st.running.is_some()
            || st.files.is_empty()
            || (yield_to_sync && st.sync_waiters > 0)
        {
            return;
        }
        let n = st.files.len();
        let last = st.files.iter().position(|fq| fq.id == st.last);
        for k in 0..n {
            let i = match last {
                Some(p) => (p + 1 + k) % n,
                None => k,
            };
            let Some(fq) = st.files.get(i) else {
                return;
            };
            if fq.closing {
                continue;
            }
            if let Some(seq) = fq.slots.iter().find(|s| s.status.is_none()).map(|s| s.seq) {
                let id = fq.id;
                st.last = id;
                self.start(st, id, seq, bar);
                return;
            }
        }
    }

    /// Programs the next command of request `seq` of file `file`.
    fn start(&self, st: &mut IrqSpinLockGuard<'_, State>, file: u64, seq: u64, bar: &Bar0) {
        let Some(fq) = st.files.iter_mut().find(|fq| fq.id == file) else {
            return;
        };
        let Some(slot) = fq.slots.iter_mut().find(|s| s.seq == seq) else {
            return;
        };
        let Some(&cmd) = slot.cmds.get(slot.next) else {
            end(slot, EINVAL.to_errno(), &fq.eventfd, &mut fq.ended);
            self.notify_ended(st);
            return;
        };
        let timeout = Delta::from_millis(slot.timeout_ms.into());
        if program(
            bar,
            cmd.piece(),
            cmd.win_off(),
            cmd.dir(),
            !self.take_dropped_irq(),
        )
        .is_err()
        {
            // Never programmed: a bad range (not reached: ranges are checked at submit).
            end(slot, EINVAL.to_errno(), &fq.eventfd, &mut fq.ended);
            self.notify_ended(st);
            return;
        }
        let now = Instant::now();
        if let Some(from) = st.gap_from.take() {
            st.gaps.record((now - from).as_nanos());
        }
        st.running = Some(Running {
            file,
            seq,
            deadline: now + timeout,
        });
    }

    /// The running queued command ended: `Ok` (its bytes landed), or with the error that ends
    /// its request (`landed`: whether its bytes count anyway). Continues the request's step,
    /// finishes it, or moves on to the next file.
    fn command_done(
        &self,
        st: &mut IrqSpinLockGuard<'_, State>,
        bar: Option<&Bar0>,
        result: core::result::Result<(), (Error, bool)>,
    ) {
        let Some(run) = st.running.take() else {
            return;
        };
        let closed = st.closed;
        let mut more = None;
        if let Some(fq) = st.files.iter_mut().find(|fq| fq.id == run.file) {
            let closing = fq.closing;
            if let Some(slot) = fq.slots.iter_mut().find(|s| s.seq == run.seq) {
                let cmd = slot.cmds.get(slot.next).copied();
                let landed = matches!(result, Ok(()) | Err((_, true)));
                if let (Some(cmd), true) = (cmd, landed) {
                    slot.done += cmd.credit();
                    self.stats.dma_cmds.add(1, Relaxed);
                    self.stats.dma_bytes.add(cmd.piece().len as u64, Relaxed);
                }
                slot.next += 1;
                // A step is finished even when the device is going away or the request is
                // cancelled (a copy chunk's first half alone is wasted work); then it ends.
                let mid_step = cmd.is_some_and(|c| !c.step_end());
                let status = match result {
                    Err((e, _)) => Some(e.to_errno()),
                    Ok(()) if slot.next >= slot.cmds.len() => Some(0),
                    Ok(()) if mid_step => None,
                    Ok(()) if closed => Some(ENODEV.to_errno()),
                    Ok(()) if closing || slot.cancelled => Some(ecanceled().to_errno()),
                    Ok(()) => None,
                };
                if let Some(status) = status {
                    end(slot, status, &fq.eventfd, &mut fq.ended);
                }
                if status.is_none() && mid_step {
                    more = Some(run.seq);
                }
            }
        }
        match (more, bar) {
            (Some(seq), Some(bar)) => self.start(st, run.file, seq, bar),
            (None, Some(bar)) => self.dispatch(st, bar),
            (_, None) => {
                // No BAR to continue with: the request ends here.
                if let Some(seq) = more {
                    if let Some(fq) = st.files.iter_mut().find(|fq| fq.id == run.file) {
                        if let Some(slot) = fq.slots.iter_mut().find(|s| s.seq == seq) {
                            end(slot, ENODEV.to_errno(), &fq.eventfd, &mut fq.ended);
                        }
                    }
                }
            }
        }
        // Waiters are woken once the next command runs: a wakeup on this CPU costs the handler
        // about 11 us (docs/performance.md, figure 5), which would otherwise leave the device idle.
        self.notify_ended(st);
    }

    /// Requests may have ended: wakes the waiters on `cv` (synchronous callers, closers, `poll`)
    /// and, only if some file's completions reached what its reapers wait for, the reapers.
    fn notify_ended(&self, st: &mut State) {
        self.cv.notify_all();
        let mut wake = false;
        for fq in st.files.iter_mut().filter(|fq| fq.reap_min > 0) {
            if fq.ended >= fq.reap_min {
                fq.reap_min = 0;
                wake = true;
            }
        }
        if wake {
            self.reap_cv.notify_all();
        }
    }

    /// The watchdog (hard-IRQ context, every [`WATCHDOG_PERIOD`]): ends the running queued
    /// command once its timeout passed and the device reads idle (its interrupt was lost:
    /// `ETIMEDOUT`, the bytes landed; an unplugged device: `ENODEV`), or `IDLE_WAIT` later if
    /// it never goes idle (`EIO`). `bar` is `None` once BAR0 is revoked.
    pub(crate) fn watchdog(&self, bar: Option<&Bar0>) {
        let mut st = self.state.lock();
        let Some(run) = st.running else {
            return;
        };
        let late = Instant::now() - run.deadline;
        if late.as_nanos() < 0 {
            return;
        }
        let Some(bar) = bar else {
            // BAR0 is revoked: the device is unbound (and was quiesced).
            self.command_done(&mut st, None, Err((ENODEV, false)));
            return;
        };
        if !dma_idle(bar) {
            if late < IDLE_WAIT {
                return;
            }
            pr_err!("edu_dma: DMA engine stuck; device left busy\n");
            self.command_done(&mut st, Some(bar), Err((EIO, false)));
            return;
        }
        if bar.read(IDENT).into_raw() == u32::MAX {
            self.command_done(&mut st, Some(bar), Err((ENODEV, false)));
            return;
        }
        self.stats.timeouts.add(1, Relaxed);
        self.command_done(&mut st, Some(bar), Err((ETIMEDOUT, true)));
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
    bar: &'a Bar0,
}

impl Drop for EngineHold<'_> {
    fn drop(&mut self) {
        let mut st = self.engine.state.lock();
        st.busy = false;
        // Only callers of `acquire` wait for `busy` to clear (counted in `sync_waiters`); no
        // completion or queue room changed, so nobody else needs the wakeup.
        if st.sync_waiters > 0 {
            self.engine.cv.notify_all();
        }
        // The queue waited for this sequence: its next step goes first, even if other
        // synchronous callers wait (they get the device at that step's end), so neither side
        // can starve the other.
        self.engine.dispatch_next(&mut st, self.bar, false);
    }
}

/// How often the watchdog looks for a queued command whose interrupt is overdue.
pub(crate) const WATCHDOG_PERIOD: Delta = Delta::from_millis(100);

/// Upper bound on the time the device needs to finish a command once it started.
// TIMEOUT: edu completes a DMA command 100 ms of virtual time after it starts and computes a
// factorial at once; two seconds also cover an emulator on a loaded host.
const IDLE_WAIT: Delta = Delta::from_millis(2000);

impl EngineHold<'_> {
    /// Computes `n!` (n <= 12) with the device, completed by its interrupt.
    pub(crate) fn factorial(&self, n: u32, timeout_ms: u32) -> Result<u32> {
        if n > 12 {
            return Err(EOVERFLOW);
        }
        let bar = self.bar;
        // `irq_status` holds no stale bit: `acquire` cleared it, and this is the hold's only
        // command.
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

/// Programs one DMA command: `piece` to or from window offset `win_off`, raising the completion
/// interrupt if `irq`.
fn program(bar: &Bar0, piece: Piece, win_off: usize, dir: Dir, irq: bool) -> Result {
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
    bar.write_reg(DMA_SRC::zeroed().with_addr(src));
    bar.write_reg(DMA_DST::zeroed().with_addr(dst));
    bar.write_reg(DMA_COUNT::zeroed().with_count(len as u64));
    bar.write_reg(
        DMA_CMD::zeroed()
            .with_start(true)
            .with_from_device(dir == Dir::FromDevice)
            .with_irq(irq),
    );
    Ok(())
}

/// Whether no DMA command runs (an unplugged device reads all-ones and counts as idle: it cannot
/// reach memory any more).
fn dma_idle(bar: &Bar0) -> bool {
    let cmd = bar.read(DMA_CMD);
    cmd.into_raw() == u64::MAX || !cmd.start()
}
