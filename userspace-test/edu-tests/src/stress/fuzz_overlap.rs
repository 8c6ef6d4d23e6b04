//! `stress.fuzz_overlapping_dest`: the fuzzer's case of issue 10 (seed 1796150319, iteration
//! 1820), made deterministic. A FROM_DEVICE USER_XFER whose destination covers its own argument
//! struct: the driver reads the request, then the device overwrites the struct with window bytes.
//! The fuzzer must judge the request it submitted, not the bytes it finds there afterwards (a
//! request with garbage fields, for which it used to expect EINVAL).

use edu_dma::uapi::*;

use super::fuzz::{Arg, Class, Fuzz, SCRATCH};
use super::*;

const SEED: u64 = 1_796_150_319;

pub fn fuzz_overlapping_dest() -> TestResult {
    let mut scratch = Anon::new(SCRATCH).ctx("mmap scratch")?;
    scratch.bytes_mut().fill(GUARD);
    let base = scratch.addr() as usize;
    let mut f = Fuzz::new(SEED, base)?;
    let dev = open(0)?;
    let window = pattern(4096, SEED);
    dev.write_window_from(&window, 0).ctx("fill the window")?;
    // As in the failing iteration: the struct at scratch + 1025, inside the destination.
    let (at, dst, len, win) = (1025usize, 512usize, 1024u32, 256u32);
    let req = EduDmaUserXfer {
        addr: (base + dst) as u64,
        len,
        win_offset: win,
        flags: EDU_DMA_FROM_DEVICE,
        timeout_ms: 0,
    };
    let n = std::mem::size_of::<EduDmaUserXfer>();
    ensure(at >= dst && at + 128 <= dst + len as usize, || {
        "the struct must lie inside the destination".into()
    })?;
    let mut submitted = [0u8; 128];
    // SAFETY: `req` is plain integers, `n` bytes, and `submitted` has room for them.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (&req as *const EduDmaUserXfer).cast(),
            submitted.as_mut_ptr(),
            n,
        )
    };
    // The fuzzer's own path: place the struct, run the ioctl, read back, judge.
    let e = f.submit(
        0,
        EDU_DMA_IOC_USER_XFER,
        "USER_XFER",
        submitted,
        Some(Class::Valid),
        Arg::Mem(base + at),
    )?;
    ensure_eq(
        e.map(errno_name),
        None,
        "USER_XFER over its own struct: errno",
    )?;
    let page = scratch.bytes();
    let (w, l) = (win as usize, len as usize);
    check_same(
        &page[dst..dst + l],
        &window[w..w + l],
        "destination after USER_XFER",
    )?;
    check_fill(&page[..dst], GUARD, "scratch before the destination")?;
    check_fill(&page[dst + l..], GUARD, "scratch after the destination")?;
    // The case is the one of the issue: the struct now holds window bytes, and judging those
    // (what the fuzzer did before the fix) predicts EINVAL for a request that succeeded.
    let mut after = [0u8; 128];
    after.copy_from_slice(&page[at..at + 128]);
    ensure(after[..n] != submitted[..n], || {
        "the struct was not overwritten".into()
    })?;
    let old = f.after_valid(
        0,
        EDU_DMA_IOC_USER_XFER,
        "USER_XFER",
        &after,
        Some(Class::Valid),
        None,
    );
    ensure(
        old.as_ref()
            .is_err_and(|m| m.contains("got success, expected EINVAL")),
        || format!("judging the overwritten struct should predict EINVAL, got {old:?}"),
    )
}
