//! The kernel's own primitives, measured in the same boot as the driver:
//! - `gup_test` (CONFIG_GUP_TEST, debugfs `gup_test`): pin/unpin of user pages, ABI of
//!   `mm/gup_test.h`;
//! - `dma_map_benchmark` (CONFIG_DMA_MAP_BENCHMARK, debugfs `dma_map_benchmark`, a device bound to
//!   the `dma_map_benchmark` driver): map/unmap, ABI of `include/uapi/linux/map_benchmark.h`.

use std::fs::OpenOptions;
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;

use edu_dma::Mapping;

const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    (3 << 30) | ((size as u32) << 16) | ((ty as u32) << 8) | nr as u32
}

/// `struct gup_test` of mm/gup_test.h.
#[repr(C)]
#[derive(Default)]
struct GupTest {
    get_delta_usec: u64,
    put_delta_usec: u64,
    addr: u64,
    size: u64,
    nr_pages_per_call: u32,
    gup_flags: u32,
    test_flags: u32,
    which_pages: [u32; 8],
}

const PIN_FAST_BENCHMARK: u32 = iowr(b'g', 2, size_of::<GupTest>());
const PIN_BASIC_TEST: u32 = iowr(b'g', 5, size_of::<GupTest>());
/// FOLL_WRITE as tools/testing/selftests/mm/gup_test.c passes it.
const FOLL_WRITE: u32 = 0x01;

/// Which GUP entry point gup_test calls.
#[derive(Clone, Copy)]
pub enum Pin {
    /// `pin_user_pages_fast` (what the driver uses).
    Fast,
    /// `pin_user_pages` under mmap_lock.
    Basic,
}

/// Result of gup_test runs: total pages and total time in guest microseconds.
pub struct GupResult {
    pub pages: u64,
    pub get_us: u64,
    pub put_us: u64,
}

/// Pins `mem` one page per call (`nr_pages_per_call` 1, as the driver pins one 4 KiB segment),
/// then unpins, `rounds` times.
pub fn gup(mem: &Mapping, len: usize, pin: Pin, write: bool, rounds: u32) -> io::Result<GupResult> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/sys/kernel/debug/gup_test")?;
    let cmd = match pin {
        Pin::Fast => PIN_FAST_BENCHMARK,
        Pin::Basic => PIN_BASIC_TEST,
    };
    let mut r = GupResult {
        pages: 0,
        get_us: 0,
        put_us: 0,
    };
    for _ in 0..rounds {
        let mut g = GupTest {
            addr: mem.as_ptr() as u64,
            size: len as u64,
            nr_pages_per_call: 1,
            gup_flags: if write { FOLL_WRITE } else { 0 },
            ..Default::default()
        };
        // SAFETY: `g` is a valid, writable struct gup_test; the kernel pins (and unpins before
        // returning) pages of `mem`, which lives across the call.
        let ret = unsafe { libc::ioctl(f.as_raw_fd(), cmd as libc::Ioctl, &mut g) };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        r.pages += g.size / 4096;
        r.get_us += g.get_delta_usec;
        r.put_us += g.put_delta_usec;
    }
    Ok(r)
}

/// `struct map_benchmark` of include/uapi/linux/map_benchmark.h.
#[repr(C)]
struct MapBenchmark {
    avg_map_100ns: u64,
    map_stddev: u64,
    avg_unmap_100ns: u64,
    unmap_stddev: u64,
    threads: u32,
    seconds: u32,
    node: i32,
    dma_bits: u32,
    dma_dir: u32,
    dma_trans_ns: u32,
    granule: u32,
    map_mode: u8,
    expansion: [u8; 75],
}

const DMA_MAP_BENCHMARK: u32 = iowr(b'd', 1, size_of::<MapBenchmark>());

/// DMA direction of a map benchmark (`DMA_MAP_TO_DEVICE` / `DMA_MAP_FROM_DEVICE`).
#[derive(Clone, Copy)]
pub enum MapDir {
    ToDevice,
    FromDevice,
}

/// Average map and unmap latency and their standard deviations, in ns (the kernel reports
/// units of 100 ns, each sample truncated to that unit).
pub struct MapResult {
    pub map_ns: u64,
    pub map_sd_ns: u64,
    pub unmap_ns: u64,
    pub unmap_sd_ns: u64,
}

/// One thread mapping and unmapping one page (`granule` 1) for `seconds`; `sg`: dma_map_sg of a
/// one-entry list (what the driver does), else dma_map_single. `dma_bits` 28 as the driver.
pub fn dma_map(sg: bool, dir: MapDir, seconds: u32) -> io::Result<MapResult> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/sys/kernel/debug/dma_map_benchmark")?;
    let mut b = MapBenchmark {
        avg_map_100ns: 0,
        map_stddev: 0,
        avg_unmap_100ns: 0,
        unmap_stddev: 0,
        threads: 1,
        seconds,
        node: -1,
        dma_bits: 28,
        dma_dir: match dir {
            MapDir::ToDevice => 1,
            MapDir::FromDevice => 2,
        },
        dma_trans_ns: 0,
        granule: 1,
        map_mode: u8::from(sg),
        expansion: [0; 75],
    };
    // SAFETY: `b` is a valid, writable struct map_benchmark.
    let ret = unsafe { libc::ioctl(f.as_raw_fd(), DMA_MAP_BENCHMARK as libc::Ioctl, &mut b) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(MapResult {
        map_ns: b.avg_map_100ns * 100,
        map_sd_ns: b.map_stddev * 100,
        unmap_ns: b.avg_unmap_100ns * 100,
        unmap_sd_ns: b.unmap_stddev * 100,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_sizes() {
        // sizeof as the C compiler lays the structs out (x86-64).
        assert_eq!(size_of::<GupTest>(), 80);
        assert_eq!(size_of::<MapBenchmark>(), 136);
        assert_eq!(PIN_FAST_BENCHMARK, 0xc050_6702);
        assert_eq!(DMA_MAP_BENCHMARK, 0xc088_6401);
    }
}
