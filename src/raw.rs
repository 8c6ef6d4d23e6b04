// SPDX-License-Identifier: GPL-2.0

//! Thin safe wrappers over the raw kernel APIs that the 7.2 `kernel` crate does not cover.
//!
//! This is the only module that calls `kernel::bindings` (and the C shim in `shim.c`), so the rest
//! of the driver is safe Rust. It owns: the `/dev` node registration with a module-owned
//! `file_operations`, PCI location and bus-master control, streaming page mappings, coherent
//! mmap, user page pinning and scatter-gather mappings.

use core::ptr;
use kernel::{
    bindings,
    device::{
        self,
        Bound,
        Core, //
    },
    dma::{
        Coherent,
        DataDirection,
        DmaAddress, //
    },
    error::to_result,
    fs::File,
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::virt::VmaNew,
    page::{
        Page,
        PAGE_SIZE, //
    },
    pci,
    prelude::*,
    scatterlist::SGTable,
    str::CString,
    sync::{
        aref::ARef,
        Arc, //
    },
    types::Opaque,
};

use crate::{
    device::EduDevice,
    file::EduFile, //
};

// The shim (`shim.c`). `improper_ctypes`: bindgen gives some kernel structs zero-sized members,
// which only matters for by-value use; these take pointers.
#[allow(improper_ctypes)]
extern "C" {
    fn edu_dma_mapping_error(dev: *mut bindings::device, addr: DmaAddress) -> c_int;
    fn edu_dma_sync_single_for_cpu(
        dev: *mut bindings::device,
        addr: DmaAddress,
        size: usize,
        dir: bindings::dma_data_direction,
    );
    fn edu_dma_sync_single_for_device(
        dev: *mut bindings::device,
        addr: DmaAddress,
        size: usize,
        dir: bindings::dma_data_direction,
    );
    fn edu_iov_iter_extract_will_pin(iter: *const bindings::iov_iter) -> bool;
    fn edu_pci_domain_nr(pdev: *mut bindings::pci_dev) -> c_int;
}

/// The raw `struct device` of `dev`.
fn raw_dev<Ctx: device::DeviceContext>(dev: &device::Device<Ctx>) -> *mut bindings::device {
    // CAST: `device::Device` is `#[repr(transparent)]` over `Opaque<bindings::device>`.
    ptr::from_ref(dev).cast::<bindings::device>().cast_mut()
}

/// The raw `struct pci_dev` of `pdev`.
fn raw_pdev<Ctx: device::DeviceContext>(pdev: &pci::Device<Ctx>) -> *mut bindings::pci_dev {
    // CAST: `pci::Device` is `#[repr(transparent)]` over `Opaque<bindings::pci_dev>`.
    ptr::from_ref(pdev).cast::<bindings::pci_dev>().cast_mut()
}

/// A PCI address: domain, bus, slot, function.
#[derive(Clone, Copy, Default)]
pub(crate) struct PciLocation {
    pub(crate) domain: u32,
    pub(crate) bus: u32,
    pub(crate) slot: u32,
    pub(crate) func: u32,
}

/// Where `pdev` sits on the PCI bus.
pub(crate) fn pci_location(pdev: &pci::Device<Bound>) -> PciLocation {
    let raw = raw_pdev(pdev);
    // SAFETY: `raw` is a valid, bound `pci_dev`; its bus pointer and devfn are set at enumeration
    // and stay constant while the device exists.
    let (domain, bus, devfn) =
        unsafe { (edu_pci_domain_nr(raw), (*(*raw).bus).number, (*raw).devfn) };
    PciLocation {
        domain: domain as u32,
        bus: bus.into(),
        slot: (devfn >> 3) & 0x1f,
        func: devfn & 0x7,
    }
}

/// Stops the device from mastering the bus (no DMA, no MSI).
pub(crate) fn clear_master(pdev: &pci::Device<Core<'_>>) {
    // SAFETY: `pdev` is a valid device in a `Core` context (probe/unbind), which serialises
    // command-register updates with the rest of the driver core.
    unsafe { bindings::pci_clear_master(raw_pdev(pdev)) };
}

/// Whether the current task has `CAP_SYS_ADMIN`.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable` only inspects the current task's credentials.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}

/// `file_operations` of every edu-dma node: the Rust misc vtable for [`EduFile`], plus
///
/// - `owner`, which the 7.2 misc abstraction leaves NULL: with it, `misc_open` takes a module
///   reference for every open file (and so for every mapping), and `rmmod` gets `EBUSY` instead
///   of unloading code that open files still point to;
/// - `llseek`: the misc core's own fops set `FMODE_LSEEK`, so a NULL `llseek` in the replacement
///   fops would be called by `lseek(2)`.
struct Fops(bindings::file_operations);

// SAFETY: `FOPS` is immutable; the VFS only reads it.
unsafe impl Sync for Fops {}

static FOPS: Fops = Fops(bindings::file_operations {
    owner: crate::THIS_MODULE.as_ptr(),
    llseek: Some(bindings::default_llseek),
    // SAFETY: `into_raw` returns a `miscdevice` whose `fops` points to a `'static` vtable.
    ..unsafe {
        *MiscDeviceOptions { name: c"edu-dma" }
            .into_raw::<EduFile>()
            .fops
    }
});

/// A registered `/dev` node (misc device) with the module-owned [`FOPS`], mode 0600, the PCI
/// device as parent, and the device it serves.
///
/// # Invariants
///
/// `inner` is a registered `miscdevice` whose `fops` is [`FOPS`] until `Drop` deregisters it.
#[pin_data(PinnedDrop)]
pub(crate) struct MiscNode {
    #[pin]
    inner: Opaque<bindings::miscdevice>,
    name: CString,
    edu: Arc<EduDevice>,
}

impl MiscNode {
    /// Registers `/dev/<name>` for `edu`.
    pub(crate) fn register(
        name: CString,
        parent: &device::Device<Bound>,
        edu: Arc<EduDevice>,
    ) -> impl PinInit<Self, Error> + '_ {
        let name_ptr = name.as_char_ptr();
        try_pin_init!(Self {
            name,
            edu,
            inner <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut misc = MiscDeviceOptions { name: c"edu-dma" }.into_raw::<EduFile>();
                misc.name = name_ptr;
                misc.fops = &FOPS.0;
                misc.parent = raw_dev(parent);
                misc.mode = 0o600;
                // SAFETY: `slot` is valid for writes; it is pinned and deregistered in `Drop`
                // before it is freed. `name_ptr` points into `name`'s heap buffer, which lives as
                // long as `Self`.
                unsafe { slot.write(misc) };
                // SAFETY: `slot` holds a fully initialised `miscdevice`.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }

    /// The device served by the node that `misc` was opened through.
    pub(crate) fn edu_of(misc: &MiscDeviceRegistration<EduFile>) -> Arc<EduDevice> {
        let inner = misc.as_raw().cast::<Opaque<bindings::miscdevice>>();
        // SAFETY: every `MiscDeviceRegistration<EduFile>` that the VFS hands to `EduFile::open` is
        // the `inner` field of a `MiscNode` (only `MiscNode::register` uses `FOPS`), and
        // `misc_open` holds `misc_mtx`, which `misc_deregister` takes, so the `MiscNode` is alive
        // during `open`.
        let node = unsafe { &*kernel::container_of!(inner, MiscNode, inner) };
        node.edu.clone()
    }
}

// SAFETY: the raw `miscdevice` is only touched by `misc_register`/`misc_deregister`, which may run
// on any thread; the other fields are `Send + Sync`.
unsafe impl Send for MiscNode {}
// SAFETY: `&MiscNode` gives no access to the raw `miscdevice`.
unsafe impl Sync for MiscNode {}

#[pinned_drop]
impl PinnedDrop for MiscNode {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: by the type invariant `inner` is registered.
        unsafe { bindings::misc_deregister(self.inner.get()) };
    }
}

/// One page mapped for the device with the streaming DMA API (bidirectional).
///
/// # Invariants
///
/// `addr` is a live mapping of one page for `dev`, unmapped in `Drop`.
pub(crate) struct PageMap {
    dev: ARef<device::Device>,
    addr: DmaAddress,
}

// SAFETY: the mapping may be synced and unmapped from any thread.
unsafe impl Send for PageMap {}
// SAFETY: `&PageMap` only reads `addr` and calls the thread-safe sync functions.
unsafe impl Sync for PageMap {}

impl PageMap {
    /// Maps `page` for `dev`; the caller keeps `page` alive as long as the mapping.
    pub(crate) fn new(dev: &device::Device<Bound>, page: &Page) -> Result<Self> {
        let raw = raw_dev(dev);
        let dir = DataDirection::Bidirectional.into();
        // SAFETY: `dev` is bound; `page` is a valid page and the caller keeps it alive while the
        // returned mapping exists.
        let addr =
            unsafe { bindings::dma_map_page_attrs(raw, page.as_ptr(), 0, PAGE_SIZE, dir, 0) };
        // SAFETY: `addr` was just returned by `dma_map_page_attrs` for `raw`.
        if unsafe { edu_dma_mapping_error(raw, addr) } != 0 {
            return Err(ENOMEM);
        }
        Ok(Self {
            dev: dev.into(),
            addr,
        })
    }

    /// The bus address of the page.
    pub(crate) fn addr(&self) -> DmaAddress {
        self.addr
    }

    /// Hands `[offset, offset + len)` of the page to the CPU (`for_cpu`) or the device.
    pub(crate) fn sync(&self, offset: usize, len: usize, for_cpu: bool) {
        let raw = raw_dev(&self.dev);
        let dir = DataDirection::Bidirectional.into();
        let addr = self.addr + offset as u64;
        if for_cpu {
            // SAFETY: `[addr, addr + len)` lies in this live mapping (callers clamp to a page).
            unsafe { edu_dma_sync_single_for_cpu(raw, addr, len, dir) };
        } else {
            // SAFETY: as above.
            unsafe { edu_dma_sync_single_for_device(raw, addr, len, dir) };
        }
    }
}

impl Drop for PageMap {
    fn drop(&mut self) {
        let dir = DataDirection::Bidirectional.into();
        // No sync on unmap: ownership moves only through the sync ioctl, and after the last
        // `for_cpu` the CPU's view is the buffer's content (a bounce buffer copied back now would
        // overwrite what the CPU wrote since).
        let attrs = bindings::DMA_ATTR_SKIP_CPU_SYNC as c_ulong;
        // SAFETY: by the type invariant the mapping is live; it is unmapped exactly once.
        unsafe {
            bindings::dma_unmap_page_attrs(raw_dev(&self.dev), self.addr, PAGE_SIZE, dir, attrs)
        };
    }
}

/// The page-cache mapping of an open file: every VMA that maps the file is linked into it.
///
/// # Invariants
///
/// The pointer is the `f_mapping` of a file that the owner of this value keeps open (buffers are
/// owned by the file they were created through), so the inode and its mapping stay alive.
pub(crate) struct FileMapping(*mut bindings::address_space);

// SAFETY: `unmap_mapping_range` may be called from any thread.
unsafe impl Send for FileMapping {}
// SAFETY: `&FileMapping` offers nothing but `zap_all`, which is thread-safe.
unsafe impl Sync for FileMapping {}

impl FileMapping {
    /// The mapping of `file`.
    pub(crate) fn of(file: &File) -> Self {
        // SAFETY: `file` is a valid open file; `f_mapping` is set at open and stays valid while
        // the file is open.
        Self(unsafe { (*file.as_ptr()).f_mapping })
    }

    /// Removes every user PTE mapping file offsets `[offset, offset + len)`, in every VMA of
    /// the file (shared and private copies).
    pub(crate) fn zap(&self, offset: u64, len: usize) {
        let (Ok(start), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: by the type invariant the mapping is alive.
        unsafe { bindings::unmap_mapping_range(self.0, start, len, 1) };
    }
}

/// The page offset a mapping was requested at (`mmap`'s offset >> PAGE_SHIFT).
pub(crate) fn vma_pgoff(vma: &VmaNew) -> usize {
    // SAFETY: the VMA is being set up by `mmap` and we have exclusive access to it.
    unsafe { (*vma.as_ptr()).vm_pgoff }
}

/// Maps `buf` into `vma` from page `first_page` of the buffer (`dma_mmap_coherent`).
pub(crate) fn mmap_coherent(
    dev: &device::Device<Bound>,
    vma: &VmaNew,
    buf: &Coherent<[u8]>,
    first_page: usize,
) -> Result {
    let raw = vma.as_ptr();
    // SAFETY: the VMA is being set up and exclusively ours.
    let pgoff = unsafe { (*raw).vm_pgoff };
    // SAFETY: as above. `dma_mmap_attrs` reads `vm_pgoff` as the page offset into the buffer and
    // checks it against `size`.
    unsafe { (*raw).vm_pgoff = first_page };
    // SAFETY: `dev` is bound, `buf` was allocated for it by `dma_alloc_attrs` with these CPU and
    // bus addresses and this size, and the caller keeps `buf` alive as long as the mapping (the
    // VMA holds the file, which owns the buffer, and unbind zaps the mapping before freeing it).
    let ret = to_result(unsafe {
        bindings::dma_mmap_attrs(
            raw_dev(dev),
            raw,
            buf.as_mut_ptr().cast(),
            buf.dma_handle(),
            buf.size(),
            0,
        )
    });
    // SAFETY: as above; the VMA is not linked into the file mapping yet. Restoring the file
    // offset keeps it where `unmap_mapping_range` on the buffer's range finds it.
    unsafe { (*raw).vm_pgoff = pgoff };
    ret
}

/// Pages of a user range (or of an `iov_iter`), pinned for DMA while this lives.
///
/// # Invariants
///
/// `pages[..]` hold `pages.len()` page pointers; when `pinned`, each carries a `FOLL_PIN`
/// reference released in `Drop` (dirtied first when `dirty`). `offset + len` fits in the pages.
pub(crate) struct Pinned {
    pages: KVec<*mut bindings::page>,
    offset: usize,
    len: usize,
    pinned: bool,
    dirty: bool,
}

impl Pinned {
    /// Pins `[addr, addr + len)` of the current process; `write` when the device writes to it.
    ///
    /// A range that is not fully pinnable (unmapped, read-only for `write`, `VM_PFNMAP` or
    /// `VM_IO`) gives `EFAULT`; nothing stays pinned.
    pub(crate) fn from_user(addr: usize, len: usize, write: bool) -> Result<Self> {
        let offset = addr % PAGE_SIZE;
        let n = (offset + len).div_ceil(PAGE_SIZE);
        let mut pages = KVec::from_elem(ptr::null_mut(), n, GFP_KERNEL)?;
        let flags = if write { bindings::FOLL_WRITE } else { 0 };
        // The slow path, not `pin_user_pages_fast`: it checks each VMA (taking the mmap lock
        // itself), so `VM_IO` and `VM_PFNMAP` mappings (coherent buffers, whatever the DMA
        // backend) are refused alike.
        // SAFETY: `pages` has room for `n` entries; GUP validates the user range itself.
        let got = unsafe {
            bindings::pin_user_pages_unlocked(addr - offset, n, pages.as_mut_ptr(), flags)
        };
        let got = got as isize;
        if got < 0 {
            // GUP's EOVERFLOW means "range runs past the end of the address space": unpinnable
            // user memory like any other, so EFAULT.
            let err = Error::from_errno(got as c_int);
            return Err(if err == EOVERFLOW { EFAULT } else { err });
        }
        // INVARIANT: the first `got` entries are pinned.
        pages.truncate(got as usize);
        let this = Self {
            pages,
            offset,
            len,
            pinned: true,
            dirty: write,
        };
        if this.pages.len() != n {
            // A partial pin: `this` unpins what was pinned.
            return Err(EFAULT);
        }
        Ok(this)
    }

    /// Takes up to `max_len` bytes (at most `max_pages` pages) from the front of `iter` and
    /// advances it. User-backed iterators are pinned; kernel ones (bvec, kvec) are only borrowed
    /// for the duration of the I/O call. `dest`: the device writes to the pages.
    pub(crate) fn from_iter(
        iter: *mut bindings::iov_iter,
        max_len: usize,
        max_pages: usize,
        dest: bool,
    ) -> Result<Self> {
        let max_pages_u32 = u32::try_from(max_pages).map_err(|_| EINVAL)?;
        let mut pages = KVec::from_elem(ptr::null_mut(), max_pages, GFP_KERNEL)?;
        let mut array = pages.as_mut_ptr();
        let mut offset = 0usize;
        // SAFETY: `iter` is the valid iterator of the current read/write call.
        let will_pin = unsafe { edu_iov_iter_extract_will_pin(iter) };
        // SAFETY: `array` points to `max_pages` entries, so the callee uses it and does not
        // allocate; `iter` is valid.
        let got = unsafe {
            bindings::iov_iter_extract_pages(
                iter,
                &mut array,
                max_len,
                max_pages_u32,
                0,
                &mut offset,
            )
        };
        if got < 0 {
            return Err(Error::from_errno(got as c_int));
        }
        let len = got as usize;
        // INVARIANT: the extraction filled (and, for user memory, pinned) this many pages.
        pages.truncate((offset + len).div_ceil(PAGE_SIZE));
        Ok(Self {
            pages,
            offset,
            len,
            pinned: will_pin,
            dirty: dest,
        })
    }

    /// Bytes covered.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if self.pinned && !self.pages.is_empty() {
            // SAFETY: by the type invariant these pages carry our pins; released once.
            unsafe {
                bindings::unpin_user_pages_dirty_lock(
                    self.pages.as_mut_ptr(),
                    self.pages.len(),
                    self.dirty,
                )
            };
        }
    }
}

/// A scatter-gather table over [`Pinned`] pages, mapped for the device.
///
/// # Invariants
///
/// `sgt` is an allocated table over the pages of the `Pinned` it was built from, mapped for `dev`
/// in direction `dir`; `Drop` unmaps (syncing bounce buffers back) and frees it. The owner keeps
/// the `Pinned` alive longer than this.
pub(crate) struct SgMap {
    sgt: KBox<Opaque<bindings::sg_table>>,
    dev: ARef<device::Device>,
    dir: DataDirection,
}

impl SgMap {
    /// Builds and maps the table; `max_segment` caps each segment (the device's command size).
    pub(crate) fn new(
        dev: &device::Device<Bound>,
        pinned: &mut Pinned,
        dir: DataDirection,
        max_segment: u32,
    ) -> Result<Self> {
        let n_pages = u32::try_from(pinned.pages.len()).map_err(|_| E2BIG)?;
        let offset = u32::try_from(pinned.offset).map_err(|_| EINVAL)?;
        let sgt = KBox::new(Opaque::<bindings::sg_table>::zeroed(), GFP_KERNEL)?;
        // SAFETY: `sgt` is a zeroed table; the pages are pinned for longer than the table lives.
        to_result(unsafe {
            bindings::sg_alloc_table_from_pages_segment(
                sgt.get(),
                pinned.pages.as_mut_ptr(),
                n_pages,
                offset,
                pinned.len,
                max_segment,
                bindings::GFP_KERNEL,
            )
        })?;
        // SAFETY: `dev` is bound and `sgt` is a valid table.
        let ret = unsafe { bindings::dma_map_sgtable(raw_dev(dev), sgt.get(), dir.into(), 0) };
        if ret != 0 {
            // SAFETY: the table was allocated above and is not mapped.
            unsafe { bindings::sg_free_table(sgt.get()) };
            return Err(Error::from_errno(ret));
        }
        Ok(Self {
            sgt,
            dev: dev.into(),
            dir,
        })
    }

    /// The mapped segments, as (bus address, length).
    pub(crate) fn segments(&self) -> impl Iterator<Item = (DmaAddress, usize)> + '_ {
        // SAFETY: the table is mapped and not modified while `self` is borrowed.
        let table = unsafe { SGTable::from_raw(self.sgt.get()) };
        table
            .iter()
            .map(|sg| (sg.dma_address(), sg.dma_len() as usize))
    }
}

impl Drop for SgMap {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the table is mapped for `dev` in `dir`; it is unmapped
        // and freed exactly once.
        unsafe {
            bindings::dma_unmap_sgtable(raw_dev(&self.dev), self.sgt.get(), self.dir.into(), 0);
            bindings::sg_free_table(self.sgt.get());
        }
    }
}

/// Returns a page allocated for a streaming buffer (zeroed).
pub(crate) fn alloc_page() -> Result<Page> {
    Ok(Page::alloc_page(GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN)?)
}
