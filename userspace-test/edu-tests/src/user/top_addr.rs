//! Group `user`: user ranges in the last page of the 64-bit address space (not wrapping) are
//! memory that cannot be pinned, so USER_XFER and COPY must answer EFAULT like for any other
//! unmapped range (the header: "EFAULT: unmapped ..."), not an errno of the pinning internals.

use edu_dma::uapi::*;

use crate::harness::*;

pub fn xfer_top_of_address_space() -> TestResult {
    let dev = open(0)?;
    let mut ok = vec![0u8; 4096];
    let okp = ok.as_mut_ptr() as u64;
    let mut failures = Vec::new();
    for (k, &addr) in [
        u64::MAX - 4095,
        u64::MAX - 100,
        0xffff_ffff_ffff_f000 - 4096,
    ]
    .iter()
    .enumerate()
    {
        let len = 64u32;
        for flags in [EDU_DMA_TO_DEVICE, EDU_DMA_FROM_DEVICE] {
            let req = EduDmaUserXfer {
                addr,
                len,
                win_offset: 0,
                flags,
                timeout_ms: 0,
            };
            // SAFETY: the address is not mapped; the kernel must refuse it.
            let r = unsafe { dev.user_xfer_raw(&req) };
            if let Err(e) = expect_errno(
                r,
                libc::EFAULT,
                &format!("USER_XFER addr {addr:#x} flags {flags}"),
            ) {
                failures.push(e);
            }
        }
        let mut req = EduDmaCopy {
            src: addr,
            dst: okp,
            len: u64::from(len),
            ..Default::default()
        };
        // SAFETY: `ok` is not borrowed during the call.
        let r = unsafe { dev.copy_raw(&mut req) };
        if let Err(e) = expect_errno(r, libc::EFAULT, &format!("COPY src {addr:#x} (case {k})")) {
            failures.push(e);
        }
    }
    ensure(failures.is_empty(), || failures.join("; "))
}
