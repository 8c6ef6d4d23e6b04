//! The kernel's dma-buf uapi (`<linux/dma-buf.h>`), for dma-buf fds such as
//! [`crate::Buffer::export`] returns: CPU-access syncs, names, mmap; and two other exporters to
//! import from ([`crate::Device::import`]): the system DMA-BUF heap (`<linux/dma-heap.h>`) and
//! udmabuf (`<linux/udmabuf.h>`, a sealed memfd as a dma-buf).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::Mapping;

/// `DMA_BUF_SYNC_READ`: the CPU reads.
pub const DMA_BUF_SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`: the CPU writes.
pub const DMA_BUF_SYNC_WRITE: u64 = 1 << 1;
/// `DMA_BUF_SYNC_RW`.
pub const DMA_BUF_SYNC_RW: u64 = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
/// `DMA_BUF_SYNC_START`: CPU access begins.
pub const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`: CPU access ends.
pub const DMA_BUF_SYNC_END: u64 = 1 << 2;
/// `DMA_BUF_NAME_LEN`: names are shorter (with their NUL).
pub const DMA_BUF_NAME_LEN: usize = 32;

/// `struct dma_buf_sync`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaBufSync {
    /// `DMA_BUF_SYNC_*`.
    pub flags: u64,
}

nix::ioctl_write_ptr!(ioc_sync, b'b', 0, DmaBufSync);
// DMA_BUF_SET_NAME is `_IOW('b', 1, const char *)`: the size is a pointer's.
nix::ioctl_write_ptr!(ioc_set_name, b'b', 1, u64);

/// `DMA_BUF_IOCTL_SYNC` with `flags` as given.
pub fn sync(fd: BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    // SAFETY: the argument is a valid `struct dma_buf_sync`.
    unsafe { ioc_sync(fd.as_raw_fd(), &DmaBufSync { flags }) }?;
    Ok(())
}

/// `DMA_BUF_SET_NAME`: the name shown in `/proc/<pid>/fdinfo/<fd>` (`name:`).
pub fn set_name(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let name = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: the kernel reads a NUL-terminated string at the address passed as the argument.
    unsafe { ioc_set_name(fd.as_raw_fd(), name.as_ptr().cast()) }?;
    Ok(())
}

/// The `/proc/self/fdinfo/<fd>` text of `fd`.
pub fn fdinfo(fd: BorrowedFd<'_>) -> io::Result<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
}

/// The value of the `key:` line of `fdinfo` text.
pub fn fdinfo_field<'a>(info: &'a str, key: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// Maps `len` bytes of a dma-buf from page `offset / page` read-write, `MAP_SHARED`.
pub fn map(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Mapping> {
    // SAFETY: read-write shared mapping, as `Mapping`'s slices require.
    unsafe {
        Mapping::new(
            fd,
            offset,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
        )
    }
}

/// mmap of a dma-buf with any protection and flags (for tests of bad input).
///
/// # Safety
/// As for [`crate::Device::map_with`].
pub unsafe fn map_with(
    fd: BorrowedFd<'_>,
    offset: u64,
    len: usize,
    prot: i32,
    flags: i32,
) -> io::Result<Mapping> {
    // SAFETY: forwarded to the caller.
    unsafe { Mapping::new(fd, offset, len, prot, flags) }
}

/// `struct dma_heap_allocation_data`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaHeapAllocationData {
    /// Bytes.
    pub len: u64,
    /// Out: the dma-buf fd.
    pub fd: u32,
    /// Flags of the new fd (`O_RDWR`, `O_CLOEXEC`).
    pub fd_flags: u32,
    /// Heap flags (none defined).
    pub heap_flags: u64,
}

/// `struct udmabuf_create`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct UdmabufCreate {
    /// The memfd (sealed against shrinking, not against writes).
    pub memfd: u32,
    /// `UDMABUF_FLAGS_CLOEXEC`.
    pub flags: u32,
    /// Page-aligned offset into the memfd.
    pub offset: u64,
    /// Page-aligned size.
    pub size: u64,
}

/// `UDMABUF_FLAGS_CLOEXEC`.
pub const UDMABUF_FLAGS_CLOEXEC: u32 = 1;
/// The system heap's node.
pub const SYSTEM_HEAP: &str = "/dev/dma_heap/system";
/// udmabuf's node.
pub const UDMABUF: &str = "/dev/udmabuf";

nix::ioctl_readwrite!(ioc_heap_alloc, b'H', 0, DmaHeapAllocationData);
nix::ioctl_write_ptr!(ioc_udmabuf_create, b'u', 0x42, UdmabufCreate);

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: the kernel just installed `fd` for us, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A dma-buf of `len` bytes from the system heap (read-write, close-on-exec).
pub fn heap_alloc(len: u64) -> io::Result<OwnedFd> {
    let heap = std::fs::File::open(SYSTEM_HEAP)?;
    let mut req = DmaHeapAllocationData {
        len,
        fd_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        ..Default::default()
    };
    // SAFETY: `req` is a valid, writable `struct dma_heap_allocation_data`.
    unsafe { ioc_heap_alloc(heap.as_raw_fd(), &mut req) }?;
    Ok(owned(req.fd as i32))
}

/// A memfd of `len` bytes sealed against shrinking, as udmabuf wants it.
pub fn sealed_memfd(len: u64) -> io::Result<OwnedFd> {
    let name = c"edu-dma-udmabuf";
    // SAFETY: a NUL-terminated name and valid flags.
    let fd =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = owned(fd);
    let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscalls on an fd we own.
    if unsafe { libc::ftruncate(fd.as_raw_fd(), len) } < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A udmabuf dma-buf of `[offset, offset + size)` of `memfd` (close-on-exec).
pub fn udmabuf_create(memfd: BorrowedFd<'_>, offset: u64, size: u64) -> io::Result<OwnedFd> {
    let dev = std::fs::File::open(UDMABUF)?;
    let req = UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: UDMABUF_FLAGS_CLOEXEC,
        offset,
        size,
    };
    // SAFETY: `req` is a valid `struct udmabuf_create`; the ioctl returns the new fd.
    let fd = unsafe { ioc_udmabuf_create(dev.as_raw_fd(), &req) }?;
    Ok(owned(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_the_kernel_header() {
        // <linux/dma-buf.h> on x86-64: _IOW('b', 0, struct dma_buf_sync), _IOW('b', 1, char *).
        assert_eq!(nix::request_code_write!(b'b', 0, 8), 0x4008_6200);
        assert_eq!(nix::request_code_write!(b'b', 1, 8), 0x4008_6201);
        assert_eq!(std::mem::size_of::<DmaBufSync>(), 8);
        // _IOWR('H', 0, struct dma_heap_allocation_data), _IOW('u', 0x42, struct udmabuf_create).
        assert_eq!(std::mem::size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(std::mem::size_of::<UdmabufCreate>(), 24);
        assert_eq!(nix::request_code_readwrite!(b'H', 0, 24), 0xc018_4800);
        assert_eq!(nix::request_code_write!(b'u', 0x42, 24), 0x4018_7542);
    }

    #[test]
    fn fdinfo_fields() {
        let t = "size:\t8192\ncount:\t1\nexp_name:\tedu_dma\nname:\tfoo\n";
        assert_eq!(fdinfo_field(t, "name"), Some("foo"));
        assert_eq!(fdinfo_field(t, "exp_name"), Some("edu_dma"));
        assert_eq!(fdinfo_field(t, "size"), Some("8192"));
        assert_eq!(fdinfo_field(t, "flags"), None);
    }
}
