// SPDX-License-Identifier: GPL-2.0

//! The device's idle gaps between commands: for each DMA command started after a completion
//! interrupt, the time from that interrupt (taken once the hard handler holds the engine lock)
//! to the moment the next command was programmed (after its `DMA_CMD` write). With the queue the
//! handler programs the next command itself, so a gap is the handler's own work; a synchronous
//! caller that issues one command per call adds the wakeup, the return to userspace and the next
//! call. Also the time the handler spends in the engine (completing, waking, starting the next
//! command), summed: the interrupt's share of the CPU time per command. Read through debugfs,
//! `edu-dma<N>/gaps`, where writing `on` clears them and starts the recording and `off` clears
//! and stops it (off by default: two clock reads per interrupt); `edu-bench gaps` reports their
//! percentiles (docs/performance.md).
//!
//! A ring of the last [`GAP_SAMPLES`] gaps, updated under the engine lock. A command that follows no recorded interrupt (the first after a clear, one
//! after a watchdog or cancel completion) records no gap.
//!
//! This file knows no kernel type and allocates nothing, so it is shared verbatim with the
//! userspace library (`#[path]`, like `split.rs`) and unit-tested there by `cargo test`.

// In the module these items are crate-internal; in the userspace library they are public API.
#![allow(unreachable_pub)]

use core::fmt::{Result, Write};

/// Gaps kept (the last ones recorded).
pub const GAP_SAMPLES: usize = 1024;

/// The ring of gaps, in nanoseconds.
pub struct Gaps {
    ring: [u32; GAP_SAMPLES],
    /// Gaps recorded since the last clear (the ring keeps the last [`GAP_SAMPLES`]).
    total: u64,
    /// Interrupts handled since the last clear.
    irqs: u64,
    /// Their time in the engine, ns.
    irq_ns: u64,
}

impl Default for Gaps {
    fn default() -> Self {
        Self::new()
    }
}

impl Gaps {
    /// An empty ring.
    pub const fn new() -> Self {
        Self {
            ring: [0; GAP_SAMPLES],
            total: 0,
            irqs: 0,
            irq_ns: 0,
        }
    }

    /// Records one gap of `ns` nanoseconds (clamped to `0..=u32::MAX`, about 4.3 s).
    pub fn record(&mut self, ns: i64) {
        let v = u32::try_from(ns.max(0)).unwrap_or(u32::MAX);
        let i = (self.total % GAP_SAMPLES as u64) as usize;
        if let Some(slot) = self.ring.get_mut(i) {
            *slot = v;
        }
        self.total += 1;
    }

    /// Adds one interrupt that spent `ns` nanoseconds in the engine.
    pub fn handled(&mut self, ns: i64) {
        self.irqs += 1;
        self.irq_ns += u64::try_from(ns).unwrap_or(0);
    }

    /// Forgets every gap and interrupt.
    pub fn clear(&mut self) {
        *self = Self::new();
    }

    /// Interrupts handled and their summed time (ns) since the last clear.
    pub fn irq_time(&self) -> (u64, u64) {
        (self.irqs, self.irq_ns)
    }

    /// Gaps recorded since the last clear.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The gaps kept, in no particular order.
    pub fn kept(&self) -> &[u32] {
        let n = self.total.min(GAP_SAMPLES as u64) as usize;
        self.ring.get(..n).unwrap_or(&[])
    }
}

/// The debugfs text of `total` gaps of which `kept` are listed, and of `irqs` interrupts that
/// spent `irq_ns` in the engine: a header line `gaps <total> kept <n> irqs <irqs> irq_ns
/// <irq_ns>`, then one gap in nanoseconds per line.
pub fn write_text(
    f: &mut impl Write,
    total: u64,
    kept: &[u32],
    (irqs, irq_ns): (u64, u64),
) -> Result {
    writeln!(
        f,
        "gaps {} kept {} irqs {irqs} irq_ns {irq_ns}",
        total,
        kept.len()
    )?;
    for g in kept {
        writeln!(f, "{g}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last() {
        let mut g = Gaps::new();
        assert_eq!((g.total(), g.kept().len()), (0, 0));
        g.record(-5);
        g.record(i64::MAX);
        assert_eq!(g.kept(), [0, u32::MAX]);
        for i in 0..GAP_SAMPLES as i64 {
            g.record(1000 + i);
        }
        assert_eq!(g.total(), GAP_SAMPLES as u64 + 2);
        let mut kept = g.kept().to_vec();
        kept.sort_unstable();
        let want: Vec<u32> = (1000..1000 + GAP_SAMPLES as u32).collect();
        assert_eq!(kept, want);
        g.handled(40);
        g.handled(-1);
        assert_eq!(g.irq_time(), (2, 40));
        g.clear();
        assert_eq!((g.total(), g.kept().len(), g.irq_time()), (0, 0, (0, 0)));
    }

    #[test]
    fn text() {
        let mut s = String::new();
        write_text(&mut s, 3, &[7, 12_345], (4, 900)).unwrap();
        assert_eq!(s, "gaps 3 kept 2 irqs 4 irq_ns 900\n7\n12345\n");
    }
}
