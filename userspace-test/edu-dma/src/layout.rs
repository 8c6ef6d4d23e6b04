//! `uapi_layout_report()`: the uapi layout as seen from Rust, one `NAME VALUE` per line, in the
//! exact format and order printed by `uapi-check/uapi_check.c` from the C header.

use crate::uapi::*;
use core::fmt::Write as _;
use core::mem::{align_of, offset_of, size_of, size_of_val};

fn line(out: &mut String, name: &str, value: impl core::fmt::Display) {
    let _ = writeln!(out, "{name} {value}");
}

/// Struct size and alignment, then every field's offset and size. The field list must be
/// exhaustive: the destructuring `let` below fails to compile if a Rust field is missing.
macro_rules! struct_layout {
    ($out:expr, $cname:literal, $ty:ident { $($field:ident),* $(,)? }) => {{
        let v = $ty::default();
        let $ty { $($field: _),* } = v;
        line($out, concat!("sizeof ", $cname), size_of::<$ty>());
        line($out, concat!("alignof ", $cname), align_of::<$ty>());
        $(
            line($out, concat!("offsetof ", $cname, ".", stringify!($field)), offset_of!($ty, $field));
            line($out, concat!("sizeof ", $cname, ".", stringify!($field)), size_of_val(&v.$field));
        )*
    }};
}

macro_rules! ioctls {
    ($out:expr, $($name:ident),* $(,)?) => {{
        $( line($out, stringify!($name), format_args!("{:#010x}", $name)); )*
    }};
}

macro_rules! constants {
    ($out:expr, $($name:ident),* $(,)?) => {{
        $( line($out, stringify!($name), $name); )*
    }};
}

/// Sizes, alignments, field offsets and sizes of every uapi struct, every ioctl number (hex) and
/// every constant (decimal), one `NAME VALUE` per line.
pub fn uapi_layout_report() -> String {
    let mut s = String::new();
    let o = &mut s;
    struct_layout!(
        o,
        "edu_dma_info",
        EduDmaInfo {
            ident,
            version_major,
            version_minor,
            instance,
            dma_mask_bits,
            irq_mode,
            pci_domain,
            pci_bus,
            pci_slot,
            pci_func,
            window_size,
            dma_coherent,
            irq_count,
            dma_count,
            dma_bytes,
            fact_count,
            timeout_count,
            reserved,
        }
    );
    struct_layout!(o, "edu_dma_factorial", EduDmaFactorial { n, flags, result });
    struct_layout!(
        o,
        "edu_dma_buf_alloc",
        EduDmaBufAlloc {
            size,
            kind,
            flags,
            handle,
            reserved,
            mmap_offset,
        }
    );
    struct_layout!(o, "edu_dma_buf_free", EduDmaBufFree { handle, flags });
    struct_layout!(
        o,
        "edu_dma_buf_export",
        EduDmaBufExport {
            handle,
            flags,
            fd,
            reserved,
        }
    );
    struct_layout!(
        o,
        "edu_dma_buf_import",
        EduDmaBufImport {
            fd,
            flags,
            handle,
            reserved,
            size,
        }
    );
    struct_layout!(
        o,
        "edu_dma_buf_sync",
        EduDmaBufSync {
            handle,
            flags,
            offset,
            len
        }
    );
    struct_layout!(
        o,
        "edu_dma_xfer",
        EduDmaXfer {
            handle,
            flags,
            buf_offset,
            win_offset,
            count,
            timeout_ms,
            reserved,
        }
    );
    struct_layout!(
        o,
        "edu_dma_user_xfer",
        EduDmaUserXfer {
            addr,
            len,
            win_offset,
            flags,
            timeout_ms,
        }
    );
    struct_layout!(
        o,
        "edu_dma_copy",
        EduDmaCopy {
            src,
            dst,
            len,
            done,
            flags,
            timeout_ms,
            src_handle,
            dst_handle,
        }
    );
    struct_layout!(o, "edu_dma_fault", EduDmaFault { drop_irqs, flags });
    struct_layout!(
        o,
        "edu_dma_req",
        EduDmaReq {
            cookie,
            op,
            flags,
            addr,
            dst,
            len,
            handle,
            dst_handle,
            win_offset,
            timeout_ms,
            reserved,
        }
    );
    struct_layout!(o, "edu_dma_submit", EduDmaSubmit { reqs, count, flags });
    struct_layout!(
        o,
        "edu_dma_cqe",
        EduDmaCqe {
            cookie,
            status,
            reserved,
            done,
        }
    );
    struct_layout!(
        o,
        "edu_dma_reap",
        EduDmaReap {
            cqes,
            max,
            min,
            timeout_ms,
            flags,
        }
    );
    struct_layout!(
        o,
        "edu_dma_reg_user",
        EduDmaRegUser {
            addr,
            len,
            flags,
            id,
        }
    );
    struct_layout!(o, "edu_dma_unreg_user", EduDmaUnregUser { id, flags });
    struct_layout!(o, "edu_dma_set_eventfd", EduDmaSetEventfd { fd, flags });
    ioctls!(
        o,
        EDU_DMA_IOC_INFO,
        EDU_DMA_IOC_FACTORIAL,
        EDU_DMA_IOC_BUF_ALLOC,
        EDU_DMA_IOC_BUF_FREE,
        EDU_DMA_IOC_BUF_SYNC,
        EDU_DMA_IOC_BUF_EXPORT,
        EDU_DMA_IOC_BUF_IMPORT,
        EDU_DMA_IOC_XFER,
        EDU_DMA_IOC_USER_XFER,
        EDU_DMA_IOC_COPY,
        EDU_DMA_IOC_FAULT,
        EDU_DMA_IOC_SUBMIT,
        EDU_DMA_IOC_REAP,
        EDU_DMA_IOC_SET_EVENTFD,
        EDU_DMA_IOC_REG_USER,
        EDU_DMA_IOC_UNREG_USER,
        EDU_DMA_URING_CMD_XFER,
    );
    constants!(
        o,
        EDU_DMA_IOC_MAGIC,
        EDU_DMA_WINDOW_SIZE,
        EDU_DMA_IRQ_INTX,
        EDU_DMA_IRQ_MSI,
        EDU_DMA_BUF_COHERENT,
        EDU_DMA_BUF_STREAMING,
        EDU_DMA_EXPORT_CLOEXEC,
        EDU_DMA_EXPORT_RDWR,
        EDU_DMA_SYNC_FOR_DEVICE,
        EDU_DMA_SYNC_FOR_CPU,
        EDU_DMA_TO_DEVICE,
        EDU_DMA_FROM_DEVICE,
        EDU_DMA_COPY_SRC_BUF,
        EDU_DMA_COPY_DST_BUF,
        EDU_DMA_OP_XFER,
        EDU_DMA_OP_USER_XFER,
        EDU_DMA_OP_COPY,
        EDU_DMA_OP_REG_XFER,
        EDU_DMA_REG_MAX,
        EDU_DMA_REG_MAX_LEN,
        EDU_DMA_REAP_NONBLOCK,
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(report: &str, name: &str) -> String {
        report
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{name} missing from report"))
    }

    #[test]
    fn report_has_expected_lines() {
        let r = uapi_layout_report();
        assert_eq!(value(&r, "sizeof edu_dma_info"), "112");
        assert_eq!(value(&r, "offsetof edu_dma_info.ident"), "0");
        assert_eq!(value(&r, "offsetof edu_dma_info.irq_count"), "48");
        assert_eq!(value(&r, "sizeof edu_dma_info.reserved"), "24");
        assert_eq!(value(&r, "sizeof edu_dma_factorial"), "16");
        assert_eq!(value(&r, "sizeof edu_dma_buf_alloc"), "32");
        assert_eq!(value(&r, "sizeof edu_dma_buf_free"), "8");
        assert_eq!(value(&r, "sizeof edu_dma_buf_sync"), "24");
        assert_eq!(value(&r, "sizeof edu_dma_buf_export"), "16");
        assert_eq!(value(&r, "offsetof edu_dma_buf_export.fd"), "8");
        assert_eq!(value(&r, "sizeof edu_dma_xfer"), "32");
        assert_eq!(value(&r, "sizeof edu_dma_user_xfer"), "24");
        assert_eq!(value(&r, "sizeof edu_dma_copy"), "48");
        assert_eq!(value(&r, "sizeof edu_dma_fault"), "8");
        assert_eq!(value(&r, "sizeof edu_dma_req"), "64");
        assert_eq!(value(&r, "sizeof edu_dma_submit"), "16");
        assert_eq!(value(&r, "sizeof edu_dma_cqe"), "24");
        assert_eq!(value(&r, "sizeof edu_dma_reap"), "24");
        assert_eq!(value(&r, "EDU_DMA_IOC_INFO"), "0x8070ed00");
        assert_eq!(value(&r, "EDU_DMA_IOC_MAGIC"), "237");
        for l in r.lines() {
            let (_, v) = l.rsplit_once(' ').expect("NAME VALUE");
            let ok = v.parse::<u64>().is_ok()
                || v.strip_prefix("0x")
                    .is_some_and(|h| u64::from_str_radix(h, 16).is_ok());
            assert!(ok, "bad value in {l:?}");
        }
    }

    /// Cross-check the shared ioctl encoder against nix's independent one.
    #[test]
    fn ioctl_numbers_match_nix() {
        use nix::{request_code_read as r, request_code_readwrite as rw, request_code_write as w};
        let m = EDU_DMA_IOC_MAGIC as u8;
        let cases: [(u32, u64); 17] = [
            (
                EDU_DMA_IOC_INFO,
                r!(m, 0x00, size_of::<EduDmaInfo>()) as u64,
            ),
            (
                EDU_DMA_IOC_FACTORIAL,
                rw!(m, 0x01, size_of::<EduDmaFactorial>()) as u64,
            ),
            (
                EDU_DMA_IOC_BUF_ALLOC,
                rw!(m, 0x10, size_of::<EduDmaBufAlloc>()) as u64,
            ),
            (
                EDU_DMA_IOC_BUF_FREE,
                w!(m, 0x11, size_of::<EduDmaBufFree>()) as u64,
            ),
            (
                EDU_DMA_IOC_BUF_SYNC,
                w!(m, 0x12, size_of::<EduDmaBufSync>()) as u64,
            ),
            (
                EDU_DMA_IOC_BUF_EXPORT,
                rw!(m, 0x13, size_of::<EduDmaBufExport>()) as u64,
            ),
            (
                EDU_DMA_IOC_BUF_IMPORT,
                rw!(m, 0x14, size_of::<EduDmaBufImport>()) as u64,
            ),
            (
                EDU_DMA_IOC_XFER,
                w!(m, 0x20, size_of::<EduDmaXfer>()) as u64,
            ),
            (
                EDU_DMA_IOC_USER_XFER,
                w!(m, 0x21, size_of::<EduDmaUserXfer>()) as u64,
            ),
            (
                EDU_DMA_IOC_COPY,
                rw!(m, 0x22, size_of::<EduDmaCopy>()) as u64,
            ),
            (
                EDU_DMA_IOC_FAULT,
                w!(m, 0x30, size_of::<EduDmaFault>()) as u64,
            ),
            (
                EDU_DMA_IOC_SUBMIT,
                w!(m, 0x40, size_of::<EduDmaSubmit>()) as u64,
            ),
            (
                EDU_DMA_IOC_REAP,
                w!(m, 0x41, size_of::<EduDmaReap>()) as u64,
            ),
            (
                EDU_DMA_IOC_SET_EVENTFD,
                w!(m, 0x42, size_of::<EduDmaSetEventfd>()) as u64,
            ),
            (
                EDU_DMA_IOC_REG_USER,
                rw!(m, 0x43, size_of::<EduDmaRegUser>()) as u64,
            ),
            (
                EDU_DMA_IOC_UNREG_USER,
                w!(m, 0x44, size_of::<EduDmaUnregUser>()) as u64,
            ),
            (
                EDU_DMA_URING_CMD_XFER,
                w!(m, 0x48, size_of::<EduDmaReq>()) as u64,
            ),
        ];
        for (ours, theirs) in cases {
            assert_eq!(ours as u64, theirs, "{ours:#x}");
        }
    }
}
