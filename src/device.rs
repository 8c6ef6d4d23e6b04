// SPDX-License-Identifier: GPL-2.0

//! Per-device state shared (`Arc`) by the PCI binding, the interrupt handler and open files: what
//! probe learned about the device, its command engine, the lifetime protocol that keeps it bound
//! while a file operation uses it, the DMA resources unbind must revoke, and the buffer-memory
//! budget.
//!
//! # Lifetime protocol
//!
//! File operations reach the bound device only through [`EduDevice::bound`], which counts them
//! in `EduDevice::users` (an atomic count: no lock per call) unless [`GONE`] is set there, and
//! hands them a [`Live`] (the bound device, its BAR0 and the
//! engine). Every DMA resource that outlives one call (a buffer, a registration) is tracked from
//! its creation (`Live::track`) until its owner lets go of it ([`EduDevice::retire`], inside `bound`) or
//! unbind revokes it; other references to it are taken and dropped inside `bound` only, so its
//! last reference, whose drop unmaps and frees, goes while the device is bound. Unbind ([`EduDevice::shutdown`]) sets [`GONE`] (new calls get `ENODEV`)
//! and closes the engine (waiting command sequences get `ENODEV`, the running one finishes),
//! waits until no user is left, quiesces the device, and revokes every tracked resource: so every
//! DMA allocation and mapping made for the device is released while the driver is bound to it.
//!
//! # Lock order
//!
//! Outer to inner; a lock is only taken while holding locks above it:
//!
//! 1. `EduFile::queue` (a file's queue id and its reapers: held across a whole `REAP`, whose
//!    wait sleeps on `Engine::state`'s condition variable, whose copy-out may fault (the mmap
//!    lock), which enters `bound` (`life`) and drops the reaped holds (`Budget::used`); taken
//!    under no other lock),
//! 2. the mm's mmap lock (held by the VFS around `mmap`; unbind takes it alone, in
//!    `Buffer::revoke`),
//! 3. `EduFile::bufs` (a file's handle table),
//! 4. `Buffer::inner` (a buffer's revocable part) and `EduDevice::revocables` (never nested with
//!    each other),
//! 5. `EduDevice::life` and `Budget::used` (short critical sections; `life` guards only
//!    `shutdown`'s wait for the last user and that user's wakeup; `shutdown` closes the engine
//!    inside it),
//! 6. `Engine::state` (an irq-safe spinlock, taken by the hard interrupt handler and the watchdog
//!    hrtimer, interrupts off while held; nothing sleeps or allocates with `GFP_KERNEL` under it,
//!    and no queued request's hold or eventfd reference is dropped under it),
//! 7. a file's eventfd's own lock (`raw::eventfd::EventFd::signal`, under `Engine::state` when a
//!    request ends; the kernel's, irq-safe, waking the eventfd's readers and pollers).
//!
//! No lock is held across a device command except `Engine::state`, which the waiter's condition
//! variable releases while it sleeps. The locks inside `raw::dmabuf` (a dma-buf's attachments and
//! their tables) are its own: held only around importer syncs and table bookkeeping, never while
//! it calls back into the driver (`export.rs`, which takes `life` and `Buffer::inner` through
//! `bound` and `Buffer::sync`). A queued request's hold may be the last reference to a buffer,
//! whose drop unmaps it and refunds `Budget::used`: it is dropped under no lock but a reaper's
//! `EduFile::queue`.
//!
//! # Queued requests
//!
//! A queued request's hold (pins, SG mappings, buffer references) is taken at submit, inside
//! `bound`, and dropped in process context only, inside `bound` as well: when it is reaped, when
//! its file closes (`Engine::detach`: requests not started end `ECANCELED`, the running one after
//! its current step), or by `shutdown`, which ends the queued ones with `ENODEV`
//! (`Engine::close`), waits for the running command (`Engine::wait_quiet`), quiesces the device
//! and then releases every hold (`Engine::release_all`) before it revokes the buffers. So no
//! memory a request names is unmapped, unpinned or freed while the device may still access it,
//! and every hold goes while the device is bound. Completions stay reapable after unbind.
//! Synchronous DMA calls are requests too (`Engine::run_sync`), whose memory the caller holds
//! inside its `bound` section until the request is over.

use kernel::{
    device::{
        Bound,
        Device, //
    },
    devres::Devres,
    new_condvar, new_mutex, pci,
    prelude::*,
    revocable::RevocableGuard,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Full,
            Relaxed,
            Release, //
        },
        Arc,
        CondVar,
        Mutex, //
    },
    time::hrtimer::HrTimer,
};

use crate::{
    cmds::Cmds,
    engine::{
        Engine,
        EngineHold,
        Request, //
    },
    raw::{
        pci::PciLocation,
        uring::UringCmd, //
    },
    regs::Bar0,
};

/// How the device interrupts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IrqMode {
    /// Legacy shared INTx line.
    Intx,
    /// Message-signalled interrupt.
    Msi,
}

/// The identification register, decoded once at probe.
#[derive(Clone, Copy)]
pub(crate) struct Ident {
    /// The raw register value.
    pub(crate) raw: u32,
    /// Major version.
    pub(crate) major: u32,
    /// Minor version.
    pub(crate) minor: u32,
}

/// The module parameters, read once at probe.
#[derive(Clone, Copy)]
pub(crate) struct Params {
    /// Default timeout of one device command, in milliseconds.
    pub(crate) timeout_ms: u32,
    /// DMA mask width in bits.
    pub(crate) dma_bits: u32,
    /// Buffer memory per device, in bytes.
    pub(crate) buf_cap: usize,
    /// Buffer memory per open file, in bytes.
    pub(crate) file_cap: usize,
    /// Pages a copy request pins at a time, per side.
    pub(crate) pin_pages: usize,
    /// Requests a file may have queued (in flight or not reaped).
    pub(crate) queue_depth: usize,
}

impl Params {
    /// The values the module was loaded with.
    pub(crate) fn read() -> Self {
        use crate::module_parameters as p;
        Self {
            timeout_ms: *p::timeout_ms.value(),
            dma_bits: *p::dma_bits.value(),
            buf_cap: *p::buf_cap_kib.value() as usize * 1024,
            file_cap: *p::file_cap_kib.value() as usize * 1024,
            pin_pages: *p::pin_window.value() as usize,
            queue_depth: (*p::queue_depth.value()).clamp(1, 1024) as usize,
        }
    }
}

/// A DMA resource of the device (e.g. a buffer) that unbind must release.
pub(crate) trait Revoke: Send + Sync {
    /// Releases every DMA allocation and mapping; later uses fail with `ENODEV`. Called once no
    /// command and no file operation uses the device any more.
    fn revoke(&self);
}

/// What probe learned about the device.
pub(crate) struct Identity {
    /// N of `/dev/edu-dma<N>`.
    pub(crate) instance: u32,
    /// Identification register.
    pub(crate) ident: Ident,
    /// Interrupt mode.
    pub(crate) irq_mode: IrqMode,
    /// Bus location.
    pub(crate) loc: PciLocation,
    /// The device's DMA is cache-coherent (`dev_is_dma_coherent`).
    pub(crate) dma_coherent: bool,
}

/// The bit of `EduDevice::users` that says unbind has started: no new user.
const GONE: u64 = 1 << 63;

/// One edu device.
#[pin_data]
pub(crate) struct EduDevice {
    pdev: ARef<pci::Device>,
    bar: Devres<Bar0>,
    /// What probe learned.
    pub(crate) id: Identity,
    /// The module parameters at probe.
    pub(crate) params: Params,
    /// File operations inside [`EduDevice::bound`], plus [`GONE`] once unbind started.
    users: Atomic<u64>,
    /// Held by `shutdown` while it waits for `users` to drain, and by the user that leaves last
    /// after [`GONE`] was set, to signal `life_cv`.
    #[pin]
    life: Mutex<()>,
    #[pin]
    life_cv: CondVar,
    /// Every live DMA resource of every open file, revoked at unbind.
    #[pin]
    revocables: Mutex<KVec<Arc<dyn Revoke>>>,
    /// Buffer memory charged to the device.
    budget: Arc<Budget>,
    /// The command engine.
    #[pin]
    pub(crate) engine: Engine,
    /// The queue's watchdog (`irq.rs`), started at probe.
    #[pin]
    pub(crate) watchdog: HrTimer<EduDevice>,
}

impl EduDevice {
    /// Initialiser for the shared state of `pdev`.
    pub(crate) fn new(
        pdev: &pci::Device<Bound>,
        bar: Devres<Bar0>,
        id: Identity,
        params: Params,
    ) -> Result<impl PinInit<Self, Error>> {
        let budget = Arc::pin_init(Budget::new(params.buf_cap), GFP_KERNEL)?;
        let pdev = ARef::<pci::Device>::from(pdev);
        Ok(try_pin_init!(Self {
            pdev,
            bar,
            id,
            params,
            users: Atomic::new(0),
            life <- new_mutex!((), "EduDevice::life"),
            life_cv <- new_condvar!("EduDevice::life_cv"),
            revocables <- new_mutex!(KVec::new(), "EduDevice::revocables"),
            budget,
            engine <- Engine::new(),
            watchdog <- HrTimer::new(),
        }))
    }

    /// BAR0, for the interrupt handler (which runs only while the device is bound).
    pub(crate) fn bar<'a>(&'a self, dev: &'a Device<Bound>) -> Result<&'a Bar0> {
        self.bar.access(dev)
    }

    /// BAR0 under RCU, for the watchdog (no sleeping while the guard lives); `None` once unbind
    /// revoked it.
    pub(crate) fn bar_guard(&self) -> Option<RevocableGuard<'_, Bar0>> {
        self.bar.try_access()
    }

    /// Runs `f` with the bound device, or fails with `ENODEV` once unbind has started. Unbind
    /// waits for `f` to return.
    pub(crate) fn bound<R>(&self, f: impl FnOnce(&Live<'_>) -> Result<R>) -> Result<R> {
        // Acquire: nothing `f` does moves before the count that `shutdown` waits for.
        if self.users.fetch_add(1, Acquire) & GONE != 0 {
            self.leave();
            return Err(ENODEV);
        }
        // SAFETY: `users` counts this call until `f` returns (it was counted before `GONE` was
        // set: a call counted after backs off above), and `shutdown` (called from `unbind`,
        // before the device is released) sets `GONE` and then waits for the count to drop to
        // zero; so the device stays bound while `f` runs.
        let dev = unsafe { self.pdev.as_ref().as_bound() };
        let ret = self.bar.access(dev).and_then(|bar| {
            f(&Live {
                dev,
                bar,
                edu: self,
            })
        });
        self.leave();
        ret
    }

    /// A call leaves `bound`; the last one once unbind started wakes `shutdown`.
    fn leave(&self) {
        // Release: everything the call did happens before `shutdown` sees the count drop.
        if self.users.fetch_sub(1, Release) == GONE | 1 {
            // Under `life`, which `shutdown` holds from its check of the count until it sleeps:
            // the wakeup cannot fall between the two.
            let _life = self.life.lock();
            self.life_cv.notify_all();
        }
    }

    /// Lets go of a tracked resource whose owner is done with it: forgets it and drops the
    /// owner's reference while the device is bound, so that the last reference (the owner's, or
    /// that of a transfer still using the resource, which runs inside `bound` too) goes while
    /// the driver is bound and the resource's `Drop` may still unmap and free DMA memory. Once
    /// unbind has started, the resource stays tracked and `shutdown` revokes it (or already did).
    ///
    /// Invariant that makes this sound: besides the tracking list and its owner, references to a
    /// resource are only taken and dropped inside `bound`.
    pub(crate) fn retire<R: Revoke>(&self, r: Arc<R>) {
        let addr = Arc::as_ptr(&r).cast::<u8>();
        // `Err` only once unbind started: then `shutdown` owns the revocation, and `r` is not
        // the last reference while the resource is tracked.
        // `r` moves into the closure, so it is dropped inside `bound`; when `bound` fails the
        // closure is dropped unrun, and `r` is then not the last reference while the resource is
        // tracked, nor has its `Drop` any DMA left to undo once it is revoked.
        let _ = self.bound(move |_| {
            self.revocables
                .lock()
                .retain(|t| Arc::as_ptr(t).cast::<u8>() != addr);
            drop(r);
            Ok(())
        });
    }

    /// Unbind: refuse new work, wait for running commands and users, quiesce the device, and
    /// revoke every DMA resource.
    pub(crate) fn shutdown(&self, pdev: &pci::Device<kernel::device::Core<'_>>) {
        {
            let mut life = self.life.lock();
            // Full: ordered with every call's count (a call counted after this backs off).
            let mut cur = self.users.load(Relaxed);
            while cur & GONE == 0 {
                match self.users.cmpxchg(cur, cur | GONE, Full) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            // Users already inside may still start command sequences until the engine is
            // closed; every engine hold lives inside `bound`, so once no user is left the
            // engine is idle too.
            self.engine.close();
            // Acquire: pairs with `leave`'s release, so the users' work is over.
            while self.users.load(Acquire) != GONE {
                self.life_cv.wait(&mut life);
            }
        }
        // Queued requests that had not started ended with `ENODEV` in `close`; the running
        // command finishes (or the watchdog ends it).
        self.engine.wait_quiet();
        if let Ok(bar) = self.bar.access(pdev.as_ref()) {
            crate::regs::quiesce(bar);
        }
        crate::raw::pci::clear_master(pdev);
        // The device touches no request's memory any more: unmap, unpin and drop buffer
        // references now, while bound, before the buffers are revoked.
        self.engine.release_all();
        // No DMA allocation or mapping outlives the binding.
        let revocables = core::mem::take(&mut *self.revocables.lock());
        for r in revocables.iter() {
            r.revoke();
        }
    }
}

/// A bound device, while a file operation uses it (see [`EduDevice::bound`]).
pub(crate) struct Live<'a> {
    /// The bound device: what the DMA API takes.
    pub(crate) dev: &'a Device<Bound>,
    bar: &'a Bar0,
    edu: &'a EduDevice,
}

impl Live<'_> {
    /// Takes the command engine (see [`Engine::acquire`]).
    pub(crate) fn engine(&self) -> Result<EngineHold<'_>> {
        self.edu.engine.acquire(self.bar)
    }

    /// Queues `req` on the file queue `id` (see [`Engine::submit`]); a refused request's hold
    /// is dropped here, outside the engine lock and inside `bound`.
    pub(crate) fn submit(&self, id: u64, req: Request) -> Result {
        self.edu
            .engine
            .submit(id, req, self.bar)
            .map_err(|(e, hold)| {
                drop(hold);
                e
            })
    }

    /// [`Live::submit`] of a request that came as io_uring command `cmd` (see
    /// [`Engine::submit_cmd`]); refused, the command comes back with the error.
    pub(crate) fn submit_cmd(
        &self,
        id: u64,
        req: Request,
        cmd: UringCmd,
    ) -> core::result::Result<(), (Error, Option<UringCmd>)> {
        self.edu
            .engine
            .submit_cmd(id, req, Some(cmd), self.bar)
            .map_err(|(e, hold, cmd)| {
                drop(hold);
                (e, cmd)
            })
    }

    /// Runs a synchronous call's commands (see [`Engine::run_sync`]): bytes done and result.
    pub(crate) fn run_sync(&self, cmds: Cmds, timeout_ms: u32) -> (usize, Result) {
        self.edu.engine.run_sync(cmds, timeout_ms, self.bar)
    }

    /// Removes the file queue `id` (see [`Engine::detach`]).
    pub(crate) fn detach(&self, id: u64) {
        self.edu.engine.detach(id, self.bar);
    }

    /// Charges `bytes` of buffer memory to the device; `ENOMEM` beyond its cap.
    pub(crate) fn charge(&self, bytes: usize) -> Result<Charge> {
        Charge::new(&self.edu.budget, bytes)
    }

    /// Tracks a new DMA resource for revocation at unbind.
    pub(crate) fn track(&self, r: Arc<dyn Revoke>) -> Result {
        self.edu.revocables.lock().push(r, GFP_KERNEL)?;
        Ok(())
    }
}

/// Buffer memory of one device: a cap and what is charged against it.
#[pin_data]
pub(crate) struct Budget {
    cap: usize,
    #[pin]
    used: Mutex<usize>,
}

impl Budget {
    fn new(cap: usize) -> impl PinInit<Self> {
        pin_init!(Self {
            cap,
            used <- new_mutex!(0, "Budget::used"),
        })
    }
}

/// Bytes charged to a [`Budget`], refunded on drop.
pub(crate) struct Charge {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Charge {
    fn new(budget: &Arc<Budget>, bytes: usize) -> Result<Self> {
        let mut used = budget.used.lock();
        let total = used.checked_add(bytes).filter(|&t| t <= budget.cap);
        *used = total.ok_or(ENOMEM)?;
        Ok(Self {
            budget: budget.clone(),
            bytes,
        })
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        *self.budget.used.lock() -= self.bytes;
    }
}
