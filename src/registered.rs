// SPDX-License-Identifier: GPL-2.0

//! Registered user memory (`EDU_DMA_IOC_REG_USER`): a user range pinned long-term, charged to
//! `RLIMIT_MEMLOCK` and mapped for the device once, at registration, then named by id in queued
//! `REG_XFER` requests (like io_uring's fixed buffers or an RDMA memory region).
//!
//! Pinning: `FOLL_LONGTERM | FOLL_WRITE` (`raw::gup`), the whole range, before the mapping; the
//! pages are charged to the registering process's `pinned_vm` first (`raw::memlock`: `ENOMEM`
//! above `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK`). Mapping: one bidirectional scatter-gather
//! table (`raw::dma::SgMap`), segments at most a window long. It is a long-lived streaming
//! mapping, so each request hands its range to the device at submit and back to the CPU when
//! its hold drops (reap, close or unbind, always after the device is done with it): what the
//! device wrote is in the user's memory once the request is reaped, also through a bounce buffer.
//!
//! Lifetime: like a buffer, a registration is tracked for revocation at unbind ([`Revoke`]) and
//! its references are taken and dropped inside `bound` only: the file's table holds one until
//! `UNREG_USER` or close (`EduDevice::retire`), each queued request one until it is reaped. The
//! last reference (or unbind, whichever comes first) unmaps, then unpins, then refunds the
//! charge. After unbind the id stays in the file's table (requests get `ENODEV`) until
//! `UNREG_USER` or close.

use kernel::{
    dma::DataDirection,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        Arc,
        Mutex, //
    },
};

use crate::{
    device::{
        Live,
        Revoke, //
    },
    raw::{
        dma::{
            Owner,
            SgMap, //
        },
        gup::Pinned,
        memlock::PinnedCharge,
    },
    split::{
        self,
        Piece, //
    },
    userpages,
};

/// The mapping and what it holds, until the last reference or unbind.
struct Mapped {
    /// The device mapping, which owns the pins (unmap, then unpin, on drop).
    sg: SgMap<'static>,
    /// The mapped segments (bus address, length), in order, covering the whole range.
    segs: KVec<(u64, usize)>,
    /// Refunded after `sg` dropped (fields drop in order): unpinned before uncharged.
    _charge: PinnedCharge,
}

/// A registered user range.
#[pin_data]
pub(crate) struct Registered {
    len: usize,
    /// `None` once revoked.
    #[pin]
    inner: Mutex<Option<Mapped>>,
}

impl Registered {
    /// Charges, pins and maps `[addr, addr + len)` of the current process (page aligned,
    /// already checked), and tracks it for revocation at unbind.
    pub(crate) fn new(live: &Live<'_>, addr: usize, len: usize) -> Result<Arc<Self>> {
        let charge = PinnedCharge::charge(len / PAGE_SIZE)?;
        let pinned = Pinned::from_user_longterm(addr, len)?;
        let sg = SgMap::new(
            live.dev,
            pinned,
            DataDirection::Bidirectional,
            userpages::max_segment(),
        )?;
        let mut segs = KVec::new();
        for seg in sg.segments() {
            segs.push(seg, GFP_KERNEL)?;
        }
        let mapped = Mapped {
            sg,
            segs,
            _charge: charge,
        };
        let reg = Arc::pin_init(
            try_pin_init!(Self {
                len,
                inner <- new_mutex!(Some(mapped), "Registered::inner"),
            }),
            GFP_KERNEL,
        )?;
        live.track(reg.clone())?;
        Ok(reg)
    }

    /// Checks that `[offset, offset + len)` lies in the registration; returns `(offset, end)`.
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(usize, usize)> {
        split::range_in(offset, len, self.len).ok_or(EINVAL)
    }

    /// Appends the device pieces covering `[offset, offset + len)` (checked), split at segments
    /// and at window steps of the range, after handing the range to the device. `ENODEV` once
    /// revoked.
    pub(crate) fn pieces_for_device(
        &self,
        offset: usize,
        len: usize,
        out: &mut KVec<Piece>,
    ) -> Result {
        let inner = self.inner.lock();
        let m = inner.as_ref().ok_or(ENODEV)?;
        let segs = || split::range_segments(&m.segs, offset, len).ok_or(EINVAL);
        for (bus, n) in segs()? {
            m.sg.sync(bus, n, Owner::Device)?;
        }
        let parts = segs()?;
        split::segment_pieces(parts, |p| out.push(p, GFP_KERNEL).map_err(Error::from))
    }

    /// Hands `[offset, offset + len)` (checked) back to the CPU, once the device is done with it.
    /// Nothing to do once revoked: the unmap synced the whole range.
    pub(crate) fn sync_for_cpu(&self, offset: usize, len: usize) {
        let inner = self.inner.lock();
        let Some(m) = inner.as_ref() else {
            return;
        };
        for (bus, n) in split::range_segments(&m.segs, offset, len)
            .into_iter()
            .flatten()
        {
            // Cannot fail: the parts lie in the mapped segments.
            let _ = m.sg.sync(bus, n, Owner::Cpu);
        }
    }
}

impl Revoke for Registered {
    fn revoke(&self) {
        // Out of the lock: unmaps, unpins and refunds.
        let mapped = self.inner.lock().take();
        drop(mapped);
    }
}
