//! Group `unplug` (opt-in): the guest half of real hot unplugs. The host removes edu-dma<k> with
//! QMP `device_del` when the guest prints `EDU-UNPLUG-NOW <k>` (`scripts/vm --hotplug 2`, three
//! devices, the disks of `--disk` with the ext4 one mounted at /mnt).
//! - `inflight`: edu-dma1 under a running COPY; the scenario, shared with `unbind.inflight`, is in
//!   `harness/inflight.rs`.
//! - `onward_inflight`: edu-dma2 while a `MSG_ZEROCOPY` send, an `O_DIRECT` write and a
//!   registered io_uring buffer use streaming pages of its buffers; shared with
//!   `onward.unbind_inflight` (`onward/unbind.rs`).

use crate::harness::inflight::{inflight, How};
use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("inflight", || inflight(How::Unplug)),
        test("onward_inflight", crate::onward::unplug_inflight),
    ]
}
