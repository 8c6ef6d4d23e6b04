//! The fuzzer's dma-buf operation: streaming buffers exported (`EDU_DMA_IOC_BUF_EXPORT`) and the
//! dma-bufs imported (`EDU_DMA_IOC_BUF_IMPORT`) into the other edu device (not the exporting one,
//! see `Obj::importer`), mapped, synced (`DMA_BUF_IOCTL_SYNC`), moved by XFER and COPY through
//! either handle, the CPU writing and reading through the mappings, handles freed (exporter and
//! importers in any order), fds closed and mappings dropped in any order, files reopened (which
//! frees their handles). The state lives across operations; each operation is one step of it,
//! drawn at random among those the state allows.
//!
//! A model predicts every answer exactly (no errno is merely "allowed" but an allocation's
//! `ENOMEM`, which depends on the budget the other operations use) and every byte: each buffer's
//! pages are a byte vector, updated by each DMA and CPU write, and checked byte for byte by every
//! read (the window after a device read, user memory after a COPY, a mapping of a dma-buf fd
//! after a device write, a new mapping). The errors: export of a coherent buffer, of an import
//! (`EINVAL`), of a freed or unknown handle (`ENOENT`), with unknown flags or reserved bits
//! (`EINVAL`); import of a non-dma-buf fd (`EINVAL`), of a closed or impossible fd (`EBADF`), with
//! flags or reserved bits (`EINVAL`); mmap of an imported handle through the node (`EINVAL`); a
//! dma-buf mmap that is private (`EINVAL`), executable (`EPERM`), too long (`EINVAL`) or writable
//! on a read-only dma-buf (`EACCES`, and 7.2.13 refuses a read-only one too, `EINVAL`);
//! `DMA_BUF_IOCTL_SYNC` with invalid flags (`EINVAL`); an XFER past the end (`EINVAL`); a second
//! `BUF_FREE` (`ENOENT`).
//!
//! Ownership, so that the data is right also where the DMA API bounces: between operations every
//! device mapping of a buffer (the exporter's own, each import's) agrees with the pages. A device
//! write through one handle is followed by `BUF_SYNC FOR_CPU` on that handle, then every other
//! mapping is handed to its device again: `DMA_BUF_IOCTL_SYNC END` on an open fd (edu syncs its
//! own mapping and that dma-buf's importers) or `BUF_SYNC FOR_DEVICE` on the handle. A CPU write
//! through a mapping is bracketed by `SYNC START` / `END` when its fd is open, then the same. The
//! one mapping that may then stay behind is the exporter's own after its handle is freed with no
//! fd left, which nothing can observe any more (no fd can be made, no DMA goes through it).
//!
//! The operations use files of their own, so the random ioctls never meet their handles; the
//! other operations leave no DMA running (the racer stops, the queue is drained) and the window
//! is written before each device write from it. Pending injected interrupt losses are cleared
//! first (`FAULT 0`), so no DMA here times out.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use edu_dma::dmabuf::{
    self as db, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_RW, DMA_BUF_SYNC_START,
    DMA_BUF_SYNC_WRITE,
};
use edu_dma::uapi::*;
use edu_dma::{BufKind, CopyDst, CopySrc, Device, Dir, Mapping, SyncDir};

use super::*;

/// At most this many buffers (live exports) at once, of at most `MAX_PAGES` pages.
const MAX_OBJS: usize = 4;
const MAX_PAGES: u64 = 4;
/// At most this many mappings of dma-bufs at once.
const MAX_MAPS: usize = 6;
const PAGE: usize = 4096;
const SYNC_RW: [u64; 3] = [DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW];

/// One dma-buf of a buffer (one EXPORT): its fd while open.
struct DmaBuf {
    fd: Option<OwnedFd>,
    rdwr: bool,
}

/// A handle of the file `d` importing dma-buf `dbuf` of the buffer.
#[derive(Clone, Copy)]
struct Imp {
    d: usize,
    handle: u32,
    dbuf: usize,
}

/// A mapping of dma-buf `dbuf` of the buffer, from byte `off` of it.
struct Map {
    dbuf: usize,
    off: usize,
    m: Mapping,
}

/// An exported streaming buffer, alive while its handle, a dma-buf fd, a mapping or an import is.
struct Obj {
    /// The pages, as the model knows them.
    bytes: Vec<u8>,
    /// The exporting device (its own mapping of the pages lives as long as the buffer).
    dev: usize,
    /// The exporting file and handle while the handle lives.
    exporter: Option<(usize, u32)>,
    dbufs: Vec<DmaBuf>,
    imports: Vec<Imp>,
    maps: Vec<Map>,
}

impl Obj {
    fn alive(&self) -> bool {
        self.exporter.is_some()
            || self.dbufs.iter().any(|b| b.fd.is_some())
            || !self.imports.is_empty()
            || !self.maps.is_empty()
    }

    /// Every live handle of the buffer: (file, handle).
    fn handles(&self) -> Vec<(usize, u32)> {
        self.exporter
            .into_iter()
            .chain(self.imports.iter().map(|i| (i.d, i.handle)))
            .collect()
    }

    /// The device that may import the buffer: the one that does not map it yet. One device
    /// never maps the same pages twice here: without an IOMMU or bouncing both mappings have the
    /// same bus addresses, and DMA-API debug's lookup of a sync of part of them (best fit, `NULL`
    /// for two matches that fit equally) reports every partial `BUF_SYNC` as memory the driver
    /// did not map, a false report that would fail the boot's kernel log.
    fn importer(&self) -> Option<usize> {
        let d = 1 - self.dev;
        (!self.imports.iter().any(|i| i.d == d)).then_some(d)
    }

    /// The dma-bufs with an open fd.
    fn open_dbufs(&self) -> Vec<usize> {
        (0..self.dbufs.len())
            .filter(|&b| self.dbufs[b].fd.is_some())
            .collect()
    }
}

/// A transfer: buffer, (file, handle), length, offset in the buffer, offset in the window.
struct Xfer(usize, (usize, u32), usize, usize, u32);

/// The state of the dma-buf operations.
pub(in crate::stress) struct DmaBufs {
    files: [Device; 2],
    objs: Vec<Obj>,
    /// Handles freed in each file since it was opened (never reused by the file).
    freed: [Vec<u32>; 2],
}

impl DmaBufs {
    pub(in crate::stress) fn new() -> Result<DmaBufs, String> {
        Ok(DmaBufs {
            files: [open(0)?, open(1)?],
            objs: Vec::new(),
            freed: [Vec::new(), Vec::new()],
        })
    }

    /// Live buffers, fds, imports and mappings (for the summary).
    pub(in crate::stress) fn counts(&self) -> (usize, usize, usize, usize) {
        let sum = |f: fn(&Obj) -> usize| self.objs.iter().map(f).sum::<usize>();
        (
            self.objs.len(),
            sum(|o| o.open_dbufs().len()),
            sum(|o| o.imports.len()),
            sum(|o| o.maps.len()),
        )
    }
}

fn errno(e: &io::Error) -> Option<i32> {
    Some(e.raw_os_error().unwrap_or(-1))
}

impl Fuzz {
    /// Checks that `r` failed with `want` (or succeeded, for `None`); the value on success.
    fn db_expect<T>(
        &mut self,
        what: &str,
        r: io::Result<T>,
        want: Option<i32>,
    ) -> Result<Option<T>, String> {
        let got = r.as_ref().err().and_then(errno);
        self.exact(&format!("dmabuf {what}"), got, want)?;
        Ok(r.ok())
    }

    /// Checks that `r` succeeded; its value.
    fn db_ok<T>(&mut self, what: &str, r: io::Result<T>) -> Result<T, String> {
        match self.db_expect(what, r, None)? {
            Some(v) => Ok(v),
            None => Err(self.fail(what, "no value".into())),
        }
    }

    fn db_same(&self, what: &str, got: &[u8], want: &[u8]) -> TestResult {
        check_same(got, want, what).map_err(|e| self.fail("dmabuf", e))
    }

    fn db_sync(
        &mut self,
        (d, h): (usize, u32),
        off: usize,
        len: usize,
        dir: SyncDir,
    ) -> TestResult {
        let r = self.db.files[d].sync(h, off as u64, len as u64, dir);
        let what = match dir {
            SyncDir::ForCpu => "BUF_SYNC FOR_CPU",
            SyncDir::ForDevice => "BUF_SYNC FOR_DEVICE",
        };
        self.db_ok(what, r)
    }

    /// `DMA_BUF_IOCTL_SYNC flags` on the open fd of dma-buf `b` of buffer `o`.
    fn db_fd_sync(&mut self, o: usize, b: usize, flags: u64, what: &str) -> TestResult {
        let r = match &self.db.objs[o].dbufs[b].fd {
            Some(fd) => db::sync(fd.as_fd(), flags),
            None => return Err(self.fail(what, "no fd".into())),
        };
        self.db_ok(what, r)
    }

    fn pick_obj(&mut self, pred: impl Fn(&Obj) -> bool) -> Option<usize> {
        let ok: Vec<usize> = (0..self.db.objs.len())
            .filter(|&o| pred(&self.db.objs[o]))
            .collect();
        (!ok.is_empty()).then(|| *self.rng.pick(&ok))
    }

    /// A length for a transfer of at most `max` bytes (1 ..= min(max, 4096)).
    fn db_len(&mut self, max: usize) -> usize {
        let max = max.min(PAGE);
        match self.rng.below(5) {
            0 => 1,
            1 => max,
            _ => self.rng.range(1, max.min(600) as u64) as usize,
        }
    }

    /// Clears lost interrupts that may still be pending on either device (none is injected here,
    /// and no DMA of this operation may time out).
    fn db_quiet(&mut self) -> TestResult {
        for d in 0..2 {
            if !self.sh.quiet(d) {
                let r = self.db.files[d].inject_fault(0);
                self.db_ok("FAULT 0", r)?;
                // Whatever the model still counted as pending is gone: consumed, as far as
                // `timeout_allowed` goes. (`injected` stays the sum of every FAULT, the bound on
                // the device's timeout count: some lost interrupts end in a short count, not
                // `ETIMEDOUT`.)
                let injected = self.sh.injected[d].load(Ordering::SeqCst);
                self.sh.seen_timeouts[d].fetch_max(injected, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Hands every device mapping of buffer `o` to its device again after its pages changed (see
    /// the file header).
    fn db_refresh(&mut self, o: usize) -> TestResult {
        let mut own_done = false;
        let mut imp_done = vec![false; self.db.objs[o].imports.len()];
        for b in self.db.objs[o].open_dbufs() {
            if self.rng.chance(1, 2) {
                let rw = *self.rng.pick(&SYNC_RW);
                self.db_fd_sync(o, b, DMA_BUF_SYNC_END | rw, "SYNC END (to the devices)")?;
                own_done = true;
                for (i, imp) in self.db.objs[o].imports.iter().enumerate() {
                    imp_done[i] |= imp.dbuf == b;
                }
            }
        }
        if !own_done {
            let size = self.db.objs[o].bytes.len();
            if let Some(ex) = self.db.objs[o].exporter {
                self.db_sync(ex, 0, size, SyncDir::ForDevice)?;
            } else if let Some(&b) = self.db.objs[o].open_dbufs().first() {
                self.db_fd_sync(o, b, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW, "SYNC END")?;
                for (i, imp) in self.db.objs[o].imports.iter().enumerate() {
                    imp_done[i] |= imp.dbuf == b;
                }
            }
        }
        for (i, done) in imp_done.into_iter().enumerate() {
            if !done {
                let imp = self.db.objs[o].imports[i];
                let size = self.db.objs[o].bytes.len();
                self.db_sync((imp.d, imp.handle), 0, size, SyncDir::ForDevice)?;
            }
        }
        Ok(())
    }

    /// Reads one mapping of buffer `o` (if it has any) and checks every byte of it.
    fn db_check_a_map(&mut self, o: usize, what: &str) -> TestResult {
        let n = self.db.objs[o].maps.len();
        if n == 0 {
            return Ok(());
        }
        let k = self.rng.below(n as u64) as usize;
        self.db_check_map(o, k, what)
    }

    /// Checks mapping `k` of buffer `o` against the model, between `SYNC START` and `END` when
    /// its fd is open.
    fn db_check_map(&mut self, o: usize, k: usize, what: &str) -> TestResult {
        let b = self.db.objs[o].maps[k].dbuf;
        let open = self.db.objs[o].dbufs[b].fd.is_some();
        let rw = *self.rng.pick(&SYNC_RW);
        if open {
            self.db_fd_sync(o, b, DMA_BUF_SYNC_START | rw, "SYNC START (CPU read)")?;
        }
        let obj = &self.db.objs[o];
        let map = &obj.maps[k];
        let want = &obj.bytes[map.off..map.off + map.m.len()];
        self.db_same(
            &format!("{what}: the dma-buf mapping (from byte {})", map.off),
            &map.m,
            want,
        )?;
        self.note("dmabuf mapping-read", None);
        if open {
            self.db_fd_sync(o, b, DMA_BUF_SYNC_END | rw, "SYNC END (CPU read)")?;
        }
        Ok(())
    }

    /// Drops the buffers nothing holds any more.
    fn db_reap(&mut self) {
        self.db.objs.retain(Obj::alive);
    }

    /// A buffer of `size` bytes of `kind` on file `d`, its handle left to the file; `None` when
    /// the budget (shared with the other operations' buffers) is used up (`ENOMEM`).
    fn db_alloc(&mut self, d: usize, size: usize, kind: BufKind) -> Result<Option<u32>, String> {
        let what = format!("alloc {}", kind.name());
        let r = self.db.files[d]
            .alloc(size as u64, kind)
            .map(|b| b.into_handle());
        match r {
            Err(e) if e.raw_os_error() == Some(libc::ENOMEM) => {
                self.note(&format!("dmabuf {what}"), Some(libc::ENOMEM));
                Ok(None)
            }
            r => self.db_ok(&what, r).map(Some),
        }
    }

    /// Exports streaming buffer `h` of file `d` with random valid flags; a new dma-buf of `o`.
    fn db_export(&mut self, o: usize) -> TestResult {
        let Some((d, h)) = self.db.objs[o].exporter else {
            return Ok(());
        };
        let flags = *self.rng.pick(&[
            EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR,
            EDU_DMA_EXPORT_RDWR,
            EDU_DMA_EXPORT_CLOEXEC | EDU_DMA_EXPORT_RDWR,
            EDU_DMA_EXPORT_CLOEXEC,
            0,
        ]);
        let r = self.db.files[d].export(h, flags);
        let fd = self.db_ok("EXPORT", r)?;
        let rdwr = flags & EDU_DMA_EXPORT_RDWR != 0;
        self.db.objs[o].dbufs.push(DmaBuf { fd: Some(fd), rdwr });
        Ok(())
    }

    /// A new streaming buffer (zeroes) on a random file, exported.
    fn db_new(&mut self) -> TestResult {
        if self.db.objs.len() >= MAX_OBJS {
            return self.db_free();
        }
        let d = self.rng.below(2) as usize;
        let size = PAGE * self.rng.range(1, MAX_PAGES) as usize;
        let Some(h) = self.db_alloc(d, size, BufKind::Streaming)? else {
            return Ok(());
        };
        self.db.objs.push(Obj {
            bytes: vec![0; size],
            dev: d,
            exporter: Some((d, h)),
            dbufs: Vec::new(),
            imports: Vec::new(),
            maps: Vec::new(),
        });
        self.db_export(self.db.objs.len() - 1)
    }

    /// Another dma-buf of a live exporter.
    fn db_export_again(&mut self) -> TestResult {
        match self.pick_obj(|o| o.exporter.is_some()) {
            Some(o) => self.db_export(o),
            None => self.db_new(),
        }
    }

    /// EXPORT_RAW as given; an fd that should not have been made is closed.
    fn db_export_raw(
        &mut self,
        d: usize,
        req: EduDmaBufExport,
        want: i32,
        what: &str,
    ) -> TestResult {
        let mut req = req;
        let r = self.db.files[d].export_raw(&mut req).map(|()| {
            // SAFETY: on success the driver installed a new fd, owned by nobody else.
            drop(unsafe { OwnedFd::from_raw_fd(req.fd) })
        });
        self.db_expect(what, r, Some(want)).map(|_| ())
    }

    fn db_export_errors(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let live = self
            .db
            .objs
            .iter()
            .find_map(|o| o.exporter.filter(|e| e.0 == d));
        let import = self
            .db
            .objs
            .iter()
            .flat_map(|o| o.imports.iter())
            .find(|i| i.d == d)
            .map(|i| i.handle);
        let req = |handle: u32| EduDmaBufExport {
            handle,
            flags: EDU_DMA_EXPORT_RDWR,
            ..Default::default()
        };
        match self.rng.below(6) {
            0 => {
                // A coherent buffer: EINVAL.
                let Some(h) = self.db_alloc(d, PAGE, BufKind::Coherent)? else {
                    return Ok(());
                };
                self.db_export_raw(d, req(h), libc::EINVAL, "EXPORT(coherent)")?;
                let r = self.db.files[d].free(h);
                self.db_ok("BUF_FREE(coherent)", r)?;
                self.db.freed[d].push(h);
                Ok(())
            }
            1 if import.is_some() => {
                let h = import.unwrap_or_default();
                self.db_export_raw(d, req(h), libc::EINVAL, "EXPORT(import)")
            }
            2 | 1 => {
                let h = if self.db.freed[d].is_empty() || self.rng.chance(1, 4) {
                    *self.rng.pick(&[0, u32::MAX])
                } else {
                    *self.rng.pick(&self.db.freed[d])
                };
                self.db_export_raw(d, req(h), libc::ENOENT, "EXPORT(freed handle)")
            }
            3 => {
                // Unknown flags come first, whatever the handle (1 is O_WRONLY).
                let flags = (1u32 << self.rng.below(32)) | 1;
                let handle = live.map(|e| e.1).unwrap_or(0);
                let r = EduDmaBufExport {
                    handle,
                    flags: flags | EDU_DMA_EXPORT_RDWR,
                    ..Default::default()
                };
                self.db_export_raw(d, r, libc::EINVAL, "EXPORT(unknown flags)")
            }
            4 => {
                let handle = live.map(|e| e.1).unwrap_or(0);
                let r = EduDmaBufExport {
                    handle,
                    flags: EDU_DMA_EXPORT_RDWR,
                    reserved: self.rng.next_u32() | 1,
                    ..Default::default()
                };
                self.db_export_raw(d, r, libc::EINVAL, "EXPORT(reserved)")
            }
            _ => {
                // The node's mmap of an imported handle: EINVAL (map the dma-buf fd).
                let Some(h) = import else {
                    return self.db_export_again();
                };
                let r = self.db.files[d].map(u64::from(h) << 32, PAGE);
                self.db_expect("node mmap(import)", r, Some(libc::EINVAL))
                    .map(|_| ())
            }
        }
    }

    /// Imports an open dma-buf into the device that does not map the buffer yet; the handle's
    /// size is the buffer's.
    fn db_import(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.open_dbufs().is_empty() && o.importer().is_some())
        else {
            return self.db_new();
        };
        let bs = self.db.objs[o].open_dbufs();
        let b = *self.rng.pick(&bs);
        let Some(d) = self.db.objs[o].importer() else {
            return Ok(());
        };
        let mut req = EduDmaBufImport::default();
        if let Some(fd) = &self.db.objs[o].dbufs[b].fd {
            req.fd = fd.as_raw_fd();
        }
        let r = self.db.files[d].import_raw(&mut req);
        self.db_ok("IMPORT", r)?;
        self.db.objs[o].imports.push(Imp {
            d,
            handle: req.handle,
            dbuf: b,
        });
        let size = self.db.objs[o].bytes.len() as u64;
        if req.size != size {
            return Err(self.fail(
                "IMPORT",
                format!("size {} of a {size}-byte buffer", req.size),
            ));
        }
        Ok(())
    }

    fn db_import_raw(
        &mut self,
        d: usize,
        req: EduDmaBufImport,
        want: i32,
        what: &str,
    ) -> TestResult {
        let mut req = req;
        let r = self.db.files[d].import_raw(&mut req);
        if r.is_ok() {
            // Not expected: give the handle back before failing.
            let _ = self.db.files[d].free(req.handle);
        }
        self.db_expect(what, r, Some(want)).map(|_| ())
    }

    fn db_import_errors(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let req = |fd: i32| EduDmaBufImport {
            fd,
            ..Default::default()
        };
        let some_fd = self
            .db
            .objs
            .iter()
            .flat_map(|o| o.dbufs.iter())
            .find_map(|b| b.fd.as_ref().map(|f| f.as_raw_fd()));
        match self.rng.below(6) {
            0 => {
                // The device file itself is no dma-buf.
                let fd = self.db.files[self.rng.below(2) as usize].fd();
                self.db_import_raw(d, req(fd), libc::EINVAL, "IMPORT(device file)")
            }
            1 => {
                let f = std::fs::File::open("/dev/null").ctx("open /dev/null")?;
                self.db_import_raw(d, req(f.as_raw_fd()), libc::EINVAL, "IMPORT(/dev/null)")
            }
            2 => {
                // An fd just closed (this process opens none meanwhile), -1, or beyond any table.
                let fd = match self.rng.below(3) {
                    0 => std::fs::File::open("/dev/null")
                        .ctx("open /dev/null")?
                        .as_raw_fd(),
                    1 => -1,
                    _ => i32::MAX,
                };
                self.db_import_raw(d, req(fd), libc::EBADF, "IMPORT(closed fd)")
            }
            3 | 4 => {
                // Flags or reserved bits are refused before the fd is looked at.
                let mut r = req(some_fd.unwrap_or(-1));
                if self.rng.chance(1, 2) {
                    r.flags = self.rng.next_u32() | 1;
                } else {
                    r.reserved = self.rng.next_u32() | 1;
                }
                self.db_import_raw(d, r, libc::EINVAL, "IMPORT(flags, reserved)")
            }
            _ => {
                // A second free of a handle: ENOENT.
                let Some(&h) = self.db.freed[d].last() else {
                    return self.db_import();
                };
                let r = self.db.files[d].free(h);
                self.db_expect("BUF_FREE(freed)", r, Some(libc::ENOENT))
                    .map(|_| ())
            }
        }
    }

    /// mmap of an open dma-buf: valid (kept, and checked at once) or refused.
    fn db_mmap(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.open_dbufs().is_empty()) else {
            return self.db_new();
        };
        let bs = self.db.objs[o].open_dbufs();
        let b = *self.rng.pick(&bs);
        let pages = self.db.objs[o].bytes.len() / PAGE;
        let first = self.rng.below(pages as u64) as usize;
        let n = self.rng.range(1, (pages - first) as u64) as usize;
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        let rdwr = self.db.objs[o].dbufs[b].rdwr;
        let (prot, flags, len, want, what) = match (rdwr, self.rng.below(6)) {
            (false, 0..=2) => (
                rw,
                libc::MAP_SHARED,
                n,
                Some(libc::EACCES),
                "mmap(read-only, rw)",
            ),
            (false, _) => (
                libc::PROT_READ,
                libc::MAP_SHARED,
                n,
                Some(libc::EINVAL),
                "mmap(read-only, ro)",
            ),
            (true, 0..=2) => (rw, libc::MAP_SHARED, n, None, "mmap"),
            (true, 3) => (
                rw,
                libc::MAP_PRIVATE,
                n,
                Some(libc::EINVAL),
                "mmap(private)",
            ),
            (true, 4) => (
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_SHARED,
                n,
                Some(libc::EPERM),
                "mmap(exec)",
            ),
            (true, _) => (
                rw,
                libc::MAP_SHARED,
                pages - first + 1,
                Some(libc::EINVAL),
                "mmap(too long)",
            ),
        };
        let r = match &self.db.objs[o].dbufs[b].fd {
            // SAFETY: a mapping made with `prot` other than read-write is refused (checked
            // below) or dropped unread.
            Some(fd) => unsafe {
                db::map_with(fd.as_fd(), (first * PAGE) as u64, len * PAGE, prot, flags)
            },
            None => return Err(self.fail(what, "no fd".into())),
        };
        let Some(m) = self.db_expect(what, r, want)? else {
            return Ok(());
        };
        if want.is_some() || self.db.objs.iter().map(|o| o.maps.len()).sum::<usize>() >= MAX_MAPS {
            return Ok(());
        }
        self.db.objs[o].maps.push(Map {
            dbuf: b,
            off: first * PAGE,
            m,
        });
        let k = self.db.objs[o].maps.len() - 1;
        self.db_check_map(o, k, "a new mapping")
    }

    fn db_munmap(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.maps.is_empty()) else {
            return self.db_mmap();
        };
        let n = self.db.objs[o].maps.len();
        let k = self.rng.below(n as u64) as usize;
        drop(self.db.objs[o].maps.swap_remove(k));
        self.note("dmabuf munmap", None);
        Ok(())
    }

    fn db_close(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.open_dbufs().is_empty()) else {
            return self.db_new();
        };
        let bs = self.db.objs[o].open_dbufs();
        let b = *self.rng.pick(&bs);
        drop(self.db.objs[o].dbufs[b].fd.take());
        self.note("dmabuf close", None);
        Ok(())
    }

    /// BUF_FREE of the exporter's handle or of an import, whichever is drawn.
    fn db_free(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.handles().is_empty()) else {
            return Ok(());
        };
        let hs = self.db.objs[o].handles();
        let (d, h) = *self.rng.pick(&hs);
        let r = self.db.files[d].free(h);
        let is_exporter = self.db.objs[o].exporter == Some((d, h));
        self.db_ok(
            if is_exporter {
                "BUF_FREE(exporter)"
            } else {
                "BUF_FREE(import)"
            },
            r,
        )?;
        if is_exporter {
            self.db.objs[o].exporter = None;
        } else {
            self.db.objs[o]
                .imports
                .retain(|i| (i.d, i.handle) != (d, h));
        }
        self.db.freed[d].push(h);
        Ok(())
    }

    /// Closes and reopens one of the files: every handle of it goes (exporters and imports).
    fn db_reopen(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        self.db.files[d] = open(d as u32)?;
        for o in &mut self.db.objs {
            if o.exporter.is_some_and(|e| e.0 == d) {
                o.exporter = None;
            }
            o.imports.retain(|i| i.d != d);
        }
        self.db.freed[d].clear();
        self.note("dmabuf reopen", None);
        Ok(())
    }

    /// A transfer drawn: a buffer with a live handle, the handle (file, handle), and a length,
    /// an offset in the buffer and one in the window that fit.
    fn db_pick_xfer(&mut self) -> Option<Xfer> {
        let o = self.pick_obj(|o| !o.handles().is_empty())?;
        let hs = self.db.objs[o].handles();
        let dh = *self.rng.pick(&hs);
        let size = self.db.objs[o].bytes.len();
        let len = self.db_len(size);
        let off = self.rng.below((size - len + 1) as u64) as usize;
        let win = self.rng.below((PAGE - len + 1) as u64) as u32;
        Some(Xfer(o, dh, len, off, win))
    }

    /// The device writes a range of a buffer through one of its handles (window := random bytes,
    /// XFER window -> buffer); now and then an XFER past the end first (`EINVAL`).
    fn db_dma_write(&mut self) -> TestResult {
        let Some(Xfer(o, (d, h), len, off, win)) = self.db_pick_xfer() else {
            return self.db_new();
        };
        let data: Vec<u8> = (0..len).map(|_| self.rng.next_u32() as u8).collect();
        if self.rng.chance(1, 5) {
            let past = (self.db.objs[o].bytes.len() - len + 1) as u64 + self.rng.below(PAGE as u64);
            let r = self.db.files[d].xfer(h, past, win, len as u32, Dir::FromDevice, 0);
            self.db_expect("XFER(past the end)", r, Some(libc::EINVAL))?;
        }
        if self.rng.chance(1, 2) {
            self.db_sync((d, h), off, len, SyncDir::ForDevice)?;
        }
        let r = self.db.files[d].write_window_from(&data, win);
        self.db_ok("window := bytes", r)?;
        let r = self.db.files[d].xfer(h, off as u64, win, len as u32, Dir::FromDevice, 0);
        self.db_ok("XFER window -> buffer", r)?;
        self.db_device_wrote(o, (d, h), off, &data, "after a device write")
    }

    /// After the device wrote `data` at `off` of buffer `o` through handle `dh`: that handle's
    /// range to the CPU, the model updated, every other mapping handed to its device again (see
    /// the file header), then one mapping checked.
    fn db_device_wrote(
        &mut self,
        o: usize,
        dh: (usize, u32),
        off: usize,
        data: &[u8],
        what: &str,
    ) -> TestResult {
        self.db_sync(dh, off, data.len(), SyncDir::ForCpu)?;
        self.db.objs[o].bytes[off..off + data.len()].copy_from_slice(data);
        self.db_refresh(o)?;
        self.db_check_a_map(o, what)
    }

    /// The device reads a range of a buffer through one of its handles into the window, which
    /// must then hold the model's bytes.
    fn db_dma_read(&mut self) -> TestResult {
        let Some(Xfer(o, (d, h), len, off, win)) = self.db_pick_xfer() else {
            return self.db_new();
        };
        let r = self.db.files[d].xfer(h, off as u64, win, len as u32, Dir::ToDevice, 0);
        self.db_ok("XFER buffer -> window", r)?;
        let mut got = vec![0u8; len];
        let r = self.db.files[d].read_window_into(&mut got, win);
        self.db_ok("window -> user", r)?;
        let want = &self.db.objs[o].bytes[off..off + len];
        self.db_same(
            &format!("edu-dma{d} read {len} bytes at {off} through handle {h}"),
            &got,
            want,
        )
    }

    /// COPY with handles of the buffers on one or both sides, in one file: user -> handle,
    /// handle -> user, handle -> handle (two buffers, or one buffer through two handles with
    /// disjoint ranges).
    fn db_copy(&mut self) -> TestResult {
        let d = self.rng.below(2) as usize;
        let sides: Vec<(usize, u32)> = (0..self.db.objs.len())
            .flat_map(|o| {
                self.db.objs[o]
                    .handles()
                    .into_iter()
                    .filter(|&(dd, _)| dd == d)
                    .map(move |(_, h)| (o, h))
            })
            .collect();
        if sides.is_empty() {
            return self.db_import();
        }
        let (so, sh) = *self.rng.pick(&sides);
        let (to, th) = *self.rng.pick(&sides);
        match self.rng.below(3) {
            0 => {
                let size = self.db.objs[to].bytes.len();
                let len = self.db_len(size);
                let off = self.rng.below((size - len + 1) as u64) as usize;
                let src: Vec<u8> = (0..len).map(|_| self.rng.next_u32() as u8).collect();
                let dst = CopyDst::Buffer {
                    handle: th,
                    offset: off as u64,
                };
                let r = self.db.files[d].copy_with(CopySrc::User(&src), dst, len as u64, 0);
                let done = self.db_ok("COPY user -> handle", r)?;
                self.db_done(done, len)?;
                self.db_device_wrote(to, (d, th), off, &src, "after COPY user -> handle")
            }
            1 => {
                let size = self.db.objs[so].bytes.len();
                let len = self.db_len(size);
                let off = self.rng.below((size - len + 1) as u64) as usize;
                let mut got = vec![0u8; len];
                let src = CopySrc::Buffer {
                    handle: sh,
                    offset: off as u64,
                };
                let r = self.db.files[d].copy_with(src, CopyDst::User(&mut got), len as u64, 0);
                let done = self.db_ok("COPY handle -> user", r)?;
                self.db_done(done, len)?;
                let want = &self.db.objs[so].bytes[off..off + len];
                self.db_same(&format!("COPY of {len} bytes at {off} to user"), &got, want)
            }
            _ => {
                if sh == th {
                    return self.db_dma_read();
                }
                let (ss, ts) = (self.db.objs[so].bytes.len(), self.db.objs[to].bytes.len());
                let (len, soff, toff) = if so == to {
                    // One buffer through two handles: disjoint ranges.
                    let len = self.db_len(ss / 2);
                    let a = self.rng.below((ss - 2 * len + 1) as u64) as usize;
                    let b = a + len + self.rng.below((ss - a - 2 * len + 1) as u64) as usize;
                    if self.rng.chance(1, 2) {
                        (len, a, b)
                    } else {
                        (len, b, a)
                    }
                } else {
                    let len = self.db_len(ss.min(ts));
                    let soff = self.rng.below((ss - len + 1) as u64) as usize;
                    let toff = self.rng.below((ts - len + 1) as u64) as usize;
                    (len, soff, toff)
                };
                let r = self.db.files[d].copy_with(
                    CopySrc::Buffer {
                        handle: sh,
                        offset: soff as u64,
                    },
                    CopyDst::Buffer {
                        handle: th,
                        offset: toff as u64,
                    },
                    len as u64,
                    0,
                );
                let done = self.db_ok("COPY handle -> handle", r)?;
                self.db_done(done, len)?;
                let moved = self.db.objs[so].bytes[soff..soff + len].to_vec();
                self.db_device_wrote(to, (d, th), toff, &moved, "after COPY handle -> handle")
            }
        }
    }

    fn db_done(&self, done: u64, len: usize) -> TestResult {
        if done == len as u64 {
            Ok(())
        } else {
            Err(self.fail("dmabuf COPY", format!("done {done} of {len}")))
        }
    }

    /// The CPU writes a range of a buffer through a mapping (between `SYNC START` and `END` when
    /// the mapping's fd is open), then hands the device mappings over.
    fn db_cpu_write(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.maps.is_empty()) else {
            return self.db_mmap();
        };
        let k = self.rng.below(self.db.objs[o].maps.len() as u64) as usize;
        let (b, moff, mlen) = {
            let m = &self.db.objs[o].maps[k];
            (m.dbuf, m.off, m.m.len())
        };
        let len = self.rng.range(1, mlen as u64) as usize;
        let off = self.rng.below((mlen - len + 1) as u64) as usize;
        let data: Vec<u8> = (0..len).map(|_| self.rng.next_u32() as u8).collect();
        let open = self.db.objs[o].dbufs[b].fd.is_some();
        if open {
            self.db_fd_sync(
                o,
                b,
                DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE,
                "SYNC START (CPU write)",
            )?;
        }
        self.db.objs[o].maps[k].m[off..off + len].copy_from_slice(&data);
        self.db.objs[o].bytes[moff + off..moff + off + len].copy_from_slice(&data);
        self.note("dmabuf mapping-write", None);
        if open {
            self.db_fd_sync(
                o,
                b,
                DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE,
                "SYNC END (CPU write)",
            )?;
        }
        self.db_refresh(o)
    }

    /// `DMA_BUF_IOCTL_SYNC` on an open fd with random flags: the valid ones succeed (and change
    /// nothing: every mapping agrees with the pages), the rest are `EINVAL`.
    fn db_sync_flags(&mut self) -> TestResult {
        let Some(o) = self.pick_obj(|o| !o.open_dbufs().is_empty()) else {
            return self.db_new();
        };
        let bs = self.db.objs[o].open_dbufs();
        let b = *self.rng.pick(&bs);
        let flags = match self.rng.below(4) {
            0 | 1 => {
                let end = if self.rng.chance(1, 2) {
                    DMA_BUF_SYNC_END
                } else {
                    0
                };
                end | *self.rng.pick(&SYNC_RW)
            }
            2 => *self
                .rng
                .pick(&[0, DMA_BUF_SYNC_END, 8, DMA_BUF_SYNC_RW | 8, 1 << 63]),
            _ => self.rng.next_u64() | 8,
        };
        let valid =
            flags & !(DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW) == 0 && flags & DMA_BUF_SYNC_RW != 0;
        let r = match &self.db.objs[o].dbufs[b].fd {
            Some(fd) => db::sync(fd.as_fd(), flags),
            None => return Err(self.fail("SYNC", "no fd".into())),
        };
        self.db_expect("SYNC(random flags)", r, (!valid).then_some(libc::EINVAL))?;
        // START leaves the CPU the owner; hand the buffer back as every operation leaves it.
        if valid && flags & DMA_BUF_SYNC_END == 0 {
            self.db_fd_sync(
                o,
                b,
                DMA_BUF_SYNC_END | (flags & DMA_BUF_SYNC_RW),
                "SYNC END",
            )?;
        }
        self.db_check_a_map(o, "after SYNC")
    }

    /// One dma-buf operation (see the file header).
    pub(in crate::stress) fn dmabuf_op(&mut self) -> TestResult {
        self.db_quiet()?;
        let r = match self.rng.below(20) {
            0 | 1 => self.db_new(),
            2 => self.db_export_again(),
            3 => self.db_export_errors(),
            4 | 5 => self.db_import(),
            6 => self.db_import_errors(),
            7 => self.db_mmap(),
            8 => self.db_munmap(),
            9 => self.db_close(),
            10 => self.db_free(),
            11 | 12 => self.db_dma_write(),
            13 | 14 => self.db_dma_read(),
            15 | 16 => self.db_copy(),
            17 => self.db_cpu_write(),
            18 => self.db_sync_flags(),
            _ => self.db_reopen(),
        };
        self.db_reap();
        r
    }
}
