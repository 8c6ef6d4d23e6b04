// SPDX-License-Identifier: GPL-2.0

//! A spinlock that a hard interrupt handler may share with process context: `spin_lock_irqsave`
//! as a `kernel::sync::lock::Backend`, so it works with `Guard` and `CondVar` like the crate's own
//! locks (a `CondVar` wait releases it, restoring the interrupt state, while it sleeps).
//!
//! 7.2 gap: `kernel::sync::SpinLock` takes plain `spin_lock`, so a hard handler taking it could
//! spin forever on the CPU whose process context holds it; there is no irq-disabling variant
//! (`SpinLockIrq` came later upstream). Upstream home: `kernel::sync::lock::spinlock`.

use kernel::{
    bindings,
    prelude::*,
    sync::lock::{
        Backend,
        Guard,
        Lock, //
    },
};

// The shim (`shim.c`): `spin_lock_irqsave` and friends are macros over static inlines.
extern "C" {
    fn edu_spin_lock_irqsave(lock: *mut bindings::spinlock_t) -> c_ulong;
    fn edu_spin_trylock_irqsave(lock: *mut bindings::spinlock_t, flags: *mut c_ulong) -> c_int;
    fn edu_spin_unlock_irqrestore(lock: *mut bindings::spinlock_t, flags: c_ulong);
}

/// A `spinlock_t` taken with local interrupts disabled (their previous state is the guard's).
pub(crate) struct IrqSaveBackend;

/// A spinlock usable from hard interrupt context and process context alike.
pub(crate) type IrqSpinLock<T> = Lock<T, IrqSaveBackend>;

/// A held [`IrqSpinLock`].
pub(crate) type IrqSpinLockGuard<'a, T> = Guard<'a, T, IrqSaveBackend>;

/// Creates an [`IrqSpinLock`] initialiser with the given name and a new lock class.
macro_rules! new_irq_spinlock {
    ($inner:expr, $name:literal) => {
        $crate::raw::irqlock::IrqSpinLock::new(
            $inner,
            kernel::optional_name!($name),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_irq_spinlock;

// SAFETY: `spin_lock_irqsave` gives mutual exclusion between CPUs like `spin_lock`, and with local
// interrupts off no interrupt handler on this CPU can run and try to take the lock while it is
// owned. `relock` is the default, which calls `lock`: the same method (and it saves the interrupt
// state anew, which `CondVar`'s unlocked sleep restored).
unsafe impl Backend for IrqSaveBackend {
    type State = bindings::spinlock_t;
    type GuardState = c_ulong;

    unsafe fn init(ptr: *mut Self::State, name: *const c_char, key: *mut bindings::lock_class_key) {
        // SAFETY: the caller guarantees that `ptr` is valid for writes and that `name` and `key`
        // stay valid for reads indefinitely, which is what `__spin_lock_init` needs.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: the caller guarantees that `ptr` points to a lock that `init` initialised.
        unsafe { edu_spin_lock_irqsave(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        let mut flags: c_ulong = 0;
        // SAFETY: the caller guarantees that `ptr` points to a lock that `init` initialised;
        // `flags` is valid for writes.
        let got = unsafe { edu_spin_trylock_irqsave(ptr, &mut flags) };
        (got != 0).then_some(flags)
    }

    unsafe fn unlock(ptr: *mut Self::State, flags: &Self::GuardState) {
        // SAFETY: the caller owns the lock, which it took with `lock`/`try_lock`, and `flags` is
        // the interrupt state those saved.
        unsafe { edu_spin_unlock_irqrestore(ptr, *flags) }
    }

    unsafe fn assert_is_held(ptr: *mut Self::State) {
        // SAFETY: the caller guarantees that `ptr` points to a lock that `init` initialised.
        unsafe { bindings::spin_assert_is_held(ptr) }
    }
}
