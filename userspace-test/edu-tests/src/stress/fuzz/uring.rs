//! The fuzzer's io_uring operation: 1..=4 random requests (the queue's own generator,
//! `queue_req`) as `IORING_OP_URING_CMD` commands on a fresh `IORING_SETUP_SQE128` ring, now and
//! then with another `cmd_op` or a cookie; all of them waited for.
//!
//! All random choices are drawn before the first call (see `queue.rs`). Judged: every command
//! completes exactly once; another `cmd_op` is `ENOTTY`, a cookie, reserved bits or an unknown
//! op `EINVAL` (exactly); otherwise `res` is the request's whole length or an allowed errno
//! (`ETIMEDOUT` only for an injected lost interrupt; `EAGAIN` never: at most 4 commands on an
//! empty queue).

use edu_dma::uapi::*;
use io_uring::{cqueue, squeue};

use super::*;
use crate::onward::uring::ring_with;
use crate::queue::uring_cmd::{sqe_op, wait};

impl Fuzz {
    pub(super) fn uring_op(&mut self) -> TestResult {
        // Every choice first.
        let d = self.rng.below(2) as usize;
        let count = self.rng.range(1, 4) as usize;
        let cmds: Vec<(u32, EduDmaReq)> = (0..count)
            .map(|_| {
                let mut r = self.queue_req(d, 0);
                if self.rng.chance(1, 20) {
                    r.cookie = self.rng.next_u64() | 1;
                }
                let op = if self.rng.chance(19, 20) {
                    EDU_DMA_URING_CMD_XFER
                } else {
                    self.pick_u32()
                };
                (op, r)
            })
            .collect();

        let dev = self.devs[d].clone();
        let sqes: Vec<squeue::Entry128> = cmds
            .iter()
            .enumerate()
            .map(|(i, (op, r))| sqe_op(&dev, *op, r, i as u64))
            .collect();
        let mut ring = ring_with::<squeue::Entry128, cqueue::Entry>(8)?;
        for e in &sqes {
            // SAFETY: the requests' user pointers target fuzzer-owned mappings or bad addresses
            // (as SUBMIT's in `queue.rs`), so the device writes no Rust object; every command is
            // waited for below.
            unsafe { ring.submission().push(e) }
                .map_err(|_| self.fail("URING_CMD", "submission queue full".into()))?;
        }
        let n = ring
            .submit()
            .map_err(|e| self.fail("URING_CMD", format!("io_uring_enter: {e}")))?;
        if n != count {
            return Err(self.fail("URING_CMD", format!("{n} of {count} SQEs submitted")));
        }
        let got = wait(&mut ring, count).map_err(|e| self.fail("URING_CMD", e))?;
        let mut seen = vec![false; count];
        for (ud, res) in got {
            let Some((op, r)) = cmds.get(ud as usize).copied() else {
                return Err(self.fail("URING_CMD", format!("completion of user_data {ud}")));
            };
            if std::mem::replace(&mut seen[ud as usize], true) {
                return Err(self.fail("URING_CMD", format!("command {ud} completed twice")));
            }
            let known = [EDU_DMA_OP_XFER, EDU_DMA_OP_USER_XFER, EDU_DMA_OP_COPY].contains(&r.op);
            let e = (res < 0).then_some(-res);
            if op != EDU_DMA_URING_CMD_XFER {
                self.exact("URING_CMD(cmd_op)", e, Some(libc::ENOTTY))?;
            } else if r.cookie != 0 || r.reserved != 0 || !known {
                self.exact("URING_CMD(fields)", e, Some(libc::EINVAL))?;
            } else if res >= 0 {
                self.note("URING_CMD", None);
                if res as u64 != r.len {
                    return Err(self.fail(
                        "URING_CMD",
                        format!("command {ud}: res {res} for a request of {} bytes", r.len),
                    ));
                }
            } else if e == Some(libc::EAGAIN) {
                return Err(self.fail("URING_CMD", "EAGAIN with an empty queue".into()));
            } else {
                self.allowed("URING_CMD", d, e)?;
            }
        }
        Ok(())
    }
}
