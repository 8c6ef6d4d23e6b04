//! mmap of a device buffer, and the anonymous or file memory the tools hand to the driver.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;

/// The system page size.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

/// A mapping of (part of) a device buffer (or of anonymous memory or a file, see
/// [`Mapping::anonymous`]). Unmapped on drop. The memory stays valid while the
/// mapping exists, even after the buffer is freed or the file closed.
///
/// The memory is shared with the device (and with forked children): its contents may change
/// during an ioctl that makes the device write into the buffer.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping owns its address range like a Vec owns its heap block.
unsafe impl Send for Mapping {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// # Safety
    /// See [`crate::Device::map_with`].
    pub(crate) unsafe fn new(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: forwarded to the caller.
        unsafe { Self::mmap(fd.as_raw_fd(), off, len, prot, flags) }
    }

    /// # Safety
    /// The slices may only be used if `prot` has `PROT_READ` (`as_slice`) and `PROT_WRITE`
    /// (`as_mut_slice`).
    unsafe fn mmap(
        fd: RawFd,
        off: libc::off_t,
        len: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<Mapping> {
        // SAFETY: a new mapping at an address chosen by the kernel aliases no Rust memory.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned 0"))?;
        Ok(Mapping { ptr, len })
    }

    /// `len` bytes of anonymous private read-write memory (zero-filled, page-aligned).
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: read-write, as the slices require.
        unsafe { Self::anonymous_with(len, libc::PROT_READ | libc::PROT_WRITE, 0) }
    }

    /// Anonymous private memory with any protection and extra `flags` (`MAP_HUGETLB`,
    /// `MAP_NORESERVE`, ...).
    ///
    /// # Safety
    /// As for [`crate::Device::map_with`]: the slices may only be used if `prot` allows it.
    pub unsafe fn anonymous_with(len: usize, prot: i32, flags: i32) -> io::Result<Mapping> {
        // SAFETY: forwarded to the caller.
        unsafe {
            Self::mmap(
                -1,
                0,
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            )
        }
    }

    /// A read-write `MAP_SHARED` mapping of the first `len` bytes of a file (whose contents
    /// other users of the file may change at any time, like a device buffer's).
    pub fn shared_file(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        // SAFETY: read-write, as the slices require.
        unsafe {
            Self::new(
                fd,
                0,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
            )
        }
    }

    /// Start address.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for a successful mmap).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a readable mapping owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapped bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr..ptr+len` is a writable mapping exclusively borrowed through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for Mapping {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range was mapped by `Mapping::new` and is unmapped only here.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};
    use std::os::fd::AsFd;

    #[test]
    fn anonymous_memory() {
        let mut m = Mapping::anonymous(2 * page_size()).expect("mmap");
        assert_eq!(m.len(), 2 * page_size());
        assert_eq!(m.as_ptr() as usize % page_size(), 0, "page-aligned");
        assert!(m.iter().all(|&b| b == 0));
        m[page_size()] = 1;
        assert_eq!(m[page_size()], 1);
        // SAFETY: PROT_READ only; the slice is only read.
        let ro = unsafe { Mapping::anonymous_with(page_size(), libc::PROT_READ, 0) }.expect("ro");
        assert_eq!(ro.as_slice()[0], 0);
        let e = Mapping::anonymous(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn shared_file_memory() {
        let path = std::env::temp_dir().join(format!("edu-dma-map-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("create");
        let _ = std::fs::remove_file(&path);
        f.set_len(page_size() as u64).expect("ftruncate");
        let mut m = Mapping::shared_file(f.as_fd(), page_size()).expect("mmap");
        m[..3].copy_from_slice(b"edu");
        drop(m);
        let mut back = [0u8; 3];
        f.rewind().expect("seek");
        f.read_exact(&mut back).expect("read");
        assert_eq!(&back, b"edu");
    }
}
