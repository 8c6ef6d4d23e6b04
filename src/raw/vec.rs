// SPDX-License-Identifier: GPL-2.0

//! Appending to a `KVec` without moving the element in: [`push_in_place`] builds it straight in
//! the vector's spare room.
//!
//! 7.2 gap: `KVec::push_within_capacity` takes the element by value, so a large element is built
//! in a temporary and copied in (`memcpy`, which under `-icount` costs one instruction per byte;
//! a queue slot is over 100 bytes). Upstream home: a `push_within_capacity_with(f)` of
//! `kernel::alloc::KVec`.

use kernel::prelude::*;

/// Appends the value `make` returns, built in `v`'s spare room; `Err(make)` (nothing built)
/// when `v` is full. Never allocates.
#[inline(always)]
pub(crate) fn push_in_place<T, F: FnOnce() -> T>(v: &mut KVec<T>, make: F) -> Result<(), F> {
    let Some(room) = v.spare_capacity_mut().first_mut() else {
        return Err(make);
    };
    room.write(make());
    // SAFETY: `inc_len` requires that the `1` element past the length be initialised and within
    // the capacity: `room` is the first element of the spare capacity (so within it), and it was
    // initialised by the `write` just above.
    unsafe { v.inc_len(1) };
    Ok(())
}
