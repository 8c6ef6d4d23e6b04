//! Group `core`: nodes, INFO, FACTORIAL, bad ioctls, concurrency.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use edu_dma::uapi::*;
use edu_dma::{Device, Info};

use crate::harness::*;

pub fn tests() -> Vec<Test> {
    vec![
        test("nodes", nodes),
        test("info", info),
        test("factorial", factorial),
        test("factorial_overflow", factorial_overflow),
        test("counters", counters),
        test("unknown_ioctl", unknown_ioctl),
        test("bad_pointer", bad_pointer),
        test("factorial_flags", factorial_flags),
        test("concurrency", concurrency),
    ]
}

/// `_IOC(dir, type, nr, size)` for made-up ioctl numbers.
pub fn ioc(dir: u32, ty: u32, nr: u32, size: u32) -> u32 {
    (dir << 30) | (size << 16) | (ty << 8) | nr
}
const IOC_NONE: u32 = 0;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

const FACTORIALS: [u64; 13] = [
    1, 1, 2, 6, 24, 120, 720, 5040, 40320, 362880, 3628800, 39916800, 479001600,
];

fn nodes() -> TestResult {
    for n in 0..2 {
        let p = Device::instance_path(n);
        let md = std::fs::metadata(&p).ctx(format!("stat {}", p.display()))?;
        ensure(md.file_type().is_char_device(), || {
            format!("{} is not a character device", p.display())
        })?;
        let mode = md.permissions().mode() & 0o7777;
        ensure(mode == 0o600, || {
            format!("{}: mode {mode:04o}, expected 0600", p.display())
        })?;
    }
    let list = Device::list().ctx("list /dev")?;
    diag(format!("nodes: {list:?}"));
    for n in 0..2 {
        ensure(list.contains(&Device::instance_path(n)), || {
            format!("Device::list() lacks edu-dma{n}: {list:?}")
        })?;
    }
    Ok(())
}

fn check_info(n: u32, i: &Info) -> TestResult {
    diag(format!(
        "edu-dma{n}: ident {:#010x} instance {} pci {} irq {} mask {} window {}",
        i.ident,
        i.instance,
        i.pci_address(),
        i.irq_mode_name(),
        i.dma_mask_bits,
        i.window_size
    ));
    ensure_eq(i.ident, 0x0100_00ed, "ident")?;
    ensure_eq(i.version_major, 1, "version_major")?;
    ensure_eq(i.version_minor, 0, "version_minor")?;
    ensure_eq(i.instance, n, "instance (N of /dev/edu-dma<N>)")?;
    ensure_eq(i.window_size, EDU_DMA_WINDOW_SIZE, "window_size")?;
    ensure_eq(i.dma_mask_bits, expected_dma_bits()?, "dma_mask_bits")?;
    ensure(
        i.irq_mode == EDU_DMA_IRQ_MSI || i.irq_mode == EDU_DMA_IRQ_INTX,
        || format!("irq_mode {} is neither MSI nor INTx", i.irq_mode),
    )?;
    if let Ok(want) = std::env::var("EDU_TEST_EXPECT_IRQ") {
        let want = match want.to_ascii_lowercase().as_str() {
            "msi" => EDU_DMA_IRQ_MSI,
            "intx" => EDU_DMA_IRQ_INTX,
            other => return Err(format!("EDU_TEST_EXPECT_IRQ={other:?}: use msi or intx")),
        };
        ensure_eq(i.irq_mode, want, "irq_mode (EDU_TEST_EXPECT_IRQ)")?;
    }
    ensure_eq(
        i.dma_coherent,
        expected_coherent()?,
        "dma_coherent (EDU_TEST_EXPECT_COHERENT)",
    )?;
    ensure_eq(i.reserved, [0; 3], "reserved")?;
    Ok(())
}

/// The DMA mask width `core.info` requires: `EDU_TEST_EXPECT_DMA_BITS` (28..=64), default 28
/// (the module's default `dma_bits`).
fn expected_dma_bits() -> Result<u32, String> {
    match std::env::var("EDU_TEST_EXPECT_DMA_BITS") {
        Err(_) => Ok(28),
        Ok(v) => match v.trim().parse::<u32>() {
            Ok(n) if (28..=64).contains(&n) => Ok(n),
            _ => Err(format!(
                "EDU_TEST_EXPECT_DMA_BITS={v:?}: use a number in 28..=64"
            )),
        },
    }
}

/// The `dma_coherent` value `core.info` requires: `EDU_TEST_EXPECT_COHERENT` (1 or 0), default 1
/// (x86-64 and arm64 virt's own device tree snoop caches; the arm64 non-coherent boot sets 0).
fn expected_coherent() -> Result<u32, String> {
    match std::env::var("EDU_TEST_EXPECT_COHERENT").as_deref() {
        Err(_) | Ok("1") => Ok(1),
        Ok("0") => Ok(0),
        Ok(v) => Err(format!("EDU_TEST_EXPECT_COHERENT={v:?}: use 1 or 0")),
    }
}

fn info() -> TestResult {
    let i0 = open(0)?.info().ctx("info edu-dma0")?;
    let i1 = open(1)?.info().ctx("info edu-dma1")?;
    check_info(0, &i0).map_err(|e| format!("edu-dma0: {e}"))?;
    check_info(1, &i1).map_err(|e| format!("edu-dma1: {e}"))?;
    ensure(i0.instance != i1.instance, || "instances equal".to_string())?;
    ensure(i0.pci_address() != i1.pci_address(), || {
        format!("both devices claim PCI address {}", i0.pci_address())
    })?;
    Ok(())
}

fn factorial() -> TestResult {
    for d in 0..2 {
        let dev = open(d)?;
        for (n, &want) in FACTORIALS.iter().enumerate() {
            let got = dev.factorial(n as u32).ctx(format!("edu-dma{d}: {n}!"))?;
            ensure_eq(got, want, &format!("edu-dma{d}: {n}!"))?;
        }
    }
    Ok(())
}

fn factorial_overflow() -> TestResult {
    for d in 0..2 {
        let dev = open(d)?;
        for n in [13, 14, 100, u32::MAX] {
            expect_errno(
                dev.factorial(n),
                libc::EOVERFLOW,
                &format!("edu-dma{d}: {n}!"),
            )?;
        }
        // The device still works afterwards.
        ensure_eq(
            dev.factorial(12).ctx("12!")?,
            FACTORIALS[12],
            "12! after overflow",
        )?;
    }
    Ok(())
}

fn counters() -> TestResult {
    for d in 0..2 {
        let dev = open(d)?;
        let before = dev.info().ctx("info")?;
        for n in [3, 5, 7] {
            dev.factorial(n).ctx(format!("{n}!"))?;
        }
        let after = dev.info().ctx("info")?;
        ensure_eq(
            after.fact_count,
            before.fact_count + 3,
            &format!("edu-dma{d}: fact_count after 3 factorials"),
        )?;
        ensure(after.irq_count >= before.irq_count + 3, || {
            format!(
                "edu-dma{d}: irq_count {} -> {} after 3 factorials",
                before.irq_count, after.irq_count
            )
        })?;
    }
    Ok(())
}

fn unknown_ioctl() -> TestResult {
    let dev = open(0)?;
    // Room for any size the kernel could copy, so that EFAULT cannot mask ENOTTY.
    let mut room = [0u64; 1024];
    let arg = room.as_mut_ptr().cast();
    let info_size = std::mem::size_of::<EduDmaInfo>() as u32;
    let cases = [
        ("_IO(0xED, 0x7f)", ioc(IOC_NONE, 0xED, 0x7f, 0)),
        ("_IOR(0xED, 0x7f, 8)", ioc(IOC_READ, 0xED, 0x7f, 8)),
        ("INFO with size-8", ioc(IOC_READ, 0xED, 0x00, info_size - 8)),
        ("INFO with size+8", ioc(IOC_READ, 0xED, 0x00, info_size + 8)),
        ("INFO as _IOW", ioc(IOC_WRITE, 0xED, 0x00, info_size)),
        ("INFO as _IO", ioc(IOC_NONE, 0xED, 0x00, 0)),
        (
            "INFO with type 'x'",
            ioc(IOC_READ, b'x' as u32, 0x00, info_size),
        ),
        (
            "FACTORIAL with size 8",
            ioc(IOC_READ | IOC_WRITE, 0xED, 0x01, 8),
        ),
        ("XFER as _IOWR", ioc(IOC_READ | IOC_WRITE, 0xED, 0x20, 32)),
    ];
    for (what, cmd) in cases {
        // SAFETY: `arg` points to 8 KiB of writable memory.
        let r = unsafe { dev.ioctl_raw(cmd, arg) };
        expect_errno(r, libc::ENOTTY, &format!("{what} ({cmd:#010x})"))?;
    }
    Ok(())
}

fn bad_pointer() -> TestResult {
    let dev = open(0)?;
    let unmapped = unmapped_addr()?;
    let ro = Anon::with(page(), libc::PROT_READ, 0).ctx("mmap PROT_READ")?;
    for (what, addr) in [("8", 8u64), ("unmapped", unmapped), ("NULL", 0)] {
        for (name, cmd) in [
            ("INFO", EDU_DMA_IOC_INFO),
            ("FACTORIAL", EDU_DMA_IOC_FACTORIAL),
            ("BUF_ALLOC", EDU_DMA_IOC_BUF_ALLOC),
            ("XFER", EDU_DMA_IOC_XFER),
            ("COPY", EDU_DMA_IOC_COPY),
        ] {
            // SAFETY: deliberately invalid pointer; the kernel must refuse it.
            let r = unsafe { dev.ioctl_raw(cmd, addr as *mut _) };
            expect_errno(r, libc::EFAULT, &format!("{name} with pointer {what}"))?;
        }
    }
    // INFO writes its argument: a read-only page is a bad pointer too.
    // SAFETY: the kernel must refuse to write a read-only page.
    let r = unsafe { dev.ioctl_raw(EDU_DMA_IOC_INFO, ro.ptr.as_ptr().cast()) };
    expect_errno(r, libc::EFAULT, "INFO into a read-only page")?;
    Ok(())
}

fn factorial_flags() -> TestResult {
    let dev = open(0)?;
    for flags in [1u32, 2, 0x8000_0000] {
        let mut req = EduDmaFactorial {
            n: 5,
            flags,
            result: 0,
        };
        expect_errno(
            dev.factorial_raw(&mut req),
            libc::EINVAL,
            &format!("flags {flags:#x}"),
        )?;
    }
    Ok(())
}

fn concurrency() -> TestResult {
    let devs = [open(0)?, open(1)?];
    let errors: Vec<String> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (d, dev) in devs.iter().enumerate() {
            for t in 0..4u32 {
                handles.push(s.spawn(move || -> TestResult {
                    for i in 0..20u32 {
                        let n = (t * 3 + i) % 13;
                        let got = dev
                            .factorial(n)
                            .ctx(format!("edu-dma{d} thread {t}: {n}!"))?;
                        ensure_eq(
                            got,
                            FACTORIALS[n as usize],
                            &format!("edu-dma{d} thread {t}: {n}!"),
                        )?;
                    }
                    Ok(())
                }));
            }
        }
        handles
            .into_iter()
            .filter_map(|h| match h.join() {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(_) => Some("a thread panicked".to_string()),
            })
            .collect()
    });
    ensure(errors.is_empty(), || errors.join("; "))
}
