//! Group `unplug` (opt-in): the guest half of a real hot unplug. The host removes edu-dma1 with
//! QMP `device_del` when the guest prints `EDU-UNPLUG-NOW 1` (`scripts/vm --hotplug`); the
//! scenario, shared with `unbind.inflight`, is in `harness/inflight.rs`.

use crate::harness::inflight::{inflight, How};
use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![test("inflight", || inflight(How::Unplug))]
}
