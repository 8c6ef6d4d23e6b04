//! Group `unbind` (opt-in, last): hot unbind with an open file and a live mapping, rebind, and
//! module unload refused while a file is open. Never unloads the module.

use std::ffi::CString;
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Device};
use nix::kmod::{delete_module, DeleteModuleFlags};

use crate::harness::*;

const DRIVER: &str = "/sys/bus/pci/drivers/edu_dma";
const MODULE: &str = "edu_dma";

pub fn tests() -> Vec<Test> {
    vec![
        test("unbind_rebind", unbind_rebind),
        test("rmmod_busy", rmmod_busy),
    ]
}

/// Writes `addr` to the driver's bind on drop unless it is bound again already.
struct Rebind {
    addr: String,
    done: bool,
}

impl Rebind {
    fn bind(&mut self) -> TestResult {
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
fn find_node(addr: &str, wait: Duration) -> Option<Device> {
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
    let buf = dev.alloc(2 * 4096, BufKind::Coherent).ctx("alloc")?;
    let mut m = buf.map().ctx("mmap")?;
    fill_pattern(&mut m, 1500);
    buf.into_handle();
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
    // Reading the mapping must not crash: do it in a child so a SIGBUS fails only this test.
    let (ptr, len) = (m.as_ptr() as usize, m.len());
    let st = in_child(|| {
        // SAFETY: the mapping is inherited; reading it is the point of the test.
        let s = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let sum = s.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        std::hint::black_box(sum);
        if check_pattern(s, 1500, "").is_ok() {
            0
        } else {
            3
        }
    })?;
    match st {
        ChildStatus::Exited(0) => diag("mapping still holds the data after unbind"),
        ChildStatus::Exited(3) => diag("mapping readable after unbind, data differ"),
        other => return Err(format!("reading the mapping after unbind: child {other:?}")),
    }
    // Also in this process.
    let sum = m.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    std::hint::black_box(sum);
    drop(m);
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
