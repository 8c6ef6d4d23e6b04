//! Test registry and the helpers the groups share: errno expectations, data checks, memory,
//! forked children, a verified round trip; `sysfs` (unbind/rebind) and `inflight` (a device
//! leaving under a running COPY, for the groups `unbind` and `unplug`) in their own files.

pub mod inflight;
pub mod interrupt;
pub mod sysfs;

use std::fmt::Display;
use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use edu_dma::{BufKind, Device, Dir, Mapping, SyncDir};

/// What every test returns: `Err(reason)` fails it.
pub type TestResult = Result<(), String>;

/// A named test.
pub struct Test {
    pub name: String,
    pub f: Box<dyn Fn() -> TestResult>,
}

/// Registers a test.
pub fn test(name: impl Into<String>, f: impl Fn() -> TestResult + 'static) -> Test {
    Test {
        name: name.into(),
        f: Box::new(f),
    }
}

/// Symbolic name of an errno (for messages).
pub fn errno_name(n: i32) -> String {
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSPC => "ENOSPC",
        libc::ENOSYS => "ENOSYS",
        libc::E2BIG => "E2BIG",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::ETIMEDOUT => "ETIMEDOUT",
        512 => "ERESTARTSYS(kernel-internal, leaked)",
        _ => "",
    };
    format!("{name}({n})")
}

fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => errno_name(n),
        None => e.to_string(),
    }
}

/// Fails unless `r` is an error with exactly `errno`.
pub fn expect_errno<T>(r: io::Result<T>, errno: i32, what: &str) -> TestResult {
    expect_errno_any(r, &[errno], what)
}

/// Fails unless `r` is an error with one of `errnos`.
pub fn expect_errno_any<T>(r: io::Result<T>, errnos: &[i32], what: &str) -> TestResult {
    let want = errnos
        .iter()
        .map(|&n| errno_name(n))
        .collect::<Vec<_>>()
        .join(" or ");
    match r {
        Ok(_) => Err(format!("{what}: succeeded, expected {want}")),
        Err(e) => match e.raw_os_error() {
            Some(n) if errnos.contains(&n) => Ok(()),
            _ => Err(format!("{what}: got {}, expected {want}", describe(&e))),
        },
    }
}

/// `io::Result` -> `Result<_, String>` with context.
pub trait Ctx<T> {
    fn ctx(self, what: impl Display) -> Result<T, String>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn ctx(self, what: impl Display) -> Result<T, String> {
        self.map_err(|e| format!("{what}: {}", describe(&e)))
    }
}

/// Fails with `msg` unless `cond`.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> TestResult {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

/// Fails unless `got == want`.
pub fn ensure_eq<T: PartialEq + std::fmt::Debug>(got: T, want: T, what: &str) -> TestResult {
    ensure(got == want, || {
        format!("{what}: got {got:?}, expected {want:?}")
    })
}

/// Prints a diagnostic line.
pub fn diag(msg: impl Display) {
    println!("# {msg}");
}

/// Skips (the rest of) a test: prints `# skip <reason>` and passes.
pub fn skip(reason: impl Display) -> TestResult {
    println!("# skip {reason}");
    Ok(())
}

pub use edu_dma::{fill_pattern, fill_pattern_inverted, pattern, pattern_byte};

/// Fails at the first byte of `buf` that differs from the pattern of `seed`.
pub fn check_pattern(buf: &[u8], seed: u64, what: &str) -> TestResult {
    match edu_dma::pattern_mismatch(buf, seed) {
        None => Ok(()),
        Some(i) => {
            let bad = buf
                .iter()
                .enumerate()
                .filter(|&(j, &b)| b != pattern_byte(seed, j as u64));
            Err(format!(
                "{what}: byte {i} of {} is {:#04x}, expected {:#04x} ({} bytes differ)",
                buf.len(),
                buf[i],
                pattern_byte(seed, i as u64),
                bad.count()
            ))
        }
    }
}

/// Fails at the first byte of `buf` that is not `val`.
pub fn check_fill(buf: &[u8], val: u8, what: &str) -> TestResult {
    match buf.iter().position(|&b| b != val) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: byte {i} of {} is {:#04x}, expected {val:#04x}",
            buf.len(),
            buf[i]
        )),
    }
}

/// Fails at the first differing byte.
pub fn check_same(got: &[u8], want: &[u8], what: &str) -> TestResult {
    ensure_eq(got.len(), want.len(), &format!("{what}: length"))?;
    match edu_dma::first_mismatch(got, want) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: byte {i} of {} is {:#04x}, expected {:#04x}",
            got.len(),
            got[i],
            want[i]
        )),
    }
}

/// Verifies `dst[at..at + n]` against the pattern of `seed` and every other byte of `dst`
/// against GUARD.
pub fn check_guarded(dst: &[u8], at: usize, n: usize, seed: u64, what: &str) -> TestResult {
    check_pattern(&dst[at..at + n], seed, &format!("{what}: data"))?;
    check_fill(&dst[..at], GUARD, &format!("{what}: guard before"))?;
    check_fill(&dst[at + n..], GUARD, &format!("{what}: guard after"))
}

/// Guard byte value and size around destinations.
pub const GUARD: u8 = 0xA5;
pub const GUARD_LEN: usize = 64;

/// Opens `/dev/edu-dma<n>`.
pub fn open(n: u32) -> Result<Device, String> {
    Device::open_instance(n).ctx(format!("open {}", Device::instance_path(n).display()))
}

/// The page size.
pub fn page() -> usize {
    edu_dma::page_size()
}

/// An anonymous private mapping (or a shared file mapping), unmapped on drop: the library's
/// [`Mapping`] with its address at hand.
pub struct Anon {
    pub ptr: NonNull<u8>,
    map: Mapping,
}

impl Anon {
    fn of(map: Mapping) -> io::Result<Anon> {
        let ptr = NonNull::new(map.as_ptr()).ok_or_else(|| io::Error::other("mmap returned 0"))?;
        Ok(Anon { ptr, map })
    }

    /// Anonymous `MAP_PRIVATE` read-write memory, `len` bytes.
    pub fn new(len: usize) -> io::Result<Anon> {
        Anon::of(Mapping::anonymous(len)?)
    }

    /// Anonymous `MAP_PRIVATE` memory with `prot` and extra `flags`.
    pub fn with(len: usize, prot: i32, flags: i32) -> io::Result<Anon> {
        // SAFETY: `bytes`/`bytes_mut` document that the protection must allow them.
        Anon::of(unsafe { Mapping::anonymous_with(len, prot, flags) }?)
    }

    /// A read-write `MAP_SHARED` mapping of `fd`.
    pub fn shared_file(fd: BorrowedFd<'_>, len: usize) -> io::Result<Anon> {
        Anon::of(Mapping::shared_file(fd, len)?)
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    /// The bytes (the mapping must be readable).
    pub fn bytes(&self) -> &[u8] {
        self.map.as_slice()
    }

    /// The bytes, writable (the mapping must be writable).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.map.as_mut_slice()
    }
}

/// An address that is certainly not mapped (a page mapped then unmapped).
pub fn unmapped_addr() -> Result<u64, String> {
    // A page that no later mapping of the test can take: a PROT_NONE reservation that is never
    // released (an munmapped page would be handed out again by the next mmap).
    // SAFETY: a fresh anonymous mapping; nothing aliases it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            page(),
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap PROT_NONE: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(p as u64)
}

/// Runs `child` in a forked process and returns its exit status (0 = success). The child
/// must stick to async-signal-safe work (raw memory access); it leaves with `_exit`.
pub fn in_child(child: impl FnOnce() -> i32) -> Result<ChildStatus, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};
    // SAFETY: the child only runs `child` (raw memory access) and `_exit`s.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            let code = child();
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => Ok(ChildStatus::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => Ok(ChildStatus::Signaled(sig as i32)),
            Ok(other) => Err(format!("waitpid: unexpected {other:?}")),
            Err(e) => Err(format!("waitpid: {e}")),
        },
    }
}

/// `madvise(MADV_DONTNEED)` of `len` bytes at `addr`, a range of the caller's own mappings
/// (async-signal-safe: usable in a forked child).
pub fn madvise_dontneed(addr: usize, len: usize) -> io::Result<()> {
    // SAFETY: MADV_DONTNEED on the caller's own mappings only drops page table entries; no Rust
    // reference relies on them (the next access faults or gets a signal).
    let r = unsafe { libc::madvise(addr as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A thread of this process, as a handle another thread can signal: nix's `Pthread` is an integer
/// on glibc but a raw pointer on musl (the arm64 binaries), which is not `Send`.
pub struct ThreadHandle(nix::sys::pthread::Pthread);

// SAFETY: a pthread_t is an opaque name of a thread, not memory the thread owns; pthread_kill
// takes it from any thread of the process while that thread is joinable (the callers signal a
// scoped thread before they join it).
unsafe impl Send for ThreadHandle {}

impl ThreadHandle {
    /// The calling thread.
    pub fn current() -> Self {
        Self(nix::sys::pthread::pthread_self())
    }

    /// `pthread_kill` of the thread with `sig`.
    pub fn signal(&self, sig: nix::sys::signal::Signal) -> nix::Result<()> {
        nix::sys::pthread::pthread_kill(self.0, sig)
    }
}

/// How a forked child ended.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildStatus {
    Exited(i32),
    Signaled(i32),
}

/// Touches every byte of `m`, the coherent mapping of a device that went away (`what`), in a
/// forked child: the mapping must have been zapped, so the child must die of SIGBUS.
pub fn expect_zapped(m: &Mapping, seed: u64, what: &str) -> TestResult {
    let (ptr, len) = (m.as_ptr() as usize, m.len());
    let status = in_child(|| {
        // SAFETY: the inherited mapping; touching it is the point.
        let s = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
        let sum = s.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        std::hint::black_box(sum);
        if edu_dma::pattern_mismatch(s, seed).is_none() {
            0
        } else {
            3
        }
    })?;
    match status {
        ChildStatus::Signaled(libc::SIGBUS) => {
            diag(format!(
                "{what}: coherent mapping of {len} bytes: SIGBUS on access (zapped)"
            ));
            Ok(())
        }
        other => Err(format!(
            "touching the coherent mapping {what}: child {other:?} \
             (0: readable with the old data, 3: readable, data differ), expected SIGBUS"
        )),
    }
}

/// A verified round trip on an open file: 4096 bytes coherent buffer (pattern `seed`) -> window
/// -> streaming buffer, and a 5000-byte COPY (pattern `seed + 1`) between heap buffers.
pub fn round_trip_on(dev: &Device, seed: u64, what: &str) -> TestResult {
    let src = dev
        .alloc(4096, BufKind::Coherent)
        .ctx(format!("{what}: alloc coherent"))?;
    let dst = dev
        .alloc(4096, BufKind::Streaming)
        .ctx(format!("{what}: alloc streaming"))?;
    let mut sm = src.map().ctx(format!("{what}: mmap"))?;
    let mut dm = dst.map().ctx(format!("{what}: mmap"))?;
    fill_pattern(&mut sm, seed);
    dm.fill(!0);
    dst.sync(0, 4096, SyncDir::ForDevice)
        .ctx(format!("{what}: sync"))?;
    src.xfer(0, 0, 4096, Dir::ToDevice, 0)
        .ctx(format!("{what}: xfer to device"))?;
    dst.xfer(0, 0, 4096, Dir::FromDevice, 0)
        .ctx(format!("{what}: xfer from device"))?;
    dst.sync(0, 4096, SyncDir::ForCpu)
        .ctx(format!("{what}: sync"))?;
    check_pattern(&dm, seed, &format!("{what}: buffer round trip"))?;
    let v = pattern(5000, seed + 1);
    let mut out = vec![GUARD; 5000];
    let done = dev.copy(&v, &mut out).ctx(format!("{what}: copy"))?;
    ensure_eq(done, 5000, &format!("{what}: copy done"))?;
    check_pattern(&out, seed + 1, &format!("{what}: copy"))
}

/// [`round_trip_on`] on a new file of `/dev/edu-dma<d>`.
pub fn verified_round_trip(d: u32, seed: u64, what: &str) -> TestResult {
    round_trip_on(&open(d)?, seed, &format!("{what}: edu-dma{d}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_expectations() {
        let e = |n| Err::<(), _>(io::Error::from_raw_os_error(n));
        assert!(expect_errno(e(libc::EINVAL), libc::EINVAL, "x").is_ok());
        let r = expect_errno(e(libc::EFAULT), libc::EINVAL, "x");
        assert_eq!(r, Err("x: got EFAULT(14), expected EINVAL(22)".to_string()));
        assert!(expect_errno(Ok(()), libc::EINVAL, "x").is_err());
        assert!(expect_errno(e(512), libc::EINTR, "x")
            .unwrap_err()
            .contains("ERESTARTSYS"));
        assert!(expect_errno_any(e(libc::ENOMEM), &[libc::EINVAL, libc::ENOMEM], "x").is_ok());
    }

    #[test]
    fn patterns() {
        let mut v = pattern(4096, 9);
        assert!(check_pattern(&v, 9, "p").is_ok());
        assert!(check_pattern(&v, 10, "p").is_err(), "seeds differ");
        v[4000] ^= 1;
        let err = check_pattern(&v, 9, "p").unwrap_err();
        assert!(err.contains("byte 4000"), "{err}");
        assert!(check_fill(&[GUARD; 64], GUARD, "g").is_ok());
        assert!(check_same(&[1, 2], &[1, 3], "s").is_err());
    }

    #[test]
    fn children() {
        assert_eq!(in_child(|| 0), Ok(ChildStatus::Exited(0)));
        assert_eq!(in_child(|| 7), Ok(ChildStatus::Exited(7)));
        let st = in_child(|| {
            // SAFETY: raising a signal in the child.
            unsafe { libc::raise(libc::SIGKILL) };
            0
        });
        assert_eq!(st, Ok(ChildStatus::Signaled(libc::SIGKILL)));
    }

    #[test]
    fn anonymous_memory() {
        let mut a = Anon::new(2 * page()).expect("mmap");
        a.bytes_mut()[page()] = 1;
        assert_eq!(a.bytes()[page()], 1);
        assert_ne!(unmapped_addr().expect("addr"), 0);
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// `CAP_IPC_LOCK`: may lock (and pin) memory beyond `RLIMIT_MEMLOCK`.
pub const CAP_IPC_LOCK: u32 = 14;

/// capget (`None`) or capset of the calling thread's capabilities.
fn caps(set: Option<&[CapData; 2]>) -> io::Result<[CapData; 2]> {
    let mut h = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget/capset with a v3 header and two data structs, as the ABI requires.
    let r = unsafe {
        match set {
            None => libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()),
            Some(s) => libc::syscall(libc::SYS_capset, &mut h, s.as_ptr()),
        }
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(d)
}

/// Whether `CAP_IPC_LOCK` is in the calling thread's effective set.
pub fn has_cap_ipc_lock() -> Result<bool, String> {
    Ok(caps(None).ctx("capget")?[0].effective & (1 << CAP_IPC_LOCK) != 0)
}

/// Runs `f` without `CAP_IPC_LOCK` in the effective set (restored right after), so that
/// long-term pins are charged against `RLIMIT_MEMLOCK` (io_uring, the driver's registrations).
pub fn without_cap_ipc_lock<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let saved = caps(None).ctx("capget")?;
    let mut without = saved;
    without[0].effective &= !(1 << CAP_IPC_LOCK);
    caps(Some(&without)).ctx("capset without CAP_IPC_LOCK")?;
    let r = f();
    caps(Some(&saved)).ctx("capset (restore)")?;
    Ok(r)
}

/// `VmPin` of /proc/self/status in KiB: the long-term pinned pages charged to this process
/// (io_uring's registered buffers, the driver's registrations).
pub fn vm_pin_kib() -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").ctx("read /proc/self/status")?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| "no VmPin in /proc/self/status".to_string())
}

/// Waits (up to 2 s) for `VmPin` to be `kib`; fails with the last value otherwise.
pub fn expect_vm_pin(kib: u64, what: &str) -> TestResult {
    let start = std::time::Instant::now();
    loop {
        let v = vm_pin_kib()?;
        if v == kib {
            return Ok(());
        }
        if start.elapsed() > std::time::Duration::from_secs(2) {
            return Err(format!("{what}: VmPin {v} kB, expected {kib} kB"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
