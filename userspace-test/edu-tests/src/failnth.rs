//! Group `failnth` (opt-in; the debug kernel): systematic fault injection over every entry point.
//!
//! For each entry point, for N = 1, 2, 3, ...: arm `/proc/thread-self/fail-nth` with N (the N-th
//! injectable call of this thread fails: a slab allocation, a page allocation or a user copy,
//! with failslab/fail_page_alloc set to fail sleeping and order-0 allocations too), make the call,
//! disarm, and judge it. A run that consumed the fault must end in a clean errno (`ENOMEM`,
//! `EFAULT`) or succeed (a fault the kernel absorbed), and the same call must then succeed without
//! injection, with the device still moving data correctly. The sweep of an entry point ends at
//! the first N the call did not reach; N - 1 is its count of injection points, printed as
//! `# failnth <entry>: <count> injection points (...)` so that a new unchecked path shows up as a
//! new count. At the end the device's whole buffer budget must be allocatable again (nothing
//! leaked); the debug boot then checks kmemleak and the DMA-API bookkeeping after rmmod.
//!
//! Between arming and disarming the test makes only the call under test: every argument, buffer
//! and mapping is prepared (and touched) before, so no page fault or allocation of the test
//! itself consumes the fault.
//!
//! `failnth.probe` does the same to binding edu-dma1 through sysfs: each failed probe must leave
//! no `/dev` node, no interrupt and no binding behind, and the next bind works.
//!
//! Two kernel paths do not survive an injected failure, so the sweeps keep the fault out of them
//! with the stack-trace filter (`CONFIG_FAULT_INJECTION_STACKTRACE_FILTER`: no fault is injected,
//! and no fail-nth count is used, in a stack with a return address in `reject-start..reject-end`;
//! one range per fault attribute, set on all three, found in `/proc/kallsyms`):
//! - the entry-point sweep rejects the text of DMA-API debug (`kernel/dma/debug.c`, the span of its
//!   `debug_dma_*` entry points, through which every allocation of it passes): a failed allocation
//!   of its bookkeeping (an entry or a cacheline radix-tree node) makes it disable itself for good
//!   ("DMA-API: cacheline tracking ENOMEM, dma-debug disabled"), entries made before stay behind,
//!   and the debug boot's DMA-API checks after rmmod would mean nothing;
//! - the probe sweep rejects `register_irq_proc` (`kernel/irq/proc.c`): `request_irq` of a new
//!   vector creates `/proc/irq/<N>/*` ignoring each `proc_create` failure, while
//!   `unregister_irq_proc` (when the vector is freed: unbind, or a failed probe's teardown) removes
//!   every entry unconditionally and `remove_proc_entry` warns for the missing one
//!   (`WARNING: fs/proc/generic.c:741`, "name 'affinity_hint'"). A kernel limitation, not a driver
//!   error path (the failure never reaches the driver); probe makes no DMA-API call, the entry
//!   points no `/proc/irq` registration, so each sweep needs one range only.
//!
//! Both tests set the fault attributes' `verbose` to 0 before the first fault: the framework then
//! prints nothing (its default, 2, dumps a stack per fault, which the boot would take for a
//! warning). At the end each checks that DMA-API debug is still enabled.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use edu_dma::uapi::*;
use edu_dma::{BufKind, Device, Queue};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![test("sweep", sweep), test("probe", probe)]
}

/// Most injection points one entry point may have before the sweep calls it unbounded.
const MAX_N: u32 = 400;
/// Errnos an injected failure may end in.
const CLEAN: [i32; 2] = [libc::ENOMEM, libc::EFAULT];
const DEV: &str = "/dev/edu-dma0";

/// Fault-injection knobs (debugfs) so that fail-nth reaches every allocation the driver makes.
const KNOBS: [(&str, &str); 7] = [
    ("failslab/ignore-gfp-wait", "N"),
    ("failslab/verbose", "0"),
    ("fail_page_alloc/ignore-gfp-wait", "N"),
    ("fail_page_alloc/ignore-gfp-highmem", "N"),
    ("fail_page_alloc/min-order", "0"),
    ("fail_page_alloc/verbose", "0"),
    ("fail_usercopy/verbose", "0"),
];

/// The fault attributes fail-nth injects through; each has its own stack-trace filter.
const ATTRS: [&str; 3] = ["failslab", "fail_page_alloc", "fail_usercopy"];
const DEBUGFS: &str = "/sys/kernel/debug";

// Printed text (errors, diagnostics) names DMA-API debug "dma-debug": the serial log holds the
// job's output too, and scripts/vm-job fails a boot on any line with "DMA-API".

/// This thread's fail-nth, set up for a sweep (knobs written, stack-trace filter present), or
/// `None` (the test skips) on a kernel without fault injection, unless the run requires it.
fn setup() -> Result<Option<FailNth>, String> {
    let required = std::env::var("EDU_TEST_REQUIRE_FAILNTH").is_ok();
    let Some(fnth) = FailNth::open()? else {
        if required {
            return Err("no /proc/thread-self/fail-nth in a kernel that must have it".into());
        }
        skip("no fail-nth (CONFIG_FAULT_INJECTION off)")?;
        return Ok(None);
    };
    if !std::path::Path::new(&format!("{DEBUGFS}/failslab/reject-start")).exists() {
        if required {
            return Err(
                "no stack-trace filter (CONFIG_FAULT_INJECTION_STACKTRACE_FILTER off): \
                        the sweep would break dma-debug"
                    .into(),
            );
        }
        skip("no fault-injection stack-trace filter")?;
        return Ok(None);
    }
    for (k, v) in KNOBS {
        std::fs::write(format!("{DEBUGFS}/{k}"), v).ctx(k)?;
    }
    Ok(Some(fnth))
}

/// The running kernel's text symbols (not modules'), by address, from `/proc/kallsyms`.
fn kernel_text() -> Result<Vec<(u64, String)>, String> {
    let s = std::fs::read_to_string("/proc/kallsyms").ctx("/proc/kallsyms")?;
    let mut syms: Vec<(u64, String)> = s
        .lines()
        .filter(|l| !l.contains('['))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr = u64::from_str_radix(w.next()?, 16).ok()?;
            let kind = w.next()?;
            let name = w.next()?;
            matches!(kind, "t" | "T").then(|| (addr, name.to_string()))
        })
        .collect();
    syms.sort();
    ensure(syms.last().is_some_and(|(a, _)| *a != 0), || {
        "/proc/kallsyms shows no addresses (kptr_restrict)".into()
    })?;
    Ok(syms)
}

/// `[start, end)`: from the first symbol matching `pred` to the symbol after the last one, or
/// `None` when no symbol matches (the code is not built in). The symbols of one object file are
/// contiguous in the kernel's text; a span over 256 KiB means another layout (an error).
fn text_span(
    syms: &[(u64, String)],
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> Result<Option<(u64, u64)>, String> {
    let hits: Vec<usize> = (0..syms.len()).filter(|&i| pred(&syms[i].1)).collect();
    let (Some(&first), Some(&last)) = (hits.first(), hits.last()) else {
        return Ok(None);
    };
    let start = syms[first].0;
    let end = syms[last + 1..]
        .iter()
        .map(|(a, _)| *a)
        .find(|&a| a > syms[last].0)
        .ok_or_else(|| format!("{what}: no symbol after {}", syms[last].1))?;
    ensure(end - start <= 256 << 10, || {
        format!("{what}: text span {start:#x}..{end:#x} over 256 KiB")
    })?;
    Ok(Some((start, end)))
}

/// While it lives, no fault is injected in a stack through `[start, end)` (every attribute).
struct Reject;

impl Reject {
    fn new(what: &str, range: Option<(u64, u64)>) -> Result<Option<Reject>, String> {
        let Some((start, end)) = range else {
            diag(format!(
                "failnth: no {what} in this kernel, nothing to reject"
            ));
            return Ok(None);
        };
        // From here on the guard resets what was written, even halfway.
        let guard = Reject;
        for a in ATTRS {
            for (k, v) in [("reject-start", start), ("reject-end", end)] {
                std::fs::write(format!("{DEBUGFS}/{a}/{k}"), format!("{v:#x}"))
                    .ctx(format!("{a}/{k}"))?;
            }
        }
        diag(format!(
            "failnth: no injection in stacks through {what} ({} bytes of text)",
            end - start
        ));
        Ok(Some(guard))
    }
}

impl Drop for Reject {
    fn drop(&mut self) {
        for a in ATTRS {
            for k in ["reject-start", "reject-end"] {
                let _ = std::fs::write(format!("{DEBUGFS}/{a}/{k}"), "0");
            }
        }
    }
}

/// DMA-API debug is still enabled (nothing in a sweep made it give up).
fn dma_debug_enabled() -> TestResult {
    match std::fs::read_to_string(format!("{DEBUGFS}/dma-api/disabled")) {
        Ok(s) => ensure_eq(s.trim(), "N", "dma-api/disabled"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("dma-api/disabled: {e}")),
    }
}

/// This thread's `/proc/thread-self/fail-nth`.
struct FailNth(File);

impl FailNth {
    fn open() -> Result<Option<FailNth>, String> {
        match File::options()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
        {
            Ok(f) => Ok(Some(FailNth(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("open fail-nth: {e}")),
        }
    }

    /// The N-th injectable call of this thread from now on fails.
    fn arm(&self, n: u32) -> TestResult {
        let s = format!("{n}");
        self.0
            .write_at(s.as_bytes(), 0)
            .map(|_| ())
            .map_err(|e| format!("arm fail-nth {n}: {e}"))
    }

    /// Disarms; returns whether the armed fault was injected.
    fn disarm(&self) -> Result<bool, String> {
        let mut buf = [0u8; 16];
        // Reading copies to user memory, itself an injection point: with 1 left, that copy
        // consumes the fault and fails with EFAULT, so the call under test did not reach it.
        let injected = match self.0.read_at(&mut buf, 0) {
            Ok(n) => {
                let v = std::str::from_utf8(&buf[..n]).unwrap_or("?").trim();
                v.parse::<u32>()
                    .map_err(|_| format!("fail-nth reads {v:?}"))?
                    == 0
            }
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => false,
            Err(e) => return Err(format!("read fail-nth: {e}")),
        };
        // Writing 0 may itself consume a last count left (and fail): either way it ends at 0.
        let _ = self.0.write_at(b"0", 0);
        let n = self
            .0
            .read_at(&mut buf, 0)
            .map_err(|e| format!("re-read fail-nth: {e}"))?;
        let v = std::str::from_utf8(&buf[..n]).unwrap_or("?").trim();
        ensure(v == "0", || format!("fail-nth not disarmed: {v:?}"))?;
        Ok(injected)
    }
}

/// Touches stack below the current frame, so that a call under test does not fault it in.
#[inline(never)]
fn touch_stack() {
    let mut a = [0u8; 64 * 1024];
    std::hint::black_box(&mut a);
}

fn errno(r: &io::Result<()>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn io_ret(ret: isize) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The outcomes of one entry point's sweep.
#[derive(Default)]
struct Tally {
    points: u32,
    failed: std::collections::BTreeMap<String, u32>,
    absorbed: u32,
}

/// The call under test of an entry point.
type Call<S> = Box<dyn Fn(&mut S) -> io::Result<()>>;

/// One entry point: `setup` prepares (uninjected) what the call needs, `call` is the call
/// under test (armed), `after` checks the state after an uninjected success.
struct Entry<S> {
    name: &'static str,
    setup: Box<dyn Fn() -> Result<S, String>>,
    call: Call<S>,
    after: Box<dyn Fn(&mut S) -> TestResult>,
}

fn entry<S>(
    name: &'static str,
    setup: impl Fn() -> Result<S, String> + 'static,
    call: impl Fn(&mut S) -> io::Result<()> + 'static,
    after: impl Fn(&mut S) -> TestResult + 'static,
) -> Entry<S> {
    Entry {
        name,
        setup: Box::new(setup),
        call: Box::new(call),
        after: Box::new(after),
    }
}

/// A verified round trip through edu-dma0's window (the device still works).
fn usable(dev: &Device, seed: u64) -> TestResult {
    let out = pattern(512, seed);
    let mut back = vec![0u8; 512];
    dev.write_window_from(&out, 1000)
        .ctx("round trip: to device")?;
    dev.read_window_into(&mut back, 1000)
        .ctx("round trip: from device")?;
    check_same(&back, &out, "round trip after an injected failure")
}

fn run<S>(fnth: &FailNth, probe: &Device, e: &Entry<S>) -> Result<Tally, String> {
    let mut t = Tally::default();
    for n in 1..=MAX_N {
        let mut s = (e.setup)().map_err(|m| format!("{}: setup: {m}", e.name))?;
        touch_stack();
        fnth.arm(n)?;
        let r = (e.call)(&mut s);
        let injected = fnth.disarm()?;
        let what = format!("{} with fault {n}", e.name);
        if !injected {
            r.ctx(&what)?;
            (e.after)(&mut s).map_err(|m| format!("{what}: {m}"))?;
            t.points = n - 1;
            return Ok(t);
        }
        match errno(&r) {
            None => {
                t.absorbed += 1;
                (e.after)(&mut s).map_err(|m| format!("{what} (absorbed): {m}"))?;
            }
            Some(x) if CLEAN.contains(&x) => {
                *t.failed.entry(errno_name(x)).or_default() += 1;
                // The same call succeeds right after, on the same state.
                (e.call)(&mut s).ctx(format!("{what}: the retry"))?;
                (e.after)(&mut s).map_err(|m| format!("{what}: after the retry: {m}"))?;
            }
            Some(x) => return Err(format!("{what}: {}", errno_name(x))),
        }
        drop(s);
        usable(probe, u64::from(n)).map_err(|m| format!("{what}: {m}"))?;
    }
    Err(format!("{}: more than {MAX_N} injection points", e.name))
}

fn report(name: &str, t: &Tally) {
    let failed: Vec<String> = t.failed.iter().map(|(k, v)| format!("{k} x{v}")).collect();
    diag(format!(
        "failnth {name}: {} injection points (failed: {}; absorbed: {})",
        t.points,
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        },
        t.absorbed
    ));
}

/// An open file with a buffer of `kind` (and a filled user buffer for user-memory calls).
struct Fx {
    dev: Device,
    handle: u32,
    mmap_offset: u64,
    user: Vec<u8>,
    other: u32,
}

fn fx(kind: BufKind) -> Result<Fx, String> {
    let dev = open(0)?;
    let a = dev.alloc(8192, kind).ctx("alloc")?;
    let (handle, mmap_offset) = (a.handle(), a.mmap_offset());
    a.into_handle();
    let b = dev.alloc(8192, kind).ctx("alloc")?.into_handle();
    let mut user = vec![0u8; 4 * 4096];
    fill_pattern(&mut user, 7);
    Ok(Fx {
        dev,
        handle,
        mmap_offset,
        user,
        other: b,
    })
}

/// A streaming [`fx`] whose first buffer is exported as a dma-buf with `flags`.
fn exported_fx(flags: u32) -> Result<(Fx, OwnedFd), String> {
    let f = fx(BufKind::Streaming)?;
    let fd = f.dev.export(f.handle, flags).ctx("export")?;
    Ok((f, fd))
}

fn ioctl<T>(dev: &Device, cmd: u32, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a valid, writable struct of the size `cmd` names.
    unsafe { dev.ioctl_raw(cmd, (arg as *mut T).cast()) }.map(|_| ())
}

fn xfer_req(f: &Fx, flags: u32) -> EduDmaXfer {
    EduDmaXfer {
        handle: f.handle,
        flags,
        buf_offset: 100,
        win_offset: 0,
        count: 4096,
        ..Default::default()
    }
}

fn user_req(f: &Fx, flags: u32) -> EduDmaUserXfer {
    EduDmaUserXfer {
        addr: f.user.as_ptr() as u64 + 100,
        len: 4096,
        win_offset: 0,
        flags,
        timeout_ms: 0,
    }
}

fn mmap(f: &Fx) -> io::Result<usize> {
    // SAFETY: a new shared mapping of our own buffer, placed by the kernel.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.dev.fd(),
            f.mmap_offset as libc::off_t,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p as usize)
    }
}

/// Unmaps what `mmap` mapped.
fn munmap(addr: usize) {
    // SAFETY: `addr` is an 8 KiB mapping made by `mmap` above and used by nobody else.
    unsafe { libc::munmap(addr as *mut libc::c_void, 8192) };
}

/// A mapped buffer: the file, the mapping, and whether the call under test unmapped it.
struct Mapped {
    f: Fx,
    at: Option<usize>,
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if let Some(a) = self.at.take() {
            munmap(a);
        }
    }
}

/// Queues (uninjected) one buffer request of `len` bytes at offset 0 of `f`'s buffer.
fn submit_one(f: &Fx, cookie: u64, len: u32, dir: edu_dma::Dir) -> TestResult {
    let req = [EduDmaReq::buffer_xfer(cookie, f.handle, 0, 0, len, dir)];
    ensure_eq(
        Queue::new(&f.dev).submit_buffers(&req).ctx("submit")?,
        1,
        "queued",
    )
}

fn sweep() -> TestResult {
    let Some(fnth) = setup()? else {
        return Ok(());
    };
    let syms = kernel_text()?;
    let _reject = Reject::new(
        "dma-debug (kernel/dma/debug.c)",
        text_span(&syms, "dma-debug", |n| n.starts_with("debug_dma_"))?,
    )?;
    drop(syms);
    let probe = open(0)?;
    let fact = FACTORIALS_10;
    let path = CString::new(DEV).map_err(|e| e.to_string())?;

    let mut all: Vec<(&str, Tally)> = Vec::new();
    // `EDU_TEST_FAILNTH_ENTRY=<substring>`: sweep only the entry points whose name contains it
    // (a quick check of one entry point; make check sweeps them all).
    let only = std::env::var("EDU_TEST_FAILNTH_ENTRY").ok();
    macro_rules! sweep_one {
        ($e:expr) => {{
            let e = $e;
            if only.as_ref().is_none_or(|o| e.name.contains(o.as_str())) {
                let t = run(&fnth, &probe, &e)?;
                report(e.name, &t);
                all.push((e.name, t));
            }
        }};
    }

    sweep_one!(entry(
        "open",
        || Ok(-1),
        move |fd: &mut i32| {
            // SAFETY: a plain open of the node; `path` is a valid C string.
            *fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            io_ret(*fd as isize)
        },
        |fd: &mut i32| {
            // SAFETY: `fd` was opened above and is closed once.
            let r = unsafe { libc::close(*fd) };
            *fd = -1;
            ensure(r == 0, || "close".into())
        },
    ));
    sweep_one!(entry(
        "ioctl INFO",
        || Ok((open(0)?, EduDmaInfo::default())),
        |(d, i): &mut (Device, EduDmaInfo)| ioctl(d, EDU_DMA_IOC_INFO, i),
        |(_, i)| ensure_eq(i.window_size, 4096, "info.window_size"),
    ));
    sweep_one!(entry(
        "ioctl FACTORIAL",
        || Ok((open(0)?, EduDmaFactorial::default())),
        |(d, r): &mut (Device, EduDmaFactorial)| {
            r.n = 10;
            ioctl(d, EDU_DMA_IOC_FACTORIAL, r)
        },
        move |(_, r)| ensure_eq(r.result, fact, "10!"),
    ));
    for (name, kind) in [
        ("ioctl BUF_ALLOC coherent", BufKind::Coherent),
        ("ioctl BUF_ALLOC streaming", BufKind::Streaming),
    ] {
        sweep_one!(entry(
            name,
            || Ok((open(0)?, EduDmaBufAlloc::default())),
            move |(d, a): &mut (Device, EduDmaBufAlloc)| {
                *a = EduDmaBufAlloc {
                    size: 8192,
                    kind: kind.raw(),
                    ..Default::default()
                };
                ioctl(d, EDU_DMA_IOC_BUF_ALLOC, a)
            },
            |(d, a)| {
                d.free(a.handle).ctx("free the new buffer")?;
                Ok(())
            },
        ));
    }
    sweep_one!(entry(
        "ioctl BUF_FREE",
        || fx(BufKind::Streaming),
        |f: &mut Fx| {
            let mut r = EduDmaBufFree {
                handle: f.handle,
                flags: 0,
            };
            ioctl(&f.dev, EDU_DMA_IOC_BUF_FREE, &mut r)
        },
        |f| expect_errno(f.dev.free(f.handle), libc::ENOENT, "handle freed"),
    ));
    for (name, kind) in [
        ("ioctl BUF_FREE mapped coherent", BufKind::Coherent),
        ("ioctl BUF_FREE mapped streaming", BufKind::Streaming),
    ] {
        sweep_one!(entry(
            name,
            move || {
                let f = fx(kind)?;
                let at = mmap(&f).ctx("mmap")?;
                // SAFETY: `at` is our 8 KiB mapping; touch it before the call under test.
                unsafe { std::ptr::write_volatile(at as *mut u8, 0x5a) };
                Ok(Mapped { f, at: Some(at) })
            },
            |m: &mut Mapped| {
                let mut r = EduDmaBufFree {
                    handle: m.f.handle,
                    flags: 0,
                };
                ioctl(&m.f.dev, EDU_DMA_IOC_BUF_FREE, &mut r)
            },
            |m| {
                expect_errno(m.f.dev.free(m.f.handle), libc::ENOENT, "handle freed")?;
                let at = m.at.ok_or("no mapping")?;
                // SAFETY: the mapping stays valid after BUF_FREE (documented lifetime rule).
                let b = unsafe { std::ptr::read_volatile(at as *const u8) };
                ensure_eq(b, 0x5a, "mapping of a freed buffer")
            },
        ));
    }
    sweep_one!(entry(
        "ioctl BUF_SYNC",
        || fx(BufKind::Streaming),
        |f: &mut Fx| {
            let mut r = EduDmaBufSync {
                handle: f.handle,
                flags: EDU_DMA_SYNC_FOR_DEVICE,
                offset: 100,
                len: 5000,
            };
            ioctl(&f.dev, EDU_DMA_IOC_BUF_SYNC, &mut r)
        },
        |_| Ok(()),
    ));
    for (name, kind, flags) in [
        (
            "ioctl XFER coherent to device",
            BufKind::Coherent,
            EDU_DMA_TO_DEVICE,
        ),
        (
            "ioctl XFER streaming to device",
            BufKind::Streaming,
            EDU_DMA_TO_DEVICE,
        ),
        (
            "ioctl XFER streaming from device",
            BufKind::Streaming,
            EDU_DMA_FROM_DEVICE,
        ),
    ] {
        sweep_one!(entry(
            name,
            move || fx(kind),
            move |f: &mut Fx| {
                let mut r = xfer_req(f, flags);
                ioctl(&f.dev, EDU_DMA_IOC_XFER, &mut r)
            },
            |_| Ok(()),
        ));
    }
    for (name, flags) in [
        ("ioctl USER_XFER to device", EDU_DMA_TO_DEVICE),
        ("ioctl USER_XFER from device", EDU_DMA_FROM_DEVICE),
    ] {
        sweep_one!(entry(
            name,
            || fx(BufKind::Streaming),
            move |f: &mut Fx| {
                let mut r = user_req(f, flags);
                ioctl(&f.dev, EDU_DMA_IOC_USER_XFER, &mut r)
            },
            |_| Ok(()),
        ));
    }
    // Disjoint ranges of the user buffer: [10, 6010) to [8212, 14212); the destination starts as
    // the inverted pattern, so only a copy (the call's or its retry's) makes the check pass.
    const COPY_SRC: usize = 10;
    const COPY_DST: usize = 8192 + 20;
    const COPY_LEN: usize = 6000;
    sweep_one!(entry(
        "ioctl COPY user to user",
        || {
            let mut f = fx(BufKind::Streaming)?;
            fill_pattern_inverted(&mut f.user[COPY_DST..COPY_DST + COPY_LEN], 7);
            Ok(f)
        },
        |f: &mut Fx| {
            let base = f.user.as_ptr() as u64;
            let mut r = EduDmaCopy {
                src: base + COPY_SRC as u64,
                dst: base + COPY_DST as u64,
                len: COPY_LEN as u64,
                ..Default::default()
            };
            ioctl(&f.dev, EDU_DMA_IOC_COPY, &mut r)
        },
        |f| {
            let want = pattern(COPY_SRC + COPY_LEN, 7);
            check_same(
                &f.user[COPY_DST..COPY_DST + COPY_LEN],
                &want[COPY_SRC..],
                "copied bytes",
            )
        },
    ));
    sweep_one!(entry(
        "ioctl COPY buffer to buffer",
        || fx(BufKind::Streaming),
        |f: &mut Fx| {
            let mut r = EduDmaCopy {
                src: 0,
                dst: 100,
                len: 6000,
                flags: EDU_DMA_COPY_SRC_BUF | EDU_DMA_COPY_DST_BUF,
                src_handle: f.handle,
                dst_handle: f.other,
                ..Default::default()
            };
            ioctl(&f.dev, EDU_DMA_IOC_COPY, &mut r)
        },
        |_| Ok(()),
    ));
    for (name, kind) in [
        ("mmap coherent", BufKind::Coherent),
        ("mmap streaming", BufKind::Streaming),
    ] {
        sweep_one!(entry(
            name,
            move || Ok(Mapped {
                f: fx(kind)?,
                at: None
            }),
            |m: &mut Mapped| {
                if let Some(a) = m.at.take() {
                    munmap(a);
                }
                m.at = Some(mmap(&m.f)?);
                Ok(())
            },
            |m| {
                let at = m.at.ok_or("no mapping")?;
                // SAFETY: `at` is our fresh 8 KiB shared mapping, read and written here only.
                unsafe {
                    std::ptr::write_volatile((at + 8191) as *mut u8, 0x3c);
                    ensure_eq(
                        std::ptr::read_volatile((at + 8191) as *const u8),
                        0x3c,
                        "mapped byte",
                    )
                }
            },
        ));
    }
    for (name, write) in [("write", true), ("read", false)] {
        sweep_one!(entry(
            name,
            || fx(BufKind::Streaming),
            move |f: &mut Fx| {
                let p = f.user.as_mut_ptr();
                // SAFETY: `p` points to 4 pages of our own memory; 4096 bytes from +100 fit.
                let r = unsafe {
                    if write {
                        libc::pwrite(f.dev.fd(), p.add(100).cast(), 4096, 0)
                    } else {
                        libc::pread(f.dev.fd(), p.add(100).cast(), 4096, 0)
                    }
                };
                io_ret(r)
            },
            |_| Ok(()),
        ));
    }
    sweep_one!(entry(
        "ioctl BUF_EXPORT",
        || Ok((fx(BufKind::Streaming)?, EduDmaBufExport::default())),
        |(f, r): &mut (Fx, EduDmaBufExport)| {
            *r = EduDmaBufExport {
                handle: f.handle,
                flags: EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR,
                ..Default::default()
            };
            ioctl(&f.dev, EDU_DMA_IOC_BUF_EXPORT, r)
        },
        |(_, r)| {
            ensure(r.fd >= 0, || format!("exported fd {}", r.fd))?;
            // SAFETY: on success the driver installed this fd for us alone; closed once here.
            drop(unsafe { OwnedFd::from_raw_fd(r.fd) });
            Ok(())
        },
    ));
    sweep_one!(entry(
        "mmap dma-buf",
        || {
            let (f, fd) = exported_fx(EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR)?;
            Ok((f, fd, None::<usize>))
        },
        |(_, fd, at): &mut (Fx, OwnedFd, Option<usize>)| {
            if let Some(a) = at.take() {
                munmap(a);
            }
            // SAFETY: a new shared mapping of our own dma-buf, placed by the kernel.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    8192,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            *at = Some(p as usize);
            Ok(())
        },
        |(_, _, at)| {
            let a = at.take().ok_or("no mapping")?;
            // SAFETY: `a` is our fresh 8 KiB mapping of the dma-buf, used here only.
            let b = unsafe {
                std::ptr::write_volatile((a + 4097) as *mut u8, 0xc3);
                std::ptr::read_volatile((a + 4097) as *const u8)
            };
            munmap(a);
            ensure_eq(b, 0xc3, "byte through the dma-buf mapping")
        },
    ));
    sweep_one!(entry(
        "ioctl BUF_IMPORT",
        || {
            let (f, fd) = exported_fx(EDU_DMA_EXPORT_CLOEXEC)?;
            let req = EduDmaBufImport {
                fd: fd.as_raw_fd(),
                ..Default::default()
            };
            Ok((f, fd, open(1)?, req))
        },
        |(_, _, d1, r): &mut (Fx, OwnedFd, Device, EduDmaBufImport)| {
            ioctl(d1, EDU_DMA_IOC_BUF_IMPORT, r)
        },
        |(_, _, d1, r)| {
            ensure_eq(r.size, 8192, "imported size")?;
            d1.free(r.handle).ctx("free the imported handle")?;
            Ok(())
        },
    ));
    sweep_one!(entry(
        "ioctl XFER imported",
        || {
            let (f, fd) = exported_fx(EDU_DMA_EXPORT_CLOEXEC)?;
            let d1 = open(1)?;
            let mut r = EduDmaBufImport {
                fd: fd.as_raw_fd(),
                ..Default::default()
            };
            ioctl(&d1, EDU_DMA_IOC_BUF_IMPORT, &mut r).ctx("import")?;
            Ok((f, d1, r.handle))
        },
        |(_, d1, h): &mut (Fx, Device, u32)| {
            let mut r = EduDmaXfer {
                handle: *h,
                flags: EDU_DMA_TO_DEVICE,
                buf_offset: 100,
                win_offset: 0,
                count: 4096,
                ..Default::default()
            };
            ioctl(d1, EDU_DMA_IOC_XFER, &mut r)
        },
        |_| Ok(()),
    ));
    // The queue: one buffer request per call, so a call either queued it or failed.
    sweep_one!(entry(
        "ioctl SUBMIT",
        || {
            let f = fx(BufKind::Streaming)?;
            let req = [EduDmaReq::buffer_xfer(
                41,
                f.handle,
                100,
                0,
                4096,
                edu_dma::Dir::ToDevice,
            )];
            Ok((f, req, 0usize))
        },
        |(f, req, n): &mut (Fx, [EduDmaReq; 1], usize)| {
            *n = Queue::new(&f.dev).submit_buffers(req)?;
            Ok(())
        },
        |(f, _, n)| {
            ensure_eq(*n, 1, "requests queued")?;
            let c = Queue::new(&f.dev).reap_n(1, 5000).ctx("reap")?;
            ensure_eq(c[0].cookie, 41, "cookie")?;
            ensure_eq(c[0].result(), Ok(()), "status")?;
            ensure_eq(c[0].done, 4096, "bytes done")
        },
    ));
    sweep_one!(entry(
        "ioctl REG_USER",
        || {
            let f = fx(BufKind::Streaming)?;
            let mem = edu_dma::Mapping::anonymous(2 * 4096).ctx("mmap")?;
            Ok((f, mem, EduDmaRegUser::default(), vm_pin_kib()?))
        },
        |(f, mem, r, _): &mut (Fx, edu_dma::Mapping, EduDmaRegUser, u64)| {
            *r = EduDmaRegUser {
                addr: mem.as_ptr() as u64,
                len: 2 * 4096,
                ..Default::default()
            };
            // SAFETY: our own mapping; no request ever writes it.
            unsafe { f.dev.reg_user_raw(r) }
        },
        |(f, _, r, pin0)| {
            ensure(r.id != 0, || "registration id 0".to_string())?;
            ensure_eq(vm_pin_kib()?, *pin0 + 8, "VmPin after REG_USER")?;
            f.dev.unreg_user(r.id).ctx("UNREG_USER")?;
            ensure_eq(vm_pin_kib()?, *pin0, "VmPin after UNREG_USER")
        },
    ));
    sweep_one!(entry(
        "ioctl SUBMIT REG_XFER",
        || {
            let f = fx(BufKind::Streaming)?;
            let mut mem = edu_dma::Mapping::anonymous(2 * 4096).ctx("mmap")?;
            fill_pattern(&mut mem, 43);
            let mut r = EduDmaRegUser {
                addr: mem.as_ptr() as u64,
                len: 2 * 4096,
                ..Default::default()
            };
            // SAFETY: our own mapping; the requests only read it.
            unsafe { f.dev.reg_user_raw(&mut r) }.ctx("REG_USER")?;
            let req = [EduDmaReq::reg_xfer(
                43,
                r.id,
                100,
                0,
                4096,
                edu_dma::Dir::ToDevice,
            )];
            Ok((f, mem, req, 0usize))
        },
        |(f, _, req, n): &mut (Fx, edu_dma::Mapping, [EduDmaReq; 1], usize)| {
            *n = Queue::new(&f.dev).submit_buffers(req)?;
            Ok(())
        },
        |(f, mem, _, n)| {
            ensure_eq(*n, 1, "requests queued")?;
            let c = Queue::new(&f.dev).reap_n(1, 5000).ctx("reap")?;
            ensure_eq(c[0].cookie, 43, "cookie")?;
            ensure_eq(c[0].result(), Ok(()), "status")?;
            ensure_eq(c[0].done, 4096, "bytes done")?;
            let mut back = vec![0u8; 4096];
            f.dev.read_window_into(&mut back, 0).ctx("read window")?;
            check_same(&back, &mem[100..4196], "window after REG_XFER")
        },
    ));
    sweep_one!(entry(
        "ioctl REAP",
        || {
            let f = fx(BufKind::Streaming)?;
            submit_one(&f, 42, 4096, edu_dma::Dir::FromDevice)?;
            Ok((f, [EduDmaCqe::default(); 2], 0usize))
        },
        |(f, out, n): &mut (Fx, [EduDmaCqe; 2], usize)| {
            *n = Queue::new(&f.dev).reap(out, 1, 5000)?;
            Ok(())
        },
        |(_, out, n)| {
            // A reap that failed consumed nothing: the retry still finds the completion.
            ensure_eq(*n, 1, "completions reaped")?;
            ensure_eq(out[0].cookie, 42, "cookie")?;
            ensure_eq(out[0].result(), Ok(()), "status")
        },
    ));
    sweep_one!(entry(
        "ioctl SET_EVENTFD",
        || {
            let f = fx(BufKind::Streaming)?;
            // SAFETY: a plain eventfd(2); the result is checked and owned below.
            let e = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
            ensure(e >= 0, || "eventfd".into())?;
            // SAFETY: `e` is a new fd owned by nobody else.
            Ok((f, unsafe { OwnedFd::from_raw_fd(e) }))
        },
        |(f, e): &mut (Fx, OwnedFd)| Queue::new(&f.dev).set_eventfd(Some(e.as_fd())),
        |(f, e)| {
            submit_one(f, 43, 512, edu_dma::Dir::ToDevice)?;
            Queue::new(&f.dev).reap_n(1, 5000).ctx("reap")?;
            let mut v = [0u8; 8];
            // SAFETY: reads 8 bytes into our own array from our eventfd.
            let r = unsafe { libc::read(e.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
            ensure_eq(r, 8, "eventfd read")?;
            ensure_eq(u64::from_ne_bytes(v), 1, "eventfd count after one request")
        },
    ));
    sweep_one!(entry(
        "close with buffers",
        || {
            let f = fx(BufKind::Streaming)?;
            let fd = f.dev.fd();
            let m = Mapped { f, at: None };
            Ok((Some(m), fd))
        },
        |(m, fd): &mut (Option<Mapped>, i32)| {
            // Leak the `Device`'s file so the raw close below is the only one.
            if let Some(m) = m.take() {
                std::mem::forget(m);
            }
            // SAFETY: `fd` is the file of the forgotten `Device`, closed exactly once here.
            io_ret(unsafe { libc::close(*fd) } as isize)
        },
        |_| Ok(()),
    ));

    // Nothing leaked: the device's whole budget (buf_cap_kib, 8 MiB) allocates again.
    let dev = open(0)?;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(dev.alloc(2 << 20, BufKind::Streaming).ctx(format!(
            "after the sweep: 2 MiB buffer {i} of the 8 MiB cap"
        ))?);
    }
    drop(held);
    let total: u32 = all.iter().map(|(_, t)| t.points).sum();
    diag(format!(
        "failnth: {} entry points, {total} injection points in all",
        all.len()
    ));
    ensure(total > 0, || "no injection point reached at all".into())?;
    dma_debug_enabled()
}

/// 10!
const FACTORIALS_10: u64 = 3_628_800;

/// The PCI address of `/dev/edu-dma1`'s device.
fn edu1_addr() -> Result<String, String> {
    let info = open(1)?.info().ctx("info edu-dma1")?;
    Ok(info.pci_address())
}

fn edu_irq_lines() -> Result<usize, String> {
    let s = std::fs::read_to_string("/proc/interrupts").ctx("/proc/interrupts")?;
    Ok(s.lines().filter(|l| l.contains("edu_dma")).count())
}

fn probe() -> TestResult {
    let Some(fnth) = setup()? else {
        return Ok(());
    };
    let syms = kernel_text()?;
    let _reject = Reject::new(
        "register_irq_proc (kernel/irq/proc.c)",
        text_span(&syms, "register_irq_proc", |n| n == "register_irq_proc")?,
    )?;
    drop(syms);
    let drv = crate::harness::sysfs::DRIVER;
    let addr = edu1_addr()?;
    let irqs = edu_irq_lines()?;
    let rebind = crate::harness::sysfs::unbind(&addr)?;
    let bind = File::options()
        .write(true)
        .open(format!("{drv}/bind"))
        .ctx("open bind")?;
    let bound = || std::path::Path::new(&format!("{drv}/{addr}")).exists();
    let mut t = Tally::default();
    for n in 1..=MAX_N {
        ensure(!bound(), || format!("fault {n}: bound before the bind"))?;
        touch_stack();
        fnth.arm(n)?;
        // SAFETY: a write of our own bytes to the sysfs bind file.
        let r = io_ret(unsafe { libc::write(bind.as_raw_fd(), addr.as_ptr().cast(), addr.len()) });
        let injected = fnth.disarm()?;
        let what = format!("bind with fault {n}");
        if !injected || r.is_ok() {
            r.ctx(&what)?;
            ensure(bound(), || format!("{what}: not bound after success"))?;
            if !injected {
                t.points = n - 1;
                break;
            }
            t.absorbed += 1;
            std::fs::write(format!("{drv}/unbind"), &addr).ctx(&what)?;
            continue;
        }
        let e = errno(&r).unwrap_or(-1);
        // `pci_request_region` reports any failure, its allocation's too, as EBUSY.
        ensure(CLEAN.contains(&e) || e == libc::EBUSY, || {
            format!("{what}: {}", errno_name(e))
        })?;
        *t.failed.entry(errno_name(e)).or_default() += 1;
        // A failed probe leaves nothing behind.
        ensure(!bound(), || {
            format!("{what}: failed ({}) but bound", errno_name(e))
        })?;
        ensure(!std::path::Path::new("/dev/edu-dma1").exists(), || {
            format!("{what}: /dev/edu-dma1 left behind")
        })?;
        ensure_eq(
            edu_irq_lines()?,
            irqs - 1,
            &format!("{what}: edu_dma interrupts"),
        )?;
        if n == MAX_N {
            return Err(format!("bind: more than {MAX_N} injection points"));
        }
    }
    report("probe (sysfs bind)", &t);
    // Bound again: the guard's own bind (on the way out of a failure) is not needed.
    drop(rebind);
    // The device works after all that.
    let dev = open(1)?;
    ensure_eq(dev.factorial(5).ctx("5! on edu-dma1")?, 120, "5!")?;
    ensure_eq(edu_irq_lines()?, irqs, "edu_dma interrupts after the sweep")?;
    dma_debug_enabled()
}
