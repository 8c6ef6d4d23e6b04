//! Group `unbind` (opt-in, last): hot unbind with an open file and a live mapping (and with a live
//! dma-buf of a buffer, `dmabuf_export`, whose body is in dmabuf.rs), rebind, and
//! module unload refused while a file is open; `inflight`, an unbind under a running COPY, shares
//! its body with `unplug.inflight` (harness/inflight.rs). Never unloads the module.

use std::ffi::CString;

use edu_dma::BufKind;
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
