//! Group `unbind` (opt-in, last): hot unbind with an open file and a live mapping (and with a live
//! dma-buf of a buffer, `dmabuf_export`, whose body is in dmabuf.rs), rebind, and module unload
//! refused while a file is open; `queue`, an unbind with two full queues (every request ends
//! exactly once, `ENODEV` unless it completed, reapable after the unbind); `inflight`, an unbind
//! under a running COPY, shares its body with `unplug.inflight` (harness/inflight.rs); `reg`, an
//! unbind with registered user memory in use by queued requests (unmapped, unpinned and uncharged
//! at the unbind; the ids answer `ENODEV` until unregistered). Never unloads the module.

use std::ffi::CString;

use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, Queue};
use nix::kmod::{delete_module, DeleteModuleFlags};

use crate::harness::inflight::{inflight, How};
use crate::harness::sysfs::unbind;
use crate::harness::*;

const MODULE: &str = "edu_dma";

pub fn tests() -> Vec<Test> {
    vec![
        test("unbind_rebind", unbind_rebind),
        test("inflight", || inflight(How::Unbind)),
        test("dmabuf_export", crate::dmabuf::unbind_export),
        test("dmabuf_import_importer", crate::import::unbind_importer),
        test("dmabuf_import_exporter", crate::import::unbind_exporter),
        test("queue", unbind_queue),
        test("reg", unbind_reg),
        test("uring", crate::queue::uring_cmd::unbind_inflight),
        test("rmmod_busy", rmmod_busy),
    ]
}

fn unbind_rebind() -> TestResult {
    let dev = open(1)?;
    let info = dev.info().ctx("info")?;
    let addr = info.pci_address();
    // A coherent and a streaming buffer, mapped and filled, their handles left open.
    let coh = dev
        .alloc(2 * 4096, BufKind::Coherent)
        .ctx("alloc coherent")?;
    let mut cm = coh.map().ctx("mmap coherent")?;
    fill_pattern(&mut cm, 1500);
    coh.into_handle();
    let st = dev
        .alloc(2 * 4096, BufKind::Streaming)
        .ctx("alloc streaming")?;
    let mut sm = st.map().ctx("mmap streaming")?;
    fill_pattern(&mut sm, 1501);
    st.into_handle();
    diag(format!("unbinding {addr}"));
    let mut rebind = unbind(&addr)?;

    expect_errno(
        dev.info(),
        libc::ENODEV,
        "info on a file of the unbound device",
    )?;
    expect_errno(
        dev.factorial(3),
        libc::ENODEV,
        "factorial on the unbound device",
    )?;
    expect_errno(
        dev.alloc(4096, BufKind::Coherent),
        libc::ENODEV,
        "alloc on the unbound device",
    )?;
    // Documented semantics: unbind frees all DMA memory of the device. A coherent mapping is
    // zapped first, so reading it raises SIGBUS (in a child, so only the child dies); streaming
    // pages are ordinary pages that stay valid, with their data, while mapped.
    expect_zapped(&cm, 1500, "after unbind")?;
    check_pattern(&sm, 1501, "streaming mapping after unbind")?;
    // Its pages are refcounted apart from the device mappings that unbind dropped: after a zap
    // the fault handler maps them again.
    match madvise_dontneed(sm.as_ptr() as usize, sm.len()) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => diag("no madvise: zap not tried"),
        r => {
            r.ctx("madvise(MADV_DONTNEED) of the streaming mapping after unbind")?;
            check_pattern(&sm, 1501, "streaming mapping after unbind and a zap")?;
        }
    }
    sm[0] = !sm[0];
    drop(cm);
    drop(sm);
    drop(dev);

    let d = rebind.bind_and_open()?;
    ensure_eq(
        d.factorial(6).ctx("factorial after rebind")?,
        720,
        "6! after rebind",
    )?;
    let i = d.info().ctx("info after rebind")?;
    ensure_eq(i.ident, 0x0100_00ed, "ident after rebind")
}

fn unbind_reg() -> TestResult {
    let pg = page() as u64;
    let mut mem = Anon::new(3 * page()).ctx("mmap")?;
    fill_pattern(&mut mem.bytes_mut()[..page()], 71);
    let pin0 = vm_pin_kib()?;
    let dev = open(1)?;
    let addr = dev.info().ctx("info")?.pci_address();
    let q = Queue::new(&dev);
    let mut ids = [0u32; 2];
    for (i, id) in ids.iter_mut().enumerate() {
        let mut r = EduDmaRegUser {
            addr: mem.addr() + i as u64 * pg,
            len: pg * (1 + i as u64),
            ..Default::default()
        };
        // SAFETY: the test's own memory, read only after the requests writing it are reaped.
        unsafe { dev.reg_user_raw(&mut r) }.ctx("REG_USER")?;
        *id = r.id;
    }
    ensure_eq(
        vm_pin_kib()?,
        pin0 + 3 * pg / 1024,
        "VmPin before the unbind",
    )?;
    let reqs: Vec<_> = (0..4u64)
        .map(|i| EduDmaReq::reg_xfer(i, ids[1], (i % 2) * pg, 0, 4096, Dir::FromDevice))
        .collect();
    ensure_eq(q.submit_buffers(&reqs).ctx("submit")?, 4, "queued")?;
    diag(format!(
        "unbinding {addr} with 2 registrations, 4 requests queued"
    ));
    let mut rebind = unbind(&addr)?;
    // Unbind released the mappings, the pins and the charge, before the reap.
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after the unbind")?;
    let c = crate::queue::reap_all(&q, 4)?;
    for (i, c) in c.iter().enumerate() {
        let ok = c.cookie == i as u64
            && ((c.status == 0 && c.done == 4096) || (c.status == -libc::ENODEV && c.done == 0));
        ensure(ok, || {
            format!(
                "request {i}: cookie {} status {} done {}",
                c.cookie, c.status, c.done
            )
        })?;
    }
    expect_errno(
        q.submit_buffers(&reqs[..1]),
        libc::ENODEV,
        "REG_XFER after unbind",
    )?;
    // The memory is the process's own again, untouched where no request wrote.
    check_pattern(&mem.bytes()[..page()], 71, "registration 0's memory")?;
    dev.unreg_user(ids[0]).ctx("UNREG_USER after unbind")?;
    expect_errno(dev.unreg_user(ids[0]), libc::ENOENT, "UNREG_USER twice")?;
    drop(dev);
    ensure_eq(vm_pin_kib()?, pin0, "VmPin after close")?;
    let d = rebind.bind_and_open()?;
    round_trip_on(&d, 72, "round trip after rebind")
}

fn rmmod_busy() -> TestResult {
    let dev = open(0)?;
    let name = CString::new(MODULE).map_err(|e| e.to_string())?;
    let r = delete_module(&name, DeleteModuleFlags::O_NONBLOCK).map_err(std::io::Error::from);
    // The kernel answers a module in use with EWOULDBLOCK (== EAGAIN): try_stop_module().
    expect_errno(
        r,
        libc::EWOULDBLOCK,
        "delete_module(edu_dma, O_NONBLOCK) with a file open",
    )?;
    // Still loaded and working.
    ensure_eq(
        dev.factorial(5).ctx("factorial after refused unload")?,
        120,
        "5!",
    )?;
    drop(dev);
    ensure(std::path::Path::new("/sys/module/edu_dma").exists(), || {
        "module gone after the refused unload".to_string()
    })
}

fn unbind_queue() -> TestResult {
    let depth = crate::queue::param("queue_depth")? as usize;
    let files = [open(1)?, open(1)?];
    let addr = files[0].info().ctx("info")?.pci_address();
    let mut bufs = Vec::new();
    for (f, dev) in files.iter().enumerate() {
        let buf = dev.alloc(4096, BufKind::Coherent).ctx("alloc")?;
        let reqs: Vec<_> = (0..depth as u64)
            .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), 0, 0, 4096, Dir::ToDevice))
            .collect();
        let n = Queue::new(dev).submit_buffers(&reqs).ctx("submit")?;
        ensure_eq(n, depth, &format!("file {f}: queued"))?;
        bufs.push(buf.into_handle());
    }
    diag(format!(
        "unbinding {addr} with two full queues ({depth} requests each)"
    ));
    // File 0's completions go to a reaper that blocks (no timeout) across the unbind; file 1's
    // are reaped after it.
    let (rebind, blocked) = std::thread::scope(|s| {
        let f0 = &files[0];
        let h = s.spawn(move || Queue::new(f0).reap_n(depth, 0));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let rebind = unbind(&addr);
        let blocked = h.join().map_err(|_| "reaper thread panicked".to_string());
        (rebind, blocked)
    });
    let (mut rebind, mut blocked) = (
        rebind?,
        Some(blocked?.ctx("blocked reap across the unbind")?),
    );
    let mut completed = 0;
    for (f, dev) in files.iter().enumerate() {
        let q = Queue::new(dev);
        let c = match blocked.take() {
            Some(c) => c,
            None => crate::queue::reap_all(&q, depth)?,
        };
        let mut cookies: Vec<u64> = c.iter().map(|c| c.cookie).collect();
        cookies.sort_unstable();
        ensure(cookies == (0..depth as u64).collect::<Vec<_>>(), || {
            format!("file {f}: cookies reaped {cookies:?}, want each of 0..{depth} once")
        })?;
        for c in &c {
            let ok =
                (c.status == 0 && c.done == 4096) || (c.status == -libc::ENODEV && c.done == 0);
            ensure(ok, || {
                format!(
                    "file {f}: cookie {} status {} done {}",
                    c.cookie, c.status, c.done
                )
            })?;
            completed += usize::from(c.status == 0);
        }
        let mut out = [EduDmaCqe::default(); 1];
        expect_errno(
            q.reap_nonblock(&mut out),
            libc::ENODEV,
            "reap after everything was reaped",
        )?;
        expect_errno(
            q.submit_buffers(&[EduDmaReq::buffer_xfer(0, bufs[f], 0, 0, 1, Dir::ToDevice)]),
            libc::ENODEV,
            "submit after unbind",
        )?;
    }
    diag(format!(
        "{completed} request(s) completed before the unbind"
    ));
    // The unbind waits for the running command only, not for the queues (a few complete while
    // the test reaches the unbind; more under the debug kernel, which runs slower).
    ensure(completed < depth, || {
        format!(
            "{completed} of {} requests completed: the unbind drained the queues",
            2 * depth
        )
    })?;
    drop(files);
    let d = rebind.bind_and_open()?;
    let q = Queue::new(&d);
    let buf = d.alloc(4096, BufKind::Coherent).ctx("alloc after rebind")?;
    q.submit_buffers(&[EduDmaReq::buffer_xfer(
        5,
        buf.handle(),
        0,
        0,
        64,
        Dir::ToDevice,
    )])
    .ctx("submit after rebind")?;
    let c = crate::queue::reap_all(&q, 1)?;
    crate::queue::check_cqe(&c[0], 5, 0, 64, "after rebind")
}
