//! `stress.fuzz`: a bounded, seeded random ioctl fuzzer (`EDU_FUZZ_SEED`, default time-based;
//! `EDU_FUZZ_ITERS`, default 3000).
//!
//! Calls: the valid ioctl numbers with random fields, valid numbers with a wrong size, direction
//! or type, random numbers of the driver's magic and of other types; argument structs on the
//! stack or at bad addresses; user pointers into scratch memory, unmapped, PROT_NONE and
//! read-only pages, kernel and non-canonical addresses, coherent (VM_PFNMAP) and streaming buffer
//! mappings; huge lengths and offsets; pread/pwrite; alloc/free/mmap/munmap interleaved, files
//! reopened; a second thread racing XFERs against BUF_FREE on the same handle; and the queue:
//! SUBMIT of random requests, REAP with random arguments, every request reaped once
//! (`fuzz/queue.rs`), and the same requests as io_uring commands (`fuzz/uring.rs`).
//!
//! Every answer must be success or an errno of {EINVAL, EFAULT, ENOENT, ENOTTY, EOVERFLOW,
//! E2BIG, ENOMEM, EPERM, ENOSPC}, or ETIMEDOUT for no more commands than lost interrupts were
//! injected. Some classes are predicted exactly: an unknown number is ENOTTY, an argument at a bad
//! address EFAULT, FACTORIAL/FAULT/INFO their exact answers, USER_XFER with valid fields on
//! unpinnable memory EFAULT. Transfer lengths above 4096 are only generated where they must fail
//! before any DMA (every user pointer lies in a slot fenced by PROT_NONE), so the device work
//! stays bounded.
//!
//! All memory the device may write is the fuzzer's own mmap'd scratch, never Rust objects. That
//! includes the argument struct itself when it sits in scratch or a device mapping: a request is
//! judged by what was submitted, and only the fields an ioctl writes are read back
//! ([`judged_request`]; see `stress.fuzz_overlapping_dest`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edu_dma::uapi::*;
use edu_dma::{Device, Dir};

use super::*;

mod queue;
mod uring;

const SLOT: usize = 64 * 1024;
const DEV_SLOTS: usize = 6;
/// Slots: 0 scratch (RW), 1 read-only page, 2 PROT_NONE, 3.. device mappings.
const NSLOTS: usize = 3 + DEV_SLOTS;
pub(super) const SCRATCH: usize = 4 * 4096;
/// Longest device mapping (pages); the rest of a slot stays PROT_NONE.
const MAX_MAP_PAGES: u64 = 15;

const ALLOWED: [i32; 9] = [
    libc::EINVAL,
    libc::EFAULT,
    libc::ENOENT,
    libc::ENOTTY,
    libc::EOVERFLOW,
    libc::E2BIG,
    libc::ENOMEM,
    libc::EPERM,
    libc::ENOSPC,
];

const FACTORIALS: [u64; 13] = [
    1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800, 479001600,
];

const VALID: [(u32, &str); 9] = [
    (EDU_DMA_IOC_INFO, "INFO"),
    (EDU_DMA_IOC_FACTORIAL, "FACTORIAL"),
    (EDU_DMA_IOC_BUF_ALLOC, "BUF_ALLOC"),
    (EDU_DMA_IOC_BUF_FREE, "BUF_FREE"),
    (EDU_DMA_IOC_BUF_SYNC, "BUF_SYNC"),
    (EDU_DMA_IOC_XFER, "XFER"),
    (EDU_DMA_IOC_USER_XFER, "USER_XFER"),
    (EDU_DMA_IOC_COPY, "COPY"),
    (EDU_DMA_IOC_FAULT, "FAULT"),
];

/// The driver's other numbers, which random numbers avoid (they are not judged as bogus, and
/// the queue's are fuzzed by `queue_op` with arguments that keep the device's writes in the
/// fuzzer's own memory).
const OTHER_VALID: [u32; 5] = [
    EDU_DMA_IOC_BUF_EXPORT,
    EDU_DMA_IOC_BUF_IMPORT,
    EDU_DMA_IOC_SUBMIT,
    EDU_DMA_IOC_REAP,
    EDU_DMA_IOC_SET_EVENTFD,
];

/// Ioctl types the VFS answers itself before the driver (FIOCLEX 'T', FIFREEZE 'X', FICLONE
/// 0x94, FS_IOC_* 'f' and 0x15, FIGETBSZ 0): random numbers avoid them.
const VFS_TYPES: [u32; 6] = [0x54, 0x58, 0x94, 0x66, 0x15, 0x00];

fn errno_of(r: &std::io::Result<i32>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// Where a user pointer points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Class {
    /// Readable and writable, pinnable (scratch, streaming RW mapping).
    Valid,
    /// Never pinnable: unmapped, PROT_NONE, kernel, non-canonical, VM_PFNMAP.
    Bad,
    /// Near the top of the address space.
    Top,
    /// Depends on direction or length (read-only, partial, straddling).
    Maybe,
}

/// Where an ioctl's argument struct lives.
#[derive(Clone, Copy, Debug)]
pub(super) enum Arg {
    /// A copy on the stack (never a DMA destination).
    Stack,
    /// Fuzzer-owned writable memory (scratch or a writable device mapping), 128 bytes of room:
    /// the request is copied there, and a device-to-memory transfer of the same call may
    /// overwrite it.
    Mem(usize),
    /// An address the kernel cannot read the struct from (EFAULT).
    Bad(usize),
    /// The read-only page.
    ReadOnly(usize),
}

/// (offset, size) of `field` in uapi struct `t`.
macro_rules! field {
    ($t:ty, $f:ident) => {
        (
            std::mem::offset_of!($t, $f),
            std::mem::size_of_val(&<$t>::default().$f),
        )
    };
}

/// The request the fuzzer judges an ioctl by: the bytes as submitted, with only the fields that
/// ioctl writes taken from `after` (the argument's bytes after the call). The argument may lie in
/// memory that the same call's DMA wrote (a FROM_DEVICE USER_XFER, an XFER into a mapped
/// buffer, a COPY whose destination covers the struct): its other bytes are window contents
/// then, not the request the driver ran.
pub(super) fn judged_request(cmd: u32, submitted: &[u8; 128], after: &[u8; 128]) -> [u8; 128] {
    let out: &[(usize, usize)] = match cmd {
        EDU_DMA_IOC_INFO => &[(0, std::mem::size_of::<EduDmaInfo>())],
        EDU_DMA_IOC_FACTORIAL => &[field!(EduDmaFactorial, result)],
        EDU_DMA_IOC_BUF_ALLOC => &[
            field!(EduDmaBufAlloc, handle),
            field!(EduDmaBufAlloc, mmap_offset),
        ],
        EDU_DMA_IOC_COPY => &[field!(EduDmaCopy, done)],
        _ => &[],
    };
    let mut j = *submitted;
    for &(off, len) in out {
        j[off..off + len].copy_from_slice(&after[off..off + len]);
    }
    j
}

#[derive(Clone, Copy, Debug)]
struct SlotMap {
    coherent: bool,
    pages: u64,
    rw: bool,
    prot: i32,
}

#[derive(Clone, Copy, Debug)]
struct Buf {
    handle: u32,
    size: u64,
    coherent: bool,
}

/// State shared with the racing thread.
struct Shared {
    target: Mutex<Option<(Arc<Device>, u32, usize)>>,
    stop: AtomicBool,
    injected: [AtomicU64; 2],
    seen_timeouts: [AtomicU64; 2],
    failures: Mutex<Vec<String>>,
    race_ok: AtomicU64,
    race_enoent: AtomicU64,
}

impl Shared {
    /// Accounts one ETIMEDOUT on device `d`: allowed only for an injected lost interrupt.
    fn timeout_allowed(&self, d: usize) -> bool {
        let seen = self.seen_timeouts[d].fetch_add(1, Ordering::SeqCst) + 1;
        seen <= self.injected[d].load(Ordering::SeqCst)
    }

    /// Whether no injected lost interrupt can be pending on `d`.
    fn quiet(&self, d: usize) -> bool {
        self.seen_timeouts[d].load(Ordering::SeqCst) >= self.injected[d].load(Ordering::SeqCst)
    }
}

fn racer(sh: &Shared) {
    let mut i = 0u32;
    while !sh.stop.load(Ordering::Relaxed) {
        let t = sh.target.lock().map(|g| g.clone()).unwrap_or(None);
        let Some((dev, handle, d)) = t else {
            std::thread::sleep(Duration::from_millis(2));
            continue;
        };
        i = i.wrapping_add(1);
        let dir = if i.is_multiple_of(2) {
            Dir::ToDevice
        } else {
            Dir::FromDevice
        };
        let r = dev.xfer(handle, (i % 8) as u64 * 64, (i % 16) * 64, 256, dir, 2000);
        let clear = || {
            if let Ok(mut g) = sh.target.lock() {
                if g.as_ref()
                    .is_some_and(|(_, h, dd)| *h == handle && *dd == d)
                {
                    *g = None;
                }
            }
        };
        match r.as_ref().map_err(|e| e.raw_os_error()) {
            Ok(()) => {
                sh.race_ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(Some(libc::ENOENT)) => {
                sh.race_enoent.fetch_add(1, Ordering::Relaxed);
                clear();
            }
            Err(Some(libc::ETIMEDOUT)) if sh.timeout_allowed(d) => {}
            Err(e) => {
                if let Ok(mut f) = sh.failures.lock() {
                    f.push(format!(
                        "racing XFER on edu-dma{d} handle {handle}: {}",
                        e.map(errno_name).unwrap_or_else(|| "?".into())
                    ));
                }
                clear();
            }
        }
    }
}

/// The fuzzer's state. Every user pointer it makes lies in the reservation at `base`: scratch
/// (`SCRATCH` bytes, RW), the read-only page, a PROT_NONE slot, then the device mapping slots.
pub(super) struct Fuzz {
    rng: Rng,
    base: usize,
    devs: [Arc<Device>; 2],
    bufs: [Vec<Buf>; 2],
    freed: Vec<u32>,
    slots: [Option<SlotMap>; DEV_SLOTS],
    sh: Arc<Shared>,
    hist: BTreeMap<String, u64>,
    iter: u64,
    fact_timeouts: u64,
    /// The last queued request's cookie.
    next_cookie: u64,
}

fn mmap_fixed(addr: usize, len: usize, prot: i32, flags: i32, fd: i32, off: u64) -> i32 {
    // SAFETY: `addr` lies in the fuzzer's own reservation; MAP_FIXED replaces only that range,
    // which no Rust object lives in.
    let p = unsafe {
        libc::mmap(
            addr as *mut libc::c_void,
            len,
            prot,
            flags | libc::MAP_FIXED,
            fd,
            off as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(-1)
    } else {
        0
    }
}

/// Puts a PROT_NONE anonymous reservation back over `[addr, addr + len)`.
fn reserve(addr: usize, len: usize) -> TestResult {
    match mmap_fixed(
        addr,
        len,
        libc::PROT_NONE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        -1,
        0,
    ) {
        0 => Ok(()),
        e => Err(format!("re-reserving {addr:#x}: {}", errno_name(e))),
    }
}

impl Fuzz {
    /// A fuzzer with generator `seed` over the reservation at `base`, both devices open.
    pub(super) fn new(seed: u64, base: usize) -> Result<Fuzz, String> {
        let sh = Arc::new(Shared {
            target: Mutex::new(None),
            stop: AtomicBool::new(false),
            injected: [AtomicU64::new(0), AtomicU64::new(0)],
            seen_timeouts: [AtomicU64::new(0), AtomicU64::new(0)],
            failures: Mutex::new(Vec::new()),
            race_ok: AtomicU64::new(0),
            race_enoent: AtomicU64::new(0),
        });
        Ok(Fuzz {
            rng: Rng::new(seed),
            base,
            devs: [Arc::new(open(0)?), Arc::new(open(1)?)],
            bufs: [Vec::new(), Vec::new()],
            freed: Vec::new(),
            slots: [None; DEV_SLOTS],
            sh,
            hist: BTreeMap::new(),
            iter: 0,
            fact_timeouts: 0,
            next_cookie: 0,
        })
    }

    fn slot_addr(&self, s: usize) -> usize {
        self.base + (3 + s) * SLOT
    }

    fn note(&mut self, what: &str, r: Option<i32>) {
        let k = match r {
            None => format!("{what}:ok"),
            Some(e) => format!("{what}:{}", errno_name(e)),
        };
        *self.hist.entry(k).or_default() += 1;
    }

    fn fail(&self, what: &str, msg: String) -> String {
        format!("iteration {} ({what}): {msg}", self.iter)
    }

    /// Checks an answer against the allowed set (ETIMEDOUT only as injected on `d`).
    fn allowed(&mut self, what: &str, d: usize, e: Option<i32>) -> TestResult {
        self.note(what, e);
        match e {
            None => Ok(()),
            Some(libc::ETIMEDOUT) if self.sh.timeout_allowed(d) => Ok(()),
            Some(n) if ALLOWED.contains(&n) => Ok(()),
            Some(n) => Err(self.fail(what, format!("unexpected {}", errno_name(n)))),
        }
    }

    fn exact(&mut self, what: &str, got: Option<i32>, want: Option<i32>) -> TestResult {
        self.note(what, got);
        let name = |e: Option<i32>| e.map(errno_name).unwrap_or_else(|| "success".into());
        if got == want {
            Ok(())
        } else {
            Err(self.fail(what, format!("got {}, expected {}", name(got), name(want))))
        }
    }

    fn pick_u32(&mut self) -> u32 {
        let v = [0, 1, 2, 3, 4095, 4096, 4097, u32::MAX, 0x8000_0000];
        if self.rng.chance(1, 3) {
            self.rng.next_u32()
        } else {
            *self.rng.pick(&v)
        }
    }

    fn pick_u64(&mut self) -> u64 {
        let v = [
            0,
            1,
            4095,
            4096,
            4097,
            1 << 32,
            (1 << 32) + 1,
            1 << 63,
            u64::MAX,
            u64::MAX - 4095,
        ];
        if self.rng.chance(1, 3) {
            self.rng.next_u64()
        } else {
            *self.rng.pick(&v)
        }
    }

    fn pick_handle(&mut self, d: usize) -> u32 {
        match self.rng.below(10) {
            0..=5 if !self.bufs[d].is_empty() => {
                let i = self.rng.below(self.bufs[d].len() as u64) as usize;
                self.bufs[d][i].handle
            }
            6 if !self.freed.is_empty() => *self.rng.pick(&self.freed),
            7 => self.rng.range(1, 64) as u32,
            8 => 0,
            _ => self.pick_u32(),
        }
    }

    fn buf_size(&self, d: usize, handle: u32) -> Option<u64> {
        self.bufs[d]
            .iter()
            .find(|b| b.handle == handle)
            .map(|b| b.size)
    }

    /// An offset into a buffer of `size` (or anything).
    fn pick_off(&mut self, size: Option<u64>) -> u64 {
        match (size, self.rng.below(8)) {
            (Some(s), 0..=3) => self.rng.below(s),
            (Some(s), 4) => s - self.rng.range(1, 64.min(s)),
            (Some(s), 5) => s + self.rng.below(2),
            _ => self.pick_u64(),
        }
    }

    /// A transfer length: mostly 1..=4096.
    fn pick_len(&mut self) -> u32 {
        match self.rng.below(10) {
            0..=6 => self.rng.range(1, 4096) as u32,
            7 => *self.rng.pick(&[1, 4095, 4096]),
            _ => self.pick_u32(),
        }
    }

    fn pick_win(&mut self, len: u32) -> u32 {
        if self.rng.chance(8, 10) && len <= 4096 {
            self.rng.below(u64::from(4096 - len) + 1) as u32
        } else {
            self.pick_u32()
        }
    }

    fn pick_timeout(&mut self, d: usize) -> u32 {
        // Below ~200 ms a command can time out on its own (each takes 100 ms of device time).
        match self.rng.below(10) {
            0..=5 => 0,
            6 => 500,
            7 => 1000,
            8 => 3000,
            _ if self.sh.quiet(d) => u32::MAX,
            _ => 2000,
        }
    }

    fn pick_dir(&mut self) -> u32 {
        if self.rng.chance(17, 20) {
            self.rng.range(1, 2) as u32
        } else {
            let r = self.rng.next_u32();
            *self.rng.pick(&[0, 3, 4, u32::MAX, r])
        }
    }

    /// A user address and its class.
    fn pick_addr(&mut self) -> (u64, Class) {
        let b = self.base as u64;
        match self.rng.below(16) {
            0..=5 => (b + self.rng.below(SCRATCH as u64), Class::Valid),
            6 => (b + SLOT as u64 + self.rng.below(4096), Class::Maybe),
            7 => (
                b + 2 * SLOT as u64 + self.rng.below(SLOT as u64),
                Class::Bad,
            ),
            8 => (self.rng.below(0x10000), Class::Bad),
            9 => (0xffff_8880_0000_0000 + self.rng.below(1 << 30), Class::Bad),
            10 => (0x0000_8000_0000_0000 + self.rng.below(1 << 20), Class::Bad),
            11 => (u64::MAX - self.rng.below(8192), Class::Top),
            12 => (b + SCRATCH as u64 - self.rng.range(1, 4096), Class::Maybe),
            _ => {
                let s = self.rng.below(DEV_SLOTS as u64) as usize;
                let a = self.slot_addr(s) as u64;
                match self.slots[s] {
                    None => (a + self.rng.below(SLOT as u64), Class::Bad),
                    Some(m) => {
                        let at = a + self.rng.below(m.pages * 4096);
                        let class = if m.coherent || m.prot == libc::PROT_NONE {
                            Class::Bad
                        } else if m.rw {
                            Class::Valid
                        } else {
                            Class::Maybe
                        };
                        (at, class)
                    }
                }
            }
        }
    }

    /// Random fields for ioctl `nr` (the struct of that number), as bytes.
    fn make_arg(&mut self, d: usize, cmd: u32) -> ([u8; 128], Option<Class>) {
        let mut bytes = [0u8; 128];
        let mut class = None;
        macro_rules! put {
            ($v:expr) => {{
                let v = $v;
                let n = std::mem::size_of_val(&v);
                // SAFETY: every uapi struct is plain integers, smaller than 128 bytes.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        (&v as *const _ as *const u8),
                        bytes.as_mut_ptr(),
                        n,
                    )
                };
            }};
        }
        let flags0 = |r: &mut Rng| if r.chance(9, 10) { 0 } else { r.next_u32() | 1 };
        match cmd {
            EDU_DMA_IOC_FACTORIAL => {
                let n = if self.rng.chance(7, 10) {
                    self.rng.below(13) as u32
                } else {
                    self.pick_u32()
                };
                let flags = flags0(&mut self.rng);
                put!(EduDmaFactorial {
                    n,
                    flags,
                    result: self.rng.next_u64()
                });
            }
            EDU_DMA_IOC_BUF_ALLOC => {
                let size = match self.rng.below(10) {
                    0..=5 => self.rng.range(1, 64 * 1024),
                    6 => self.rng.range(1, 2 << 20),
                    7 => (8 << 20) + 1,
                    _ => self.pick_u64(),
                };
                let kind = if self.rng.chance(17, 20) {
                    self.rng.range(1, 2) as u32
                } else {
                    self.pick_u32()
                };
                let (flags, reserved) = (flags0(&mut self.rng), flags0(&mut self.rng));
                put!(EduDmaBufAlloc {
                    size,
                    kind,
                    flags,
                    handle: self.rng.next_u32(),
                    reserved,
                    mmap_offset: self.rng.next_u64()
                });
            }
            EDU_DMA_IOC_BUF_FREE => {
                let handle = self.pick_handle(d);
                put!(EduDmaBufFree {
                    handle,
                    flags: flags0(&mut self.rng)
                });
            }
            EDU_DMA_IOC_BUF_SYNC => {
                let handle = self.pick_handle(d);
                let size = self.buf_size(d, handle);
                let offset = self.pick_off(size);
                let len = if self.rng.chance(1, 2) {
                    u64::from(self.pick_len())
                } else {
                    self.pick_u64()
                };
                let flags = self.pick_dir();
                put!(EduDmaBufSync {
                    handle,
                    flags,
                    offset,
                    len
                });
            }
            EDU_DMA_IOC_XFER => {
                let handle = self.pick_handle(d);
                let size = self.buf_size(d, handle);
                let count = self.pick_len();
                let win_offset = self.pick_win(count);
                let buf_offset = self.pick_off(size);
                let flags = self.pick_dir();
                let timeout_ms = self.pick_timeout(d);
                put!(EduDmaXfer {
                    handle,
                    flags,
                    buf_offset,
                    win_offset,
                    count,
                    timeout_ms,
                    reserved: flags0(&mut self.rng)
                });
            }
            EDU_DMA_IOC_USER_XFER => {
                let (addr, c) = self.pick_addr();
                class = Some(c);
                let len = self.pick_len();
                let win_offset = self.pick_win(len);
                let flags = self.pick_dir();
                let timeout_ms = self.pick_timeout(d);
                put!(EduDmaUserXfer {
                    addr,
                    len,
                    win_offset,
                    flags,
                    timeout_ms
                });
            }
            EDU_DMA_IOC_COPY => {
                let flags = if self.rng.chance(9, 10) {
                    self.rng.below(4) as u32
                } else {
                    self.pick_u32()
                };
                let (src_handle, dst_handle) = (self.pick_handle(d), self.pick_handle(d));
                let side = |f: &mut Fuzz, buf: bool, h: u32| {
                    if buf {
                        let s = f.buf_size(d, h);
                        f.pick_off(s)
                    } else {
                        f.pick_addr().0
                    }
                };
                let src = side(self, flags & EDU_DMA_COPY_SRC_BUF != 0, src_handle);
                let dst = side(self, flags & EDU_DMA_COPY_DST_BUF != 0, dst_handle);
                // Lengths above 4096 only where they fail before any DMA: beyond every buffer
                // and every fenced user slot, or beyond the 4 GiB cap.
                let len = match self.rng.below(10) {
                    0..=6 => self.rng.range(1, 4096),
                    7 => 0,
                    _ => *self
                        .rng
                        .pick(&[1 << 24, 1 << 32, (1 << 32) + 1, u64::MAX, 1 << 40]),
                };
                let timeout_ms = self.pick_timeout(d);
                put!(EduDmaCopy {
                    src,
                    dst,
                    len,
                    done: self.rng.next_u64(),
                    flags,
                    timeout_ms,
                    src_handle,
                    dst_handle
                });
            }
            EDU_DMA_IOC_FAULT => {
                let drop_irqs = self.rng.below(3) as u32;
                put!(EduDmaFault {
                    drop_irqs,
                    flags: if self.rng.chance(3, 4) {
                        0
                    } else {
                        self.rng.next_u32() | 1
                    }
                });
            }
            _ => {
                for b in bytes.iter_mut() {
                    *b = self.rng.next_u32() as u8;
                }
            }
        }
        (bytes, class)
    }

    /// A random ioctl number: (number, is one of the driver's).
    fn pick_cmd(&mut self) -> (u32, &'static str) {
        let (valid, name) = *self.rng.pick(&VALID);
        let cmd = match self.rng.below(20) {
            0..=13 => return (valid, name),
            14..=16 => {
                // Same number, another size, direction or type.
                let size = (valid >> 16) & 0x3fff;
                let dir = valid >> 30;
                match self.rng.below(4) {
                    0 => (valid & !(0x3fff << 16)) | ((size ^ (8 << self.rng.below(3))) << 16),
                    1 => (valid & 0x3fff_ffff) | (((dir + self.rng.range(1, 3) as u32) % 4) << 30),
                    2 => (valid & !(0xff << 8)) | ((0xEE + self.rng.below(16) as u32) << 8),
                    _ => (valid & !(0x3fff << 16)) | ((self.rng.below(0x4000) as u32) << 16),
                }
            }
            17..=18 => core_ioc(
                self.rng.below(4) as u32,
                0xED,
                self.rng.below(256) as u32,
                self.rng.below(256) as u32,
            ),
            _ => self.rng.next_u32(),
        };
        if VALID.iter().any(|&(v, _)| v == cmd) {
            return (
                cmd,
                VALID.iter().find(|&&(v, _)| v == cmd).map_or("?", |x| x.1),
            );
        }
        if VFS_TYPES.contains(&((cmd >> 8) & 0xff)) || OTHER_VALID.contains(&cmd) {
            return (valid, name);
        }
        (cmd, "bogus")
    }

    fn ioctl_op(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let (cmd, name) = self.pick_cmd();
        let (bytes, class) = self.make_arg(d, cmd);
        let b = self.base;
        // Where the argument struct lives.
        let loc = self.rng.below(20);
        let arg = match loc {
            0 => Arg::Bad(0),
            1 => Arg::Bad(0x1000 + self.rng.below(0x8000) as usize),
            2 => Arg::Bad(b + 2 * SLOT + 64),
            3 => Arg::Bad(0xffff_8880_0010_0000),
            4 => Arg::ReadOnly(b + SLOT),
            // Straddling the end of scratch into PROT_NONE.
            5 => Arg::Bad(b + SCRATCH - 4),
            6 => {
                // In a writable device mapping (coherent or streaming), else scratch.
                let s = self.rng.below(DEV_SLOTS as u64) as usize;
                match self.slots[s] {
                    Some(m) if m.rw => Arg::Mem(self.slot_addr(s) + 256),
                    _ => Arg::Mem(b + 512),
                }
            }
            7 => Arg::Mem(b + 1024 + self.rng.below(64) as usize),
            _ => Arg::Stack,
        };
        self.submit(d, cmd, name, bytes, class, arg).map(|_| ())
    }

    /// Runs ioctl `cmd` with the request `submitted` placed as `arg` says and checks the answer
    /// against the request as submitted (only the fields the ioctl writes are read back: the
    /// device may have overwritten the rest, see [`judged_request`]). Returns the errno.
    pub(super) fn submit(
        &mut self,
        d: usize,
        cmd: u32,
        name: &str,
        submitted: [u8; 128],
        class: Option<Class>,
        arg: Arg,
    ) -> Result<Option<i32>, String> {
        // The stack copy the kernel may write (for `Arg::Stack`).
        let mut stack = submitted;
        let addr = match arg {
            Arg::Stack => stack.as_mut_ptr() as usize,
            Arg::Mem(a) | Arg::Bad(a) | Arg::ReadOnly(a) => a,
        };
        if let Arg::Mem(a) = arg {
            // SAFETY: `a` is in scratch or a writable device mapping with 128 bytes of room.
            unsafe { std::ptr::copy_nonoverlapping(submitted.as_ptr(), a as *mut u8, 128) };
        }
        let dev = self.devs[d].clone();
        // SAFETY: the argument is our own memory (stack bytes, scratch, a device mapping) or a
        // deliberately bad address; every user pointer inside it targets fuzzer-owned mappings.
        let r = unsafe { dev.ioctl_raw(cmd, addr as *mut libc::c_void) };
        let after = match arg {
            Arg::Stack => stack,
            Arg::Mem(a) => {
                let mut v = [0u8; 128];
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(a as *const u8, v.as_mut_ptr(), 128) };
                v
            }
            Arg::Bad(_) | Arg::ReadOnly(_) => submitted,
        };
        let e = errno_of(&r);
        let valid = name != "bogus";
        let what = format!("edu-dma{d} {name} {cmd:#010x} arg {addr:#x}");
        let checked = if !valid {
            self.exact("bogus-ioctl", e, Some(libc::ENOTTY))
        } else if let Arg::Bad(_) = arg {
            self.exact(&format!("{name}(bad arg)"), e, Some(libc::EFAULT))
        } else if let (Arg::ReadOnly(_), EDU_DMA_IOC_INFO) = (arg, cmd) {
            self.exact("INFO(read-only arg)", e, Some(libc::EFAULT))
        } else if let Arg::ReadOnly(_) = arg {
            return self.allowed(&format!("{name}(ro arg)"), d, e).map(|()| e);
        } else {
            let judged = judged_request(cmd, &submitted, &after);
            self.after_valid(d, cmd, name, &judged, class, e)
        };
        checked.map(|()| e).map_err(|m| format!("{m} [{what}]"))
    }

    /// Checks (and records) the answer to a valid ioctl whose argument was readable.
    pub(super) fn after_valid(
        &mut self,
        d: usize,
        cmd: u32,
        name: &str,
        bytes: &[u8; 128],
        class: Option<Class>,
        e: Option<i32>,
    ) -> TestResult {
        fn get<T: Default>(bytes: &[u8; 128]) -> T {
            let mut v = T::default();
            // SAFETY: T is a plain-integer uapi struct smaller than 128 bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes.as_ptr(),
                    (&mut v as *mut T).cast::<u8>(),
                    std::mem::size_of::<T>(),
                )
            };
            v
        }
        match cmd {
            EDU_DMA_IOC_INFO => self.exact(name, e, None),
            EDU_DMA_IOC_FACTORIAL => {
                let f: EduDmaFactorial = get(bytes);
                let want = if f.flags != 0 {
                    Some(libc::EINVAL)
                } else if f.n > 12 {
                    Some(libc::EOVERFLOW)
                } else {
                    None
                };
                if want.is_none() && e == Some(libc::ETIMEDOUT) {
                    // Seen once under a loaded host: the factorial's completion lost the race
                    // against the 1 s timeout (edu computes in a host thread while an idle
                    // guest's clock jumps ahead under -icount sleep=off). Not a lost interrupt
                    // of the driver's making if the same request then succeeds: retry once,
                    // count it, and report it in the summary.
                    self.note(name, e);
                    self.fact_timeouts += 1;
                    diag(format!(
                        "fuzz: iteration {}: {}! timed out on edu-dma{d}; retrying",
                        self.iter, f.n
                    ));
                    let got = self.devs[d].factorial(f.n);
                    let got =
                        got.map_err(|e| self.fail(name, format!("{}! timed out, then {e}", f.n)))?;
                    if got != FACTORIALS[f.n as usize] {
                        return Err(self.fail(name, format!("{}! = {got} on retry", f.n)));
                    }
                    return Ok(());
                }
                self.exact(name, e, want)?;
                if want.is_none() && f.result != FACTORIALS[f.n as usize] {
                    return Err(self.fail(name, format!("{}! = {}", f.n, f.result)));
                }
                Ok(())
            }
            EDU_DMA_IOC_FAULT => {
                let f: EduDmaFault = get(bytes);
                let want = (f.flags != 0).then_some(libc::EINVAL);
                self.exact(name, e, want)?;
                if want.is_none() {
                    self.sh.injected[d].fetch_add(u64::from(f.drop_irqs), Ordering::SeqCst);
                }
                Ok(())
            }
            EDU_DMA_IOC_BUF_ALLOC => {
                self.allowed(name, d, e)?;
                if e.is_none() {
                    let a: EduDmaBufAlloc = get(bytes);
                    if a.handle == 0 || a.mmap_offset != u64::from(a.handle) << 32 {
                        return Err(self.fail(
                            name,
                            format!("handle {} mmap_offset {:#x}", a.handle, a.mmap_offset),
                        ));
                    }
                    self.bufs[d].push(Buf {
                        handle: a.handle,
                        size: a.size.div_ceil(4096) * 4096,
                        coherent: a.kind == EDU_DMA_BUF_COHERENT,
                    });
                }
                Ok(())
            }
            EDU_DMA_IOC_BUF_FREE => {
                let f: EduDmaBufFree = get(bytes);
                let live = self.bufs[d].iter().any(|b| b.handle == f.handle);
                if f.flags != 0 {
                    self.exact(name, e, Some(libc::EINVAL))?;
                } else if live {
                    self.exact(name, e, None)?;
                } else {
                    // Unknown here, or leaked by an allocation whose answer could not be
                    // written back.
                    self.allowed(name, d, e)?;
                }
                if e.is_none() {
                    self.bufs[d].retain(|b| b.handle != f.handle);
                    self.freed.push(f.handle);
                }
                Ok(())
            }
            EDU_DMA_IOC_USER_XFER => {
                let u: EduDmaUserXfer = get(bytes);
                let fields_ok = (u.flags == 1 || u.flags == 2)
                    && (1..=4096).contains(&u.len)
                    && u.win_offset <= 4096 - u.len;
                let wraps = u.addr.checked_add(u64::from(u.len)).is_none();
                match class {
                    Some(Class::Bad) if fields_ok => {
                        self.exact("USER_XFER(bad addr)", e, Some(libc::EFAULT))
                    }
                    // EFAULT by the header; the driver answers EOVERFLOW here (see
                    // user.xfer_top_of_address_space), which the allowed set admits.
                    Some(Class::Top) if fields_ok && !wraps => {
                        self.allowed("USER_XFER(top addr)", d, e)
                    }
                    _ if !fields_ok || wraps => {
                        self.exact("USER_XFER(bad fields)", e, Some(libc::EINVAL))
                    }
                    _ => self.allowed(name, d, e),
                }
            }
            _ => self.allowed(name, d, e),
        }
    }

    fn mmap_op(&mut self) -> TestResult {
        let s = self.rng.below(DEV_SLOTS as u64) as usize;
        let addr = self.slot_addr(s);
        if let Some(m) = self.slots[s] {
            if self.rng.chance(1, 2) || m.pages == 1 {
                reserve(addr, SLOT)?;
                self.slots[s] = None;
                self.note("munmap", None);
            } else {
                // Partial munmap of the last page, then fence it again.
                let last = addr + (m.pages as usize - 1) * 4096;
                // SAFETY: the last page of our own device mapping in the reservation.
                let r = unsafe { libc::munmap(last as *mut libc::c_void, 4096) };
                reserve(last, 4096)?;
                if r != 0 {
                    return Err(self.fail("munmap", "partial munmap failed".into()));
                }
                self.slots[s] = Some(SlotMap {
                    pages: m.pages - 1,
                    ..m
                });
                self.note("munmap-partial", None);
            }
            return Ok(());
        }
        let d = self.rng.below(2) as usize;
        let handle = self.pick_handle(d);
        let buf = self.bufs[d].iter().find(|b| b.handle == handle).copied();
        let first = match self.rng.below(8) {
            0..=4 => 0,
            5 => 1,
            6 => self.rng.below(8),
            _ => self.rng.below(1 << 20),
        };
        let pages = self.rng.range(1, MAX_MAP_PAGES);
        let prots = [
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::PROT_READ,
            libc::PROT_NONE,
            libc::PROT_READ | libc::PROT_EXEC,
            libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC,
        ];
        let prot = *self.rng.pick(&prots);
        let shared = self.rng.chance(17, 20);
        let flags = if shared {
            libc::MAP_SHARED
        } else {
            libc::MAP_PRIVATE
        };
        let off = (u64::from(handle) << 32) + first * 4096;
        let fd = self.devs[d].fd();
        let e = mmap_fixed(addr, pages as usize * 4096, prot, flags, fd, off);
        let e = (e != 0).then_some(e);
        if e.is_some() {
            reserve(addr, SLOT)?;
        }
        let what = format!(
            "mmap edu-dma{d} handle {handle} page {first} x{pages} prot {prot} shared {shared}"
        );
        let want = if !shared {
            Some(Some(libc::EINVAL))
        } else if prot & libc::PROT_EXEC != 0 {
            Some(Some(libc::EPERM))
        } else {
            match buf {
                Some(b) if first + pages <= b.size / 4096 => Some(None),
                Some(_) => Some(Some(libc::EINVAL)),
                // Not known to be live (maybe leaked): anything allowed.
                None => None,
            }
        };
        match want {
            Some(w) => self
                .exact("mmap", e, w)
                .map_err(|m| format!("{m} [{what}]"))?,
            None => self.allowed("mmap", d, e)?,
        }
        if e.is_none() {
            let coherent = buf.map(|b| b.coherent).unwrap_or(true);
            self.slots[s] = Some(SlotMap {
                coherent,
                pages,
                rw: prot & (libc::PROT_READ | libc::PROT_WRITE)
                    == libc::PROT_READ | libc::PROT_WRITE,
                prot,
            });
        }
        Ok(())
    }

    fn rw_op(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let (addr, _) = self.pick_addr();
        let len = if self.rng.chance(9, 10) {
            self.rng.range(0, 4096) as usize
        } else {
            self.rng.range(4097, 1 << 20) as usize
        };
        let pos: i64 = match self.rng.below(6) {
            0..=3 => self.rng.below(4096) as i64,
            4 => *self.rng.pick(&[4096, 5000, i64::MAX]),
            _ => -(self.rng.range(1, 100) as i64),
        };
        let fd = self.devs[d].fd();
        let write = self.rng.chance(1, 2);
        // SAFETY: raw pread/pwrite on fuzzer-owned memory or bad addresses; the kernel checks.
        let r = unsafe {
            if write {
                libc::pwrite(fd, addr as *const libc::c_void, len, pos)
            } else {
                libc::pread(fd, addr as *mut libc::c_void, len, pos)
            }
        };
        let e = (r < 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(-1));
        let what = if write { "pwrite" } else { "pread" };
        if pos < 0 && len > 0 {
            return self.exact(&format!("{what}(negative pos)"), e, Some(libc::EINVAL));
        }
        self.allowed(what, d, e)?;
        if r > 4096 {
            return Err(self.fail(what, format!("moved {r} bytes")));
        }
        Ok(())
    }

    /// Frees a buffer while the racing thread runs XFERs on it.
    fn race_op(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let coherent = self.rng.chance(1, 2);
        let kind = if coherent {
            edu_dma::BufKind::Coherent
        } else {
            edu_dma::BufKind::Streaming
        };
        let dev = self.devs[d].clone();
        let handle = match dev.alloc(4096 * self.rng.range(1, 4), kind) {
            Ok(b) => b.into_handle(),
            Err(e) => return self.allowed("race-alloc", d, e.raw_os_error()),
        };
        *self.sh.target.lock().map_err(|_| "poisoned")? = Some((dev.clone(), handle, d));
        std::thread::sleep(Duration::from_millis(self.rng.below(300)));
        let r = dev.free(handle);
        self.exact("race-free", r.err().and_then(|e| e.raw_os_error()), None)?;
        let t = Instant::now();
        while self.sh.target.lock().map(|g| g.is_some()).unwrap_or(false) {
            if t.elapsed() > Duration::from_secs(20) {
                return Err(self.fail("race", "racer never saw ENOENT".into()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    fn reopen_op(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        self.devs[d] = Arc::new(open(d as u32)?);
        self.bufs[d].clear();
        self.note("reopen", None);
        Ok(())
    }

    fn step(&mut self) -> TestResult {
        match self.rng.below(100) {
            0..=66 => self.ioctl_op(),
            67..=68 => self.queue_op(),
            69 => self.uring_op(),
            70..=79 => self.mmap_op(),
            80..=89 => self.rw_op(),
            90..=91 => self.race_op(),
            92 => self.reopen_op(),
            _ => {
                // Allocation-heavy: a valid alloc (freed later by the random frees/reopens).
                let d = self.rng.below(2) as usize;
                let kind = if self.rng.chance(1, 2) {
                    edu_dma::BufKind::Coherent
                } else {
                    edu_dma::BufKind::Streaming
                };
                let size = 4096 * self.rng.range(1, 16);
                let dev = self.devs[d].clone();
                let r = dev.alloc(size, kind).map(|b| b.into_handle());
                match r {
                    Ok(handle) => {
                        self.note("alloc", None);
                        let coherent = kind == edu_dma::BufKind::Coherent;
                        self.bufs[d].push(Buf {
                            handle,
                            size,
                            coherent,
                        });
                        Ok(())
                    }
                    Err(e) => self.allowed("alloc", d, e.raw_os_error()),
                }
            }
        }
    }
}

fn core_ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    crate::core::ioc(dir, ty, nr, size)
}

pub fn fuzz() -> TestResult {
    let seed = seed_from_env("EDU_FUZZ_SEED")?;
    let iters = num_from_env("EDU_FUZZ_ITERS", 3000)?;
    diag(format!("seed {seed}"));
    let before = [info_of(0)?, info_of(1)?];
    // The reservation every user pointer of the fuzzer lies in.
    let len = NSLOTS * SLOT;
    let res = Anon::with(len, libc::PROT_NONE, libc::MAP_NORESERVE).ctx("mmap reservation")?;
    let base = res.ptr.as_ptr() as usize;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: parts of our own reservation.
    unsafe {
        if libc::mprotect(base as *mut libc::c_void, SCRATCH, rw) != 0
            || libc::mprotect((base + SLOT) as *mut libc::c_void, 4096, rw) != 0
        {
            return Err("mprotect".into());
        }
        // The read-only page: random words, all odd, so that flags fields read from it are
        // never 0.
        let ro = std::slice::from_raw_parts_mut((base + SLOT) as *mut u32, 1024);
        let mut r = Rng::new(seed ^ 0x5eed);
        for w in ro.iter_mut() {
            *w = r.next_u32() | 1;
        }
        libc::mprotect((base + SLOT) as *mut libc::c_void, 4096, libc::PROT_READ);
    }
    let mut f = Fuzz::new(seed, base)?;
    let sh = f.sh.clone();
    let t0 = Instant::now();
    let result = std::thread::scope(|s| {
        let sh2 = sh.clone();
        let h = s.spawn(move || racer(&sh2));
        let mut r = Ok(());
        for i in 0..iters {
            f.iter = i;
            r = f.step();
            if r.is_err() {
                break;
            }
        }
        sh.stop.store(true, Ordering::Relaxed);
        let _ = h.join();
        r
    });
    let secs = t0.elapsed().as_secs_f64();
    // Unmap every device mapping, drop the files, clear any pending fault.
    drop(f.devs);
    drop(res);
    for d in 0..2 {
        let dev = open(d)?;
        dev.inject_fault(0).ctx("FAULT 0")?;
    }
    let after = [info_of(0)?, info_of(1)?];
    let mut hist = String::new();
    let mut errnos: BTreeMap<String, u64> = BTreeMap::new();
    for (k, v) in &f.hist {
        let e = k.rsplit(':').next().unwrap_or("?").to_string();
        *errnos.entry(e).or_default() += v;
    }
    for (k, v) in &errnos {
        let _ = write!(hist, " {k}={v}");
    }
    let cmds = [
        after[0].dma_count - before[0].dma_count,
        after[1].dma_count - before[1].dma_count,
    ];
    let injected = [
        sh.injected[0].load(Ordering::SeqCst),
        sh.injected[1].load(Ordering::SeqCst),
    ];
    let timeouts = [
        after[0].timeout_count - before[0].timeout_count,
        after[1].timeout_count - before[1].timeout_count,
    ];
    diag(format!(
        "fuzz: {} iterations, seed {seed}, errno histogram{hist}",
        f.iter + 1
    ));
    diag(format!(
        "fuzz: {secs:.1} s guest time, DMA commands {}/{}, lost IRQs injected {}/{}, timeouts {}/{}, \
         racing XFERs ok {} / ENOENT {}, factorial timeouts retried {}",
        cmds[0],
        cmds[1],
        injected[0],
        injected[1],
        timeouts[0],
        timeouts[1],
        sh.race_ok.load(Ordering::Relaxed),
        sh.race_enoent.load(Ordering::Relaxed),
        f.fact_timeouts
    ));
    if std::env::var("EDU_FUZZ_VERBOSE").is_ok() {
        for (k, v) in &f.hist {
            diag(format!("  {k} {v}"));
        }
    }
    result.map_err(|e| format!("seed {seed}: {e}"))?;
    let racer_failures = sh.failures.lock().map(|v| v.clone()).unwrap_or_default();
    ensure(racer_failures.is_empty(), || racer_failures.join("; "))?;
    for d in 0..2 {
        ensure(timeouts[d] <= injected[d] + f.fact_timeouts, || {
            format!(
                "edu-dma{d}: {} timeouts, {} lost interrupts injected",
                timeouts[d], injected[d]
            )
        })?;
        verified_round_trip(d as u32, 4000 + d as u64, "after the fuzzer")?;
    }
    ensure(f.fact_timeouts <= 2, || {
        format!("{} factorial timeouts", f.fact_timeouts)
    })?;
    ensure(cmds[0] + cmds[1] < 3000, || {
        format!(
            "{} DMA commands: the generator is not bounded",
            cmds[0] + cmds[1]
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_request_reads_back_only_what_the_ioctl_writes() {
        let submitted = [0x11u8; 128];
        let after = [0xeeu8; 128];
        let only = |cmd: u32, fields: &[(usize, usize)]| {
            let j = judged_request(cmd, &submitted, &after);
            for (i, &b) in j.iter().enumerate() {
                let out = fields.iter().any(|&(o, n)| (o..o + n).contains(&i));
                assert_eq!(b, if out { 0xee } else { 0x11 }, "cmd {cmd:#x} byte {i}");
            }
        };
        only(EDU_DMA_IOC_USER_XFER, &[]);
        only(EDU_DMA_IOC_XFER, &[]);
        only(EDU_DMA_IOC_BUF_FREE, &[]);
        only(EDU_DMA_IOC_BUF_SYNC, &[]);
        only(EDU_DMA_IOC_FAULT, &[]);
        only(0x1234_5678, &[]);
        only(EDU_DMA_IOC_FACTORIAL, &[(8, 8)]);
        only(EDU_DMA_IOC_BUF_ALLOC, &[(16, 4), (24, 8)]);
        only(EDU_DMA_IOC_COPY, &[(24, 8)]);
        only(EDU_DMA_IOC_INFO, &[(0, std::mem::size_of::<EduDmaInfo>())]);
    }
}
