//! The queue beside the driver's other features: a dma-buf of a buffer that queued requests
//! write (`dmabuf_free`), and io_uring task work during a blocking `REAP` (`taskwork_reap`).

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use edu_dma::dmabuf::{self, DMA_BUF_SYNC_END, DMA_BUF_SYNC_READ, DMA_BUF_SYNC_START};
use edu_dma::uapi::*;
use edu_dma::{BufKind, Dir, Queue};
use io_uring::{opcode, types, IoUring};

use super::{check_cqe, reap_all};
use crate::harness::*;

/// Two queued device-to-RAM transfers into a streaming buffer whose handle is freed while they
/// are queued: the requests keep the buffer (and its device mappings) until they are reaped, and
/// the bytes land in the buffer's own pages, which a dma-buf exported before the free reads after
/// `DMA_BUF_IOCTL_SYNC` START (under `swiotlb=force` that sync is what copies the bounce buffer
/// back). The bytes outside the transfers stay zero.
pub fn dmabuf_free() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let buf = dev.alloc(2 * 4096, BufKind::Streaming).ctx("alloc")?;
    let fd = buf.export().ctx("export")?;
    let h = buf.handle();
    let want = pattern(4096, 0x51);
    dev.write_window_from(&want, 0).ctx("window <- pattern")?;
    let reqs = [
        EduDmaReq::buffer_xfer(1, h, 0, 0, 4096, Dir::FromDevice),
        EduDmaReq::buffer_xfer(2, h, 4096 + 100, 100, 3996, Dir::FromDevice),
    ];
    ensure_eq(q.submit_buffers(&reqs).ctx("submit 2")?, 2, "queued")?;
    buf.free().ctx("free the handle with the requests queued")?;
    let c = reap_all(&q, 2)?;
    check_cqe(&c[0], 1, 0, 4096, "first page")?;
    check_cqe(&c[1], 2, 0, 3996, "second page")?;
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ).ctx("SYNC START")?;
    let m = dmabuf::map(fd.as_fd(), 0, 8192).ctx("mmap the dma-buf")?;
    check_same(&m[..4096], &want, "first page through the dma-buf")?;
    check_same(
        &m[4096..4196],
        &[0; 100],
        "second page's head (not transferred)",
    )?;
    check_same(&m[4196..8192], &want[100..], "second page's rest")?;
    dmabuf::sync(fd.as_fd(), DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ).ctx("SYNC END")?;
    drop(m);
    drop(fd);
    round_trip_on(&dev, 0x52, "after the dma-buf went")
}

/// How long the queued work of [`taskwork_reap`] takes: 4 commands of 100 ms guest time.
const TW_REQS: u64 = 4;
/// When the pipe is written: within the second request.
const TW_DELAY: Duration = Duration::from_millis(150);

/// io_uring task work is no signal, also for the queue: this thread arms an `IORING_OP_READ` on
/// an empty pipe in a plain ring (completions are `TWA_SIGNAL` task work), queues four
/// device-to-RAM transfers and blocks in `REAP` for all four; another thread writes the pipe
/// 150 ms in. The task work breaks the reap's interruptible wait; the reap must not end in
/// `EINTR`: it ends in `ERESTARTSYS`, the task work runs, and the restarted reap returns the four
/// completions (status 0, every byte verified). The queued requests do not notice: a signal or
/// task work never ends a queued request.
pub fn taskwork_reap() -> TestResult {
    let dev = open(0)?;
    let q = Queue::new(&dev);
    let n = TW_REQS as usize;
    let buf = dev.alloc(TW_REQS * 4096, BufKind::Coherent).ctx("alloc")?;
    let m = buf.map().ctx("mmap")?;
    let want = pattern(4096, 0x53);
    dev.write_window_from(&want, 0).ctx("window <- pattern")?;
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 returned two new descriptors, owned here only.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut ring = IoUring::new(8).ctx("io_uring_setup (no flags)")?;
    let mut byte = [0u8; 1];
    let read = opcode::Read::new(types::Fd(rd.as_raw_fd()), byte.as_mut_ptr(), 1)
        .offset(u64::MAX)
        .build();
    // SAFETY: `byte` outlives the request: the completion is reaped below before it goes.
    unsafe { ring.submission().push(&read) }.map_err(|_| "submission queue full".to_string())?;
    ring.submit().ctx("io_uring_enter (submit the pipe read)")?;
    ensure(ring.completion().is_empty(), || {
        "the read of an empty pipe completed at once".to_string()
    })?;
    let reqs: Vec<EduDmaReq> = (0..TW_REQS)
        .map(|i| EduDmaReq::buffer_xfer(i, buf.handle(), i * 4096, 0, 4096, Dir::FromDevice))
        .collect();
    let (tx, rx) = mpsc::channel::<()>();
    let (r, took) = std::thread::scope(|s| {
        let wr = &wr;
        s.spawn(move || {
            if rx.recv().is_ok() {
                std::thread::sleep(TW_DELAY);
                // SAFETY: writes one byte from a valid buffer to the pipe.
                let _ = unsafe { libc::write(wr.as_raw_fd(), b"x".as_ptr().cast(), 1) };
            }
        });
        let t = Instant::now();
        let r = q.submit_buffers(&reqs).and_then(|got| {
            let _ = tx.send(());
            let mut out = vec![EduDmaCqe::default(); n];
            q.reap(&mut out, n as u32, 10_000)
                .map(|k| (got, out[..k].to_vec()))
        });
        (r, t.elapsed())
    });
    diag(format!(
        "REAP of {n} while io_uring task work arrives returned after {took:?}"
    ));
    let (got, cqes) =
        r.ctx("SUBMIT + blocking REAP while io_uring task work arrives (no signal)")?;
    ensure_eq(got, n, "queued")?;
    ensure_eq(cqes.len(), n, "completions of the one REAP")?;
    for (i, c) in cqes.iter().enumerate() {
        check_cqe(c, i as u64, 0, 4096, &format!("completion {i}"))?;
        check_same(
            &m[i * 4096..(i + 1) * 4096],
            &want,
            &format!("request {i}'s bytes"),
        )?;
    }
    ring.submit_and_wait(1)
        .ctx("io_uring_enter (reap the pipe read)")?;
    let res = ring.completion().next().map(|c| c.result());
    ensure_eq(res, Some(1), "the pipe read's completion")?;
    drop(ring);
    round_trip_on(&dev, 0x54, "transfer after closing the ring")
}
