//! The fuzzer's queue operation: `EDU_DMA_IOC_SUBMIT` of 0..=4 random requests (every op, also
//! unknown ones, random flags, handles, user pointers of every class, lengths, window offsets,
//! timeouts, reserved fields), the argument struct on the stack or at a bad address, the number
//! now and then with another size; then `EDU_DMA_IOC_REAP` calls with random arguments (bad
//! completion arrays, zero or inverted counts, unknown flags, non-blocking, short timeouts);
//! then every request still queued is reaped.
//!
//! All random choices of an operation are drawn before its first call, so the driver's answers
//! to it never change how much of the seeded stream it consumes (what it draws from, such as the
//! live handles, follows earlier answers, as everywhere in the fuzzer). The queue is empty after every operation (no
//! request is left for a reopen to cancel), and the device work stays bounded: at most four
//! requests of at most 4096 bytes (a copy: two commands) per operation.
//!
//! Judged: SUBMIT's own argument errors exactly (`EINVAL` count 0 or flags, `EFAULT` bad array),
//! a first request with reserved bits or an unknown op `EINVAL`; otherwise a count of 1..=count or
//! an allowed errno. REAP's argument errors exactly (`EINVAL`, `EFAULT` with nothing lost, `EAGAIN`
//! non-blocking with nothing waiting); every completion names a cookie that was queued and not yet
//! reaped, with status 0 (then `done` is the request's whole length) or `-ETIMEDOUT` for an
//! injected lost interrupt (then `done` is at most the length). Each queued request is reaped
//! exactly once.

use std::collections::BTreeMap;

use edu_dma::uapi::*;

use super::*;

/// A REAP call as drawn: arguments, and where the completion array lives.
struct ReapCall {
    max: u32,
    min: u32,
    timeout_ms: u32,
    flags: u32,
    /// `None`: a vector of `max` completions; `Some(addr)`: a bad address.
    bad_cqes: Option<u64>,
}

impl Fuzz {
    /// One random request for device `d`; `cookie` is unique in the run.
    pub(super) fn queue_req(&mut self, d: usize, cookie: u64) -> EduDmaReq {
        let op = match self.rng.below(20) {
            0..=6 => EDU_DMA_OP_XFER,
            7..=12 => EDU_DMA_OP_USER_XFER,
            13..=17 => EDU_DMA_OP_COPY,
            18 => 0,
            _ => self.pick_u32(),
        };
        let zero_or = |f: &mut Fuzz, n: u64| if f.rng.chance(9, 10) { 0 } else { n };
        let mut r = EduDmaReq {
            cookie,
            op,
            timeout_ms: self.pick_timeout(d),
            ..Default::default()
        };
        match op {
            EDU_DMA_OP_XFER => {
                r.flags = self.pick_dir();
                r.handle = self.pick_handle(d);
                let size = self.buf_size(d, r.handle);
                let len = self.pick_len();
                r.len = len.into();
                r.win_offset = self.pick_win(len);
                r.addr = self.pick_off(size);
            }
            EDU_DMA_OP_USER_XFER => {
                r.flags = self.pick_dir();
                r.addr = self.pick_addr().0;
                let len = self.pick_len();
                r.len = len.into();
                r.win_offset = self.pick_win(len);
            }
            EDU_DMA_OP_COPY => {
                r.flags = if self.rng.chance(9, 10) {
                    self.rng.below(4) as u32
                } else {
                    self.pick_u32()
                };
                let (src_buf, dst_buf) = (
                    r.flags & EDU_DMA_COPY_SRC_BUF != 0,
                    r.flags & EDU_DMA_COPY_DST_BUF != 0,
                );
                if src_buf {
                    r.handle = self.pick_handle(d);
                    let s = self.buf_size(d, r.handle);
                    r.addr = self.pick_off(s);
                } else {
                    r.addr = self.pick_addr().0;
                }
                if dst_buf {
                    r.dst_handle = self.pick_handle(d);
                    let s = self.buf_size(d, r.dst_handle);
                    r.dst = self.pick_off(s);
                } else {
                    r.dst = self.pick_addr().0;
                }
                // As for COPY: above 4096 bytes only lengths that fail before any DMA (every
                // buffer is at most 64 KiB, every user slot fenced; the queue's limit is one pin
                // window).
                r.len = match self.rng.below(10) {
                    0..=7 => self.rng.range(1, 4096),
                    8 => 0,
                    _ => *self.rng.pick(&[1 << 24, 1 << 32, u64::MAX]),
                };
            }
            _ => {
                r.flags = self.rng.next_u32();
                r.addr = self.pick_u64();
                r.len = self.pick_u64();
            }
        }
        // Now and then a field the op does not use, or reserved bits.
        match self.rng.below(30) {
            0 => r.reserved = self.rng.next_u64() | 1,
            1 => r.dst = r.dst.wrapping_add(zero_or(self, 1)),
            2 => r.dst_handle = r.dst_handle.wrapping_add(1),
            _ => {}
        }
        r
    }

    fn reap_call(&mut self, outstanding: usize) -> ReapCall {
        let b = self.base as u64;
        let max = match self.rng.below(10) {
            0 => 0,
            1 => u32::MAX,
            _ => self.rng.range(1, 4) as u32,
        };
        let min = match self.rng.below(10) {
            0 => max.wrapping_add(1),
            1..=4 => 0,
            _ => self.rng.range(0, outstanding as u64) as u32,
        };
        let timeout_ms = *self.rng.pick(&[0, 0, 1, 50, 150, 1000]);
        let flags = match self.rng.below(10) {
            0..=5 => 0,
            6..=8 => EDU_DMA_REAP_NONBLOCK,
            _ => self.rng.next_u32() | 2,
        };
        let bad_cqes = match self.rng.below(12) {
            0 => Some(0),
            1 => Some(b + 2 * SLOT as u64 + self.rng.below(SLOT as u64 - 4096)),
            2 => Some(b + SLOT as u64),
            3 => Some(0xffff_8880_0000_0000),
            _ => None,
        };
        ReapCall {
            max: max.min(if bad_cqes.is_some() { max } else { 64 }),
            min,
            timeout_ms,
            flags,
            bad_cqes,
        }
    }

    /// Checks completions against the requests queued and not yet reaped.
    fn judge_cqes(
        &mut self,
        d: usize,
        cqes: &[EduDmaCqe],
        queued: &mut BTreeMap<u64, u64>,
    ) -> TestResult {
        for c in cqes {
            let Some(len) = queued.remove(&c.cookie) else {
                return Err(self.fail(
                    "REAP",
                    format!("completion of cookie {} that is not queued", c.cookie),
                ));
            };
            let ok = match c.status {
                0 => c.done == len,
                s if s == -libc::ETIMEDOUT && self.sh.timeout_allowed(d) => c.done <= len,
                _ => false,
            };
            self.note("queued-request", (c.status != 0).then_some(-c.status));
            if !ok {
                return Err(self.fail(
                    "REAP",
                    format!(
                        "cookie {}: status {}, done {} of {len}",
                        c.cookie, c.status, c.done
                    ),
                ));
            }
        }
        Ok(())
    }

    /// REAP through the raw ioctl with the argument on the stack.
    fn reap_raw(&self, d: usize, arg: &EduDmaReap) -> Result<usize, Option<i32>> {
        let mut a = *arg;
        // SAFETY: the argument is a stack copy; the completion array is a live vector of `max`
        // entries or a deliberately bad address.
        let r =
            unsafe { self.devs[d].ioctl_raw(EDU_DMA_IOC_REAP, (&mut a as *mut EduDmaReap).cast()) };
        match r {
            Ok(n) => Ok(n as usize),
            Err(e) => Err(e.raw_os_error()),
        }
    }

    pub(super) fn queue_op(&mut self) -> TestResult {
        // Every choice first (see the file header).
        let d = self.rng.below(2) as usize;
        let count = match self.rng.below(10) {
            0 => 0,
            1..=4 => 1,
            _ => self.rng.range(2, 4) as usize,
        };
        let reqs: Vec<EduDmaReq> = (0..count)
            .map(|_| {
                self.next_cookie += 1;
                let c = self.next_cookie;
                self.queue_req(d, c)
            })
            .collect();
        let flags = if self.rng.chance(9, 10) {
            0
        } else {
            self.rng.next_u32() | 1
        };
        let bad_array = match self.rng.below(12) {
            0 => Some(0u64),
            1 => Some(self.base as u64 + 2 * SLOT as u64),
            2 => Some(0xffff_8880_0000_0000),
            _ => None,
        };
        let bad_arg = self.rng.chance(1, 20);
        let wrong_size = self.rng.chance(1, 30);
        let reaps: Vec<ReapCall> = (0..self.rng.range(0, 3))
            .map(|_| self.reap_call(count))
            .collect();

        let dev = self.devs[d].clone();
        let mut arg = EduDmaSubmit {
            reqs: bad_array.unwrap_or(reqs.as_ptr() as u64),
            count: count as u32,
            flags,
        };
        let cmd = if wrong_size {
            (EDU_DMA_IOC_SUBMIT & !(0x3fff << 16)) | (8 << 16)
        } else {
            EDU_DMA_IOC_SUBMIT
        };
        let at = if bad_arg {
            self.base + 2 * SLOT + 128
        } else {
            (&mut arg as *mut EduDmaSubmit) as usize
        };
        // SAFETY: the argument is a stack struct or a PROT_NONE address; the requests are read
        // from `reqs` (exactly `count` of them) and their user pointers target fuzzer-owned
        // mappings or bad addresses, so the device writes no Rust object.
        let r = unsafe { dev.ioctl_raw(cmd, at as *mut libc::c_void) };
        let e = errno_of(&r);
        let first = reqs.first().copied().unwrap_or_default();
        let known_op = [EDU_DMA_OP_XFER, EDU_DMA_OP_USER_XFER, EDU_DMA_OP_COPY].contains(&first.op);
        let want = if wrong_size {
            Some(Some(libc::ENOTTY))
        } else if bad_arg {
            Some(Some(libc::EFAULT))
        } else if count == 0 || flags != 0 {
            Some(Some(libc::EINVAL))
        } else if bad_array.is_some() {
            Some(Some(libc::EFAULT))
        } else if first.reserved != 0 || !known_op {
            Some(Some(libc::EINVAL))
        } else {
            None
        };
        let n = match (want, r) {
            (Some(w), _) => {
                self.exact("SUBMIT", e, w)?;
                0
            }
            (None, Ok(n)) if (1..=count as i32).contains(&n) => {
                self.note("SUBMIT", None);
                n as usize
            }
            (None, Ok(n)) => {
                return Err(self.fail("SUBMIT", format!("returned {n} for {count} requests")))
            }
            (None, Err(_)) if e == Some(libc::EAGAIN) => {
                return Err(self.fail("SUBMIT", "EAGAIN with an empty queue".into()))
            }
            (None, Err(_)) => {
                self.allowed("SUBMIT", d, e)?;
                0
            }
        };
        let mut queued: BTreeMap<u64, u64> = reqs[..n].iter().map(|r| (r.cookie, r.len)).collect();

        for rc in reaps {
            let mut out = vec![
                EduDmaCqe::default();
                if rc.bad_cqes.is_some() {
                    0
                } else {
                    rc.max as usize
                }
            ];
            let arg = EduDmaReap {
                cqes: rc.bad_cqes.unwrap_or(out.as_mut_ptr() as u64),
                max: rc.max,
                min: rc.min,
                timeout_ms: rc.timeout_ms,
                flags: rc.flags,
            };
            let before = queued.len();
            let got = self.reap_raw(d, &arg);
            let nonblock = rc.flags == EDU_DMA_REAP_NONBLOCK;
            if rc.max == 0 || rc.min > rc.max || rc.flags & !EDU_DMA_REAP_NONBLOCK != 0 {
                self.exact("REAP(bad fields)", got.err().flatten(), Some(libc::EINVAL))?;
                continue;
            }
            match got {
                // Nothing to write: a bad array is not touched.
                Ok(0) if rc.bad_cqes.is_some() => self.note("REAP", None),
                Ok(k) if rc.bad_cqes.is_none() && k <= rc.max as usize && k <= before => {
                    self.note("REAP", None);
                    if k == 0 && !nonblock && rc.min > 0 && before > 0 {
                        // A blocking reap for at least one returns one (or ETIMEDOUT).
                        return Err(self.fail("REAP", format!("0 completions, {before} queued")));
                    }
                    self.judge_cqes(d, &out[..k], &mut queued)?;
                }
                Ok(k) => {
                    return Err(self.fail(
                        "REAP",
                        format!("{k} completions (max {}, {before} queued)", rc.max),
                    ))
                }
                Err(Some(libc::EFAULT)) if rc.bad_cqes.is_some() => {
                    self.note("REAP", Some(libc::EFAULT))
                }
                // Nothing written, nothing lost: the completions stay for the drain below.
                Err(Some(libc::EAGAIN)) if nonblock => self.note("REAP", Some(libc::EAGAIN)),
                Err(Some(libc::ETIMEDOUT)) if rc.timeout_ms > 0 => {
                    self.note("REAP", Some(libc::ETIMEDOUT))
                }
                Err(e) => {
                    let name = e.map(errno_name).unwrap_or_else(|| "?".into());
                    return Err(self.fail(
                        "REAP",
                        format!("{name} (max {}, min {}, flags {:#x}, timeout {}, bad array {:?}, {before} queued)",
                            rc.max, rc.min, rc.flags, rc.timeout_ms, rc.bad_cqes),
                    ));
                }
            }
        }

        // Drain: every request still queued ends and is reaped exactly once.
        while !queued.is_empty() {
            let mut out = vec![EduDmaCqe::default(); queued.len()];
            let arg = EduDmaReap {
                cqes: out.as_mut_ptr() as u64,
                max: out.len() as u32,
                min: out.len() as u32,
                timeout_ms: 20_000,
                flags: 0,
            };
            match self.reap_raw(d, &arg) {
                Ok(k) if k > 0 => self.judge_cqes(d, &out[..k], &mut queued)?,
                r => {
                    return Err(
                        self.fail("REAP(drain)", format!("{r:?} with {} queued", queued.len()))
                    )
                }
            }
        }
        // Nothing is left: a non-blocking reap finds nothing.
        let mut one = [EduDmaCqe::default()];
        let arg = EduDmaReap {
            cqes: one.as_mut_ptr() as u64,
            max: 1,
            min: 0,
            timeout_ms: 0,
            flags: EDU_DMA_REAP_NONBLOCK,
        };
        let got = self.reap_raw(d, &arg).err().flatten();
        self.exact("REAP(empty)", got, Some(libc::EAGAIN))
    }
}
