//! Breaking a blocking driver call's wait from outside, the two ways the groups `timeouts` and
//! `queue` test: a real signal (`SIGUSR1`, sent to the calling thread until the call returns) and
//! io_uring task work, which is no signal (a pipe read armed in a plain ring, completed by a
//! write from another thread).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

use super::{ensure, ensure_eq, Ctx, TestResult, ThreadHandle};

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Runs `call` on a new thread and sends that thread `SIGUSR1` every 50 ms until `call` returns,
/// at most `max` times. The handler does nothing and has no `SA_RESTART`, so an interrupted
/// ioctl comes back with `EINTR`; the previous disposition is restored afterwards. Signals go on
/// until the thread leaves the call: one that arrives before it blocks is only handled. Returns
/// what `call` returned, how long it took, and how many signals were sent.
pub fn signalled<T: Send>(
    max: u32,
    call: impl FnOnce() -> io::Result<T> + Send,
) -> Result<(io::Result<T>, Duration, u32), String> {
    let sa = SigAction::new(
        SigHandler::Handler(on_sigusr1),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler does nothing.
    let old = unsafe { sigaction(Signal::SIGUSR1, &sa) }.map_err(|e| format!("sigaction: {e}"))?;
    let (tx, rx) = mpsc::channel();
    let r = std::thread::scope(|s| {
        let h = s.spawn(move || {
            let _ = tx.send(ThreadHandle::current());
            let t = Instant::now();
            let r = call();
            (r, t.elapsed())
        });
        let mut signals = 0;
        if let Ok(tid) = rx.recv() {
            for _ in 0..max {
                std::thread::sleep(Duration::from_millis(50));
                if h.is_finished() {
                    break;
                }
                if tid.signal(Signal::SIGUSR1).is_ok() {
                    signals += 1;
                }
            }
        }
        match h.join() {
            Ok((r, took)) => (r, took, signals),
            Err(_) => (
                Err(io::Error::other("thread panicked")),
                Duration::ZERO,
                signals,
            ),
        }
    });
    // SAFETY: restoring the previous disposition.
    let _ = unsafe { sigaction(Signal::SIGUSR1, &old) };
    Ok(r)
}

/// An `IORING_OP_READ` of one byte armed on an empty pipe in a plain ring (no `DEFER_TASKRUN`):
/// once the pipe is written, its completion is queued as `TWA_SIGNAL` task work
/// (`TIF_NOTIFY_SIGNAL`) on the thread that armed it, which breaks that thread's interruptible
/// waits (`signal_pending()` is true) though no signal is sent.
pub struct ArmedRead {
    ring: IoUring,
    rd: OwnedFd,
    wr: OwnedFd,
}

impl ArmedRead {
    /// Arms the read on this thread; checks it did not complete at once.
    pub fn new() -> Result<Self, String> {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(format!("pipe2: {}", io::Error::last_os_error()));
        }
        // SAFETY: pipe2 returned two new descriptors, owned here only.
        let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut ring = IoUring::new(8).ctx("io_uring_setup (no flags)")?;
        // Leaked: the kernel may write it until the ring's teardown, which ends asynchronously
        // after the ring's fd is closed.
        let byte: &'static mut [u8; 1] = Box::leak(Box::new([0u8; 1]));
        let read = opcode::Read::new(types::Fd(rd.as_raw_fd()), byte.as_mut_ptr(), 1)
            .offset(u64::MAX)
            .build();
        // SAFETY: `byte` lives forever.
        unsafe { ring.submission().push(&read) }
            .map_err(|_| "submission queue full".to_string())?;
        ring.submit().ctx("io_uring_enter (submit the pipe read)")?;
        ensure(ring.completion().is_empty(), || {
            "the read of an empty pipe completed at once".to_string()
        })?;
        Ok(Self { ring, rd, wr })
    }

    /// Runs `call` on this thread while another thread writes the pipe `delay` after `call`
    /// calls the start function it is given (it may not: then the pipe is not written). Returns
    /// what `call` returned and how long it took.
    pub fn during<T>(&self, delay: Duration, call: impl FnOnce(&dyn Fn()) -> T) -> (T, Duration) {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let wr = &self.wr;
            s.spawn(move || {
                if rx.recv().is_ok() {
                    std::thread::sleep(delay);
                    // SAFETY: writes one byte from a valid buffer to the pipe.
                    let _ = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
                }
            });
            let start = || {
                let _ = tx.send(());
            };
            let t = Instant::now();
            let r = call(&start);
            drop(tx);
            (r, t.elapsed())
        })
    }

    /// Reaps the read's completion (it must have read the one byte) and closes the ring.
    pub fn reap(mut self) -> TestResult {
        self.ring
            .submit_and_wait(1)
            .ctx("io_uring_enter (reap the pipe read)")?;
        let res = self.ring.completion().next().map(|c| c.result());
        ensure_eq(res, Some(1), "the pipe read's completion")?;
        drop((self.ring, self.rd));
        Ok(())
    }
}
