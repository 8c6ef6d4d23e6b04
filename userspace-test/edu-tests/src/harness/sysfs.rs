//! Unbinding and rebinding a device through the driver's sysfs files (groups `unbind` and, for
//! finding nodes, `unplug`).

use std::time::{Duration, Instant};

use edu_dma::Device;

use super::{diag, Ctx, TestResult};

/// The driver's sysfs directory.
pub const DRIVER: &str = "/sys/bus/pci/drivers/edu_dma";

/// Unbinds the device at PCI address `addr`; the returned guard binds it again on drop unless
/// [`Rebind::bind`] did.
pub fn unbind(addr: &str) -> Result<Rebind, String> {
    std::fs::write(format!("{DRIVER}/unbind"), addr)
        .ctx(format!("write {addr} to {DRIVER}/unbind"))?;
    Ok(Rebind {
        addr: addr.to_string(),
        done: false,
    })
}

/// Writes the address to the driver's bind on drop unless it is bound again already.
pub struct Rebind {
    addr: String,
    done: bool,
}

impl Rebind {
    /// Binds the device again.
    pub fn bind(&mut self) -> TestResult {
        self.done = true;
        std::fs::write(format!("{DRIVER}/bind"), &self.addr)
            .ctx(format!("write {} to {DRIVER}/bind", self.addr))
    }

    /// Binds the device again and opens its (new) node, waiting up to 5 s for it.
    pub fn bind_and_open(&mut self) -> Result<Device, String> {
        self.bind()?;
        let d = find_node(&self.addr, Duration::from_secs(5))
            .ok_or_else(|| format!("no /dev/edu-dma* node for {} after bind", self.addr))?;
        diag(format!("{} is {} again", self.addr, d.path().display()));
        Ok(d)
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
