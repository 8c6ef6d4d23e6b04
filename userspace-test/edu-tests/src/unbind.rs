//! Group `unbind` (opt-in, last): hot unbind with an open file and a live mapping, rebind, and
//! module unload refused while a file is open. Never unloads the module.

use std::ffi::CString;
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Device};
use nix::kmod::{delete_module, DeleteModuleFlags};

use crate::harness::*;

pub const DRIVER: &str = "/sys/bus/pci/drivers/edu_dma";
const MODULE: &str = "edu_dma";

pub fn tests() -> Vec<Test> {
    vec![
        test("unbind_rebind", unbind_rebind),
        test("inflight", crate::inflight::unbind_inflight),
        test("rmmod_busy", rmmod_busy),
    ]
}

/// Writes `addr` to the driver's bind on drop unless it is bound again already.
pub struct Rebind {
    addr: String,
    done: bool,
}

impl Rebind {
    /// A guard that rebinds `addr` unless [`Rebind::bind`] did.
    pub fn new(addr: &str) -> Rebind {
        Rebind {
            addr: addr.to_string(),
            done: false,
        }
    }

    pub fn bind(&mut self) -> TestResult {
        self.done = true;
        std::fs::write(format!("{DRIVER}/bind"), &self.addr)
            .ctx(format!("write {} to {DRIVER}/bind", self.addr))
    }
}

impl Drop for Rebind {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::write(format!("{DRIVER}/bind"), &self.addr);
        }
    }
}

/// The node of the device at PCI address `addr`, waiting up to `wait` for it to appear.
pub fn find_node(addr: &str, wait: Duration) -> Option<Device> {
    let start = Instant::now();
    loop {
        for p in Device::list().unwrap_or_default() {
            if let Ok(d) = Device::open(&p) {
                if d.info().map(|i| i.pci_address() == addr).unwrap_or(false) {
                    return Some(d);
                }
            }
        }
        if start.elapsed() >= wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
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
    std::fs::write(format!("{DRIVER}/unbind"), &addr)
        .ctx(format!("write {addr} to {DRIVER}/unbind"))?;
    let mut rebind = Rebind {
        addr: addr.clone(),
        done: false,
    };

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
    let (ptr, len) = (cm.as_ptr() as usize, cm.len());
    let status = in_child(|| {
        // SAFETY: the mapping is inherited; touching it is the point of the test.
        let v = unsafe { std::ptr::read_volatile(ptr as *const u8) };
        std::hint::black_box(v);
        0
    })?;
    match status {
        ChildStatus::Signaled(libc::SIGBUS) => diag(format!(
            "coherent mapping of {len} bytes after unbind: SIGBUS"
        )),
        other => {
            return Err(format!(
                "reading a coherent mapping after unbind: child {other:?}, expected SIGBUS"
            ))
        }
    }
    check_pattern(&sm, 1501, "streaming mapping after unbind")?;
    sm[0] = !sm[0];
    drop(cm);
    drop(sm);
    drop(dev);

    rebind.bind()?;
    let d = find_node(&addr, Duration::from_secs(5))
        .ok_or_else(|| format!("no /dev/edu-dma* node for {addr} after bind"))?;
    diag(format!("{addr} is {} again", d.path().display()));
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
