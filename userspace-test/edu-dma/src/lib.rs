//! Safe userspace API of the edu-dma driver (QEMU `edu` PCI device).
//!
//! Every fallible call returns [`std::io::Error`] carrying the exact errno the driver returned
//! (`err.raw_os_error()`). The only errors made on this side are `EINVAL` for arguments that
//! would be memory-unsafe to pass on (a user slice shorter than the requested length) or that do
//! not fit the uapi fields (a length above `u32::MAX` where the field is a `u32`).
//!
//! The uapi definitions are the file shared verbatim with the kernel module; see [`uapi`].
//!
//! Also shared by every tool of the workspace: [`parse_size`]/[`format_size`] (`4K`, `16M`) and
//! the byte [`pattern`](mod@pattern) buffers are filled with and transfers verified against.

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[path = "../../../src/uapi.rs"]
pub mod uapi;

/// The driver's transfer arithmetic (range checks, splitting into device pieces), shared
/// verbatim with the kernel module and unit-tested here by `cargo test`.
#[path = "../../../src/split.rs"]
pub mod split;

/// The driver's ring of command gaps and its debugfs text format, shared verbatim with the
/// kernel module and unit-tested here by `cargo test`.
#[path = "../../../src/gaps.rs"]
pub mod gaps;

pub mod dmabuf;
mod handle;
mod import;
mod layout;
mod mapping;
pub mod pattern;
mod queue;
mod registered;
pub mod size;

pub use handle::{Allocated, Handle, Import};
pub use import::Imported;
pub use layout::uapi_layout_report;
pub use mapping::{page_size, Mapping};
pub use pattern::{
    fill_pattern, fill_pattern_inverted, first_mismatch, pattern, pattern_byte, pattern_mismatch,
};
pub use queue::Queue;
pub use registered::Registered;
pub use size::{format_size, parse_size, SizeError};

use uapi::*;

/// Prefix of every device node: `/dev/edu-dma<N>`.
pub const DEV_PREFIX: &str = "/dev/edu-dma";

/// Kind of a driver-owned DMA buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufKind {
    /// `dma_alloc_coherent` memory; its mapping is `VM_PFNMAP`.
    Coherent,
    /// Ordinary pages mapped with the streaming DMA API; needs [`Device::sync`].
    Streaming,
}

impl BufKind {
    /// The uapi value (`EDU_DMA_BUF_*`).
    pub fn raw(self) -> u32 {
        match self {
            BufKind::Coherent => EDU_DMA_BUF_COHERENT,
            BufKind::Streaming => EDU_DMA_BUF_STREAMING,
        }
    }

    /// Lower-case name (`coherent`, `streaming`).
    pub fn name(self) -> &'static str {
        match self {
            BufKind::Coherent => "coherent",
            BufKind::Streaming => "streaming",
        }
    }
}

/// Direction of a DMA transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// RAM to the device window.
    ToDevice,
    /// Device window to RAM.
    FromDevice,
}

impl Dir {
    /// The uapi value (`EDU_DMA_TO_DEVICE` / `EDU_DMA_FROM_DEVICE`).
    pub fn raw(self) -> u32 {
        match self {
            Dir::ToDevice => EDU_DMA_TO_DEVICE,
            Dir::FromDevice => EDU_DMA_FROM_DEVICE,
        }
    }
}

/// Ownership transfer of a streaming buffer range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncDir {
    /// CPU writes done; hand the range to the device.
    ForDevice,
    /// Device writes done; hand the range back to the CPU.
    ForCpu,
}

impl SyncDir {
    /// The uapi value (`EDU_DMA_SYNC_*`).
    pub fn raw(self) -> u32 {
        match self {
            SyncDir::ForDevice => EDU_DMA_SYNC_FOR_DEVICE,
            SyncDir::ForCpu => EDU_DMA_SYNC_FOR_CPU,
        }
    }
}

/// Source of an [`Device::copy_with`] request.
#[derive(Clone, Copy, Debug)]
pub enum CopySrc<'a> {
    /// User memory.
    User(&'a [u8]),
    /// Offset into a buffer of the same file (`EDU_DMA_COPY_SRC_BUF`).
    Buffer {
        /// Buffer handle.
        handle: u32,
        /// Byte offset in the buffer.
        offset: u64,
    },
}

/// Destination of an [`Device::copy_with`] request.
#[derive(Debug)]
pub enum CopyDst<'a> {
    /// User memory.
    User(&'a mut [u8]),
    /// Offset into a buffer of the same file (`EDU_DMA_COPY_DST_BUF`).
    Buffer {
        /// Buffer handle.
        handle: u32,
        /// Byte offset in the buffer.
        offset: u64,
    },
}

/// Identity and counters of a device (`struct edu_dma_info`).
pub type Info = EduDmaInfo;

impl EduDmaInfo {
    /// The PCI address as sysfs spells it: `DDDD:BB:SS.F`.
    pub fn pci_address(&self) -> String {
        format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.pci_domain, self.pci_bus, self.pci_slot, self.pci_func
        )
    }

    /// Whether the device's DMA is cache-coherent (`dma_coherent`): false where the kernel does
    /// cache maintenance for it (an arm64 PCIe host without `dma-coherent`).
    pub fn is_dma_coherent(&self) -> bool {
        self.dma_coherent != 0
    }

    /// `MSI`, `INTx` or `unknown(N)`.
    pub fn irq_mode_name(&self) -> String {
        match self.irq_mode {
            EDU_DMA_IRQ_MSI => "MSI".to_string(),
            EDU_DMA_IRQ_INTX => "INTx".to_string(),
            n => format!("unknown({n})"),
        }
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

fn u32_len(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| einval())
}

/// The C library's `strerror` text of an errno.
pub fn strerror(errno: i32) -> String {
    // std formats OS errors as "<strerror_r text> (os error N)".
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// Formats an error as `<strerror> (errno N)`, or its plain text when it has no errno.
pub fn describe_error(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(n) => format!("{} (errno {n})", strerror(n)),
        None => err.to_string(),
    }
}

nix::ioctl_read_bad!(ioc_info, EDU_DMA_IOC_INFO, EduDmaInfo);
nix::ioctl_readwrite_bad!(ioc_factorial, EDU_DMA_IOC_FACTORIAL, EduDmaFactorial);
nix::ioctl_readwrite_bad!(ioc_buf_alloc, EDU_DMA_IOC_BUF_ALLOC, EduDmaBufAlloc);
nix::ioctl_write_ptr_bad!(ioc_buf_free, EDU_DMA_IOC_BUF_FREE, EduDmaBufFree);
nix::ioctl_write_ptr_bad!(ioc_buf_sync, EDU_DMA_IOC_BUF_SYNC, EduDmaBufSync);
nix::ioctl_readwrite_bad!(ioc_buf_export, EDU_DMA_IOC_BUF_EXPORT, EduDmaBufExport);
nix::ioctl_write_ptr_bad!(ioc_xfer, EDU_DMA_IOC_XFER, EduDmaXfer);
nix::ioctl_write_ptr_bad!(ioc_user_xfer, EDU_DMA_IOC_USER_XFER, EduDmaUserXfer);
nix::ioctl_readwrite_bad!(ioc_copy, EDU_DMA_IOC_COPY, EduDmaCopy);
nix::ioctl_write_ptr_bad!(ioc_fault, EDU_DMA_IOC_FAULT, EduDmaFault);

/// An open file of an edu-dma device node. Buffers allocated through it belong to this file.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
}

impl Device {
    /// Opens a device node read-write (`O_RDWR | O_CLOEXEC`).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Device> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)?;
        Ok(Device { file, path })
    }

    /// Opens `/dev/edu-dma<n>`.
    pub fn open_instance(n: u32) -> io::Result<Device> {
        Device::open(Self::instance_path(n))
    }

    /// The path of `/dev/edu-dma<n>`.
    pub fn instance_path(n: u32) -> PathBuf {
        PathBuf::from(format!("{DEV_PREFIX}{n}"))
    }

    /// Every `/dev/edu-dma<N>` node, sorted by N.
    pub fn list() -> io::Result<Vec<PathBuf>> {
        let dir = Path::new(DEV_PREFIX).parent().unwrap_or(Path::new("/dev"));
        let prefix = Path::new(DEV_PREFIX)
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("edu-dma");
        let mut found: Vec<(u32, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(num) = name.strip_prefix(prefix) else {
                continue;
            };
            if let Ok(n) = num.parse::<u32>() {
                found.push((n, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, p)| p).collect())
    }

    /// The path this device was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw file descriptor (for tests of bad input).
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The open file (`read`/`write`/`pread`/`pwrite`/`lseek` on the node).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Issues any ioctl on the file; returns the ioctl's non-negative result.
    ///
    /// # Safety
    /// `arg` is passed to the kernel as is: if `cmd` makes the kernel write through it, it must
    /// be valid for that write (or deliberately invalid, in which case the kernel reports EFAULT
    /// only if the address is not mapped in this process).
    pub unsafe fn ioctl_raw(&self, cmd: u32, arg: *mut c_void) -> io::Result<i32> {
        // SAFETY: forwarded to the caller.
        let ret = unsafe { libc::ioctl(self.fd(), cmd as libc::Ioctl, arg) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    /// `EDU_DMA_IOC_INFO`.
    pub fn info(&self) -> io::Result<Info> {
        let mut info = EduDmaInfo::default();
        // SAFETY: `info` is a valid, writable `struct edu_dma_info`.
        unsafe { ioc_info(self.fd(), &mut info) }?;
        Ok(info)
    }

    /// `EDU_DMA_IOC_FACTORIAL` with the request as given (flags included); fills `result`.
    pub fn factorial_raw(&self, req: &mut EduDmaFactorial) -> io::Result<()> {
        // SAFETY: `req` is a valid, writable `struct edu_dma_factorial`.
        unsafe { ioc_factorial(self.fd(), req) }?;
        Ok(())
    }

    /// n! computed by the device. n > 12: `EOVERFLOW`.
    pub fn factorial(&self, n: u32) -> io::Result<u64> {
        let mut req = EduDmaFactorial {
            n,
            ..Default::default()
        };
        self.factorial_raw(&mut req)?;
        Ok(req.result)
    }

    /// `EDU_DMA_IOC_BUF_ALLOC` with the request as given; fills `handle` and `mmap_offset`.
    pub fn alloc_raw(&self, req: &mut EduDmaBufAlloc) -> io::Result<()> {
        // SAFETY: `req` is a valid, writable `struct edu_dma_buf_alloc`.
        unsafe { ioc_buf_alloc(self.fd(), req) }?;
        Ok(())
    }

    /// Allocates a buffer owned by this file. It is freed when the returned [`Buffer`] is dropped
    /// (or by [`Buffer::free`]); [`Buffer::into_handle`] leaves it to the file.
    pub fn alloc(&self, size: u64, kind: BufKind) -> io::Result<Buffer<'_>> {
        let mut req = EduDmaBufAlloc {
            size,
            kind: kind.raw(),
            ..Default::default()
        };
        self.alloc_raw(&mut req)?;
        Ok(Handle::new(
            self,
            req.handle,
            Allocated {
                mmap_offset: req.mmap_offset,
                size,
                kind,
            },
        ))
    }

    /// `EDU_DMA_IOC_BUF_FREE` with the request as given.
    pub fn free_raw(&self, req: &EduDmaBufFree) -> io::Result<()> {
        // SAFETY: `req` is a valid `struct edu_dma_buf_free`.
        unsafe { ioc_buf_free(self.fd(), req) }?;
        Ok(())
    }

    /// Drops a buffer handle. Unknown handle: `ENOENT`.
    pub fn free(&self, handle: u32) -> io::Result<()> {
        self.free_raw(&EduDmaBufFree { handle, flags: 0 })
    }

    /// `EDU_DMA_IOC_BUF_SYNC` with the request as given.
    pub fn sync_raw(&self, req: &EduDmaBufSync) -> io::Result<()> {
        // SAFETY: `req` is a valid `struct edu_dma_buf_sync`.
        unsafe { ioc_buf_sync(self.fd(), req) }?;
        Ok(())
    }

    /// Hands `[offset, offset + len)` of a buffer to the device or back to the CPU.
    pub fn sync(&self, handle: u32, offset: u64, len: u64, dir: SyncDir) -> io::Result<()> {
        self.sync_raw(&EduDmaBufSync {
            handle,
            flags: dir.raw(),
            offset,
            len,
        })
    }

    /// `EDU_DMA_IOC_BUF_EXPORT` with the request as given; fills `fd` (which the caller then
    /// owns).
    pub fn export_raw(&self, req: &mut EduDmaBufExport) -> io::Result<()> {
        // SAFETY: `req` is a valid, writable `struct edu_dma_buf_export`.
        unsafe { ioc_buf_export(self.fd(), req) }?;
        Ok(())
    }

    /// A dma-buf fd of streaming buffer `handle`, opened with `flags` (`EDU_DMA_EXPORT_*`).
    pub fn export(&self, handle: u32, flags: u32) -> io::Result<OwnedFd> {
        let mut req = EduDmaBufExport {
            handle,
            flags,
            ..Default::default()
        };
        self.export_raw(&mut req)?;
        // SAFETY: on success the driver installed a new fd, owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(req.fd) })
    }

    /// `EDU_DMA_IOC_XFER` with the request as given.
    pub fn xfer_raw(&self, req: &EduDmaXfer) -> io::Result<()> {
        // SAFETY: `req` is a valid `struct edu_dma_xfer`; the memory the device touches is the
        // driver's buffer, never memory of this process outside a mapping of it.
        unsafe { ioc_xfer(self.fd(), req) }?;
        Ok(())
    }

    /// Moves `count` bytes between a buffer and the window. `timeout_ms` 0: the default.
    pub fn xfer(
        &self,
        handle: u32,
        buf_offset: u64,
        win_offset: u32,
        count: u32,
        dir: Dir,
        timeout_ms: u32,
    ) -> io::Result<()> {
        self.xfer_raw(&EduDmaXfer {
            handle,
            flags: dir.raw(),
            buf_offset,
            win_offset,
            count,
            timeout_ms,
            reserved: 0,
        })
    }

    /// `EDU_DMA_IOC_USER_XFER` with the request as given.
    ///
    /// # Safety
    /// For `EDU_DMA_FROM_DEVICE`, `[addr, addr + len)` is written by the device: it must not be
    /// memory that Rust code holds a reference to (or it must be deliberately invalid).
    pub unsafe fn user_xfer_raw(&self, req: &EduDmaUserXfer) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { ioc_user_xfer(self.fd(), req) }?;
        Ok(())
    }

    /// Window `[win_offset, win_offset + src.len())` := `src` (USER_XFER, `TO_DEVICE`).
    pub fn write_window_from(&self, src: &[u8], win_offset: u32) -> io::Result<()> {
        self.write_window_from_timeout(src, win_offset, 0)
    }

    /// [`Device::write_window_from`] with a timeout (0: the default).
    pub fn write_window_from_timeout(
        &self,
        src: &[u8],
        win_offset: u32,
        timeout_ms: u32,
    ) -> io::Result<()> {
        let req = EduDmaUserXfer {
            addr: src.as_ptr() as u64,
            len: u32_len(src.len())?,
            win_offset,
            flags: EDU_DMA_TO_DEVICE,
            timeout_ms,
        };
        // SAFETY: TO_DEVICE only reads `src`, which is borrowed for the call.
        unsafe { self.user_xfer_raw(&req) }
    }

    /// `dst` := window `[win_offset, win_offset + dst.len())` (USER_XFER, `FROM_DEVICE`).
    pub fn read_window_into(&self, dst: &mut [u8], win_offset: u32) -> io::Result<()> {
        self.read_window_into_timeout(dst, win_offset, 0)
    }

    /// [`Device::read_window_into`] with a timeout (0: the default).
    pub fn read_window_into_timeout(
        &self,
        dst: &mut [u8],
        win_offset: u32,
        timeout_ms: u32,
    ) -> io::Result<()> {
        let req = EduDmaUserXfer {
            addr: dst.as_mut_ptr() as u64,
            len: u32_len(dst.len())?,
            win_offset,
            flags: EDU_DMA_FROM_DEVICE,
            timeout_ms,
        };
        // SAFETY: `dst` is exclusively borrowed for the call; the device writes only inside it.
        unsafe { self.user_xfer_raw(&req) }
    }

    /// `EDU_DMA_IOC_COPY` with the request as given; `done` is filled in (also on most errors).
    ///
    /// # Safety
    /// Plain (non-buffer) `dst` memory is written by the device: it must not be memory that Rust
    /// code holds a reference to (or it must be deliberately invalid).
    pub unsafe fn copy_raw(&self, req: &mut EduDmaCopy) -> io::Result<()> {
        // SAFETY: forwarded to the caller.
        unsafe { ioc_copy(self.fd(), req) }?;
        Ok(())
    }

    /// Copies `src` into `dst` through the device; returns the bytes copied (`done`).
    /// The lengths must be equal (`EINVAL` otherwise, before any ioctl).
    pub fn copy(&self, src: &[u8], dst: &mut [u8]) -> io::Result<u64> {
        if src.len() != dst.len() {
            return Err(einval());
        }
        let len = src.len() as u64;
        self.copy_with(CopySrc::User(src), CopyDst::User(dst), len, 0)
    }

    /// Copies `len` bytes from one buffer of this file to another (or the same) one.
    pub fn copy_buffers(
        &self,
        src_handle: u32,
        src_offset: u64,
        dst_handle: u32,
        dst_offset: u64,
        len: u64,
    ) -> io::Result<u64> {
        self.copy_with(
            CopySrc::Buffer {
                handle: src_handle,
                offset: src_offset,
            },
            CopyDst::Buffer {
                handle: dst_handle,
                offset: dst_offset,
            },
            len,
            0,
        )
    }

    /// General COPY: user memory or buffer on either side. A user slice shorter than `len` is
    /// refused with `EINVAL` before any ioctl. Returns the bytes copied (`done`).
    pub fn copy_with(
        &self,
        src: CopySrc<'_>,
        dst: CopyDst<'_>,
        len: u64,
        timeout_ms: u32,
    ) -> io::Result<u64> {
        let mut req = EduDmaCopy {
            len,
            timeout_ms,
            ..Default::default()
        };
        match src {
            CopySrc::User(s) => {
                if (s.len() as u64) < len {
                    return Err(einval());
                }
                req.src = s.as_ptr() as u64;
            }
            CopySrc::Buffer { handle, offset } => {
                req.flags |= EDU_DMA_COPY_SRC_BUF;
                req.src_handle = handle;
                req.src = offset;
            }
        }
        match dst {
            CopyDst::User(d) => {
                if (d.len() as u64) < len {
                    return Err(einval());
                }
                req.dst = d.as_mut_ptr() as u64;
            }
            CopyDst::Buffer { handle, offset } => {
                req.flags |= EDU_DMA_COPY_DST_BUF;
                req.dst_handle = handle;
                req.dst = offset;
            }
        }
        // SAFETY: user memory on either side is borrowed (exclusively for dst) for the call and
        // at least `len` bytes long.
        unsafe { self.copy_raw(&mut req) }?;
        Ok(req.done)
    }

    /// `EDU_DMA_IOC_FAULT` with the request as given.
    pub fn fault_raw(&self, req: &EduDmaFault) -> io::Result<()> {
        // SAFETY: `req` is a valid `struct edu_dma_fault`.
        unsafe { ioc_fault(self.fd(), req) }?;
        Ok(())
    }

    /// The next `drop_irqs` DMA commands raise no completion interrupt (CAP_SYS_ADMIN).
    pub fn inject_fault(&self, drop_irqs: u32) -> io::Result<()> {
        self.fault_raw(&EduDmaFault {
            drop_irqs,
            flags: 0,
        })
    }

    /// Maps `len` bytes at mmap offset `offset` read-write, `MAP_SHARED`.
    pub fn map(&self, offset: u64, len: usize) -> io::Result<Mapping> {
        // SAFETY: read-write shared mapping, as `Mapping`'s slices require.
        unsafe {
            self.map_with(
                offset,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
            )
        }
    }

    /// mmap with any protection and flags (for tests of bad input).
    ///
    /// # Safety
    /// The slices of the returned [`Mapping`] may only be used if `prot` has `PROT_READ`
    /// (`as_slice`) and `PROT_WRITE` (`as_mut_slice`).
    pub unsafe fn map_with(
        &self,
        offset: u64,
        len: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Mapping> {
        // SAFETY: forwarded to the caller.
        unsafe { Mapping::new(self.file.as_fd(), offset, len, prot, flags) }
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Device {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

/// A driver-owned DMA buffer of a [`Device`]'s file: its [`Handle`] (dropping it frees the
/// handle, errors ignored); mappings of it stay valid after the free.
pub type Buffer<'d> = Handle<'d, Allocated>;

impl Buffer<'_> {
    /// mmap offset of the buffer's first byte.
    pub fn mmap_offset(&self) -> u64 {
        self.info.mmap_offset
    }

    /// Requested size in bytes.
    pub fn size(&self) -> u64 {
        self.info.size
    }

    /// Size rounded up to whole pages (what the driver allocates and maps).
    pub fn mapped_size(&self) -> usize {
        let page = page_size() as u64;
        (self.info.size.div_ceil(page) * page) as usize
    }

    /// Kind.
    pub fn kind(&self) -> BufKind {
        self.info.kind
    }

    /// Maps the whole buffer (page-rounded) read-write, `MAP_SHARED`.
    pub fn map(&self) -> io::Result<Mapping> {
        self.device().map(self.info.mmap_offset, self.mapped_size())
    }

    /// A dma-buf fd sharing this (streaming) buffer's pages, read-write and close-on-exec. It
    /// stays valid after the buffer is freed, the device file closed or the device unbound.
    pub fn export(&self) -> io::Result<OwnedFd> {
        self.device()
            .export(self.handle(), EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_described_with_errno() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        let e = io::Error::from_raw_os_error(libc::EINVAL);
        assert_eq!(describe_error(&e), "Invalid argument (errno 22)");
    }

    #[test]
    fn open_missing_node_keeps_errno() {
        let e = Device::open("/nonexistent/edu-dma0").expect_err("must fail");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn ioctl_on_a_non_device_keeps_errno() {
        // Any regular file answers an unknown ioctl with ENOTTY: the errno reaches the caller.
        let dev = Device::open("/dev/null").expect("open /dev/null");
        assert_eq!(
            dev.info().map(|_| ()).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        assert_eq!(
            dev.factorial(3).unwrap_err().raw_os_error(),
            Some(libc::ENOTTY)
        );
        let e = dev.alloc(4096, BufKind::Coherent).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let mut x = [0u8; 4];
        let e = dev.read_window_into(&mut x, 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        // Client-side refusal of a too-short destination.
        let e = dev.copy(&[1, 2, 3], &mut x).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
        // SAFETY: 8 is never dereferenced by /dev/null's ioctl (ENOTTY first).
        let e = unsafe { dev.ioctl_raw(uapi::EDU_DMA_IOC_INFO, 8 as *mut c_void) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }

    #[test]
    fn mapping_of_a_file() {
        // /dev/zero supports MAP_SHARED mmap: exercises Mapping's slices and drop.
        let dev = Device::open("/dev/zero").expect("open /dev/zero");
        let mut m = dev.map(0, 2 * page_size()).expect("mmap");
        assert_eq!(m.len(), 2 * page_size());
        assert!(m.iter().all(|&b| b == 0));
        m[5] = 7;
        assert_eq!(m.as_slice()[5], 7);
    }

    #[test]
    fn info_helpers() {
        let i = Info {
            pci_domain: 0,
            pci_bus: 0,
            pci_slot: 0x1f,
            pci_func: 3,
            irq_mode: uapi::EDU_DMA_IRQ_MSI,
            ..Default::default()
        };
        assert_eq!(i.pci_address(), "0000:00:1f.3");
        assert!(!i.is_dma_coherent());
        assert!(Info {
            dma_coherent: 1,
            ..i
        }
        .is_dma_coherent());
        assert_eq!(i.irq_mode_name(), "MSI");
    }
}
