//! `send(MSG_ZEROCOPY)` from the mappings over loopback TCP: the socket takes references on the
//! mapping's pages (GUP) instead of copying them, and reports on the error queue when it let go
//! (`SO_EE_ORIGIN_ZEROCOPY`, the range of send calls done). Loopback delivers the skb to a local
//! socket, which copies the frags first: the notification says `SO_EE_CODE_ZEROCOPY_COPIED`, and
//! both codes are accepted (what matters here is that the pages were taken, not copied, at send).

use std::io::{self, Read, Write};
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use edu_dma::{BufKind, Mapping};

use super::*;

/// `SO_EE_ORIGIN_ZEROCOPY` (linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// `SO_EE_CODE_ZEROCOPY_COPIED` (linux/errqueue.h).
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;
/// How long a receive or a notification may take (guest time; they take microseconds).
const WAIT: Duration = Duration::from_secs(10);

/// Brings `lo` up (the initramfs does not): `SIOCGIFFLAGS`, `| IFF_UP`, `SIOCSIFFLAGS`.
pub fn loopback_up() -> TestResult {
    // SAFETY: plain socket creation; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    cvt(fd as isize).ctx("socket for SIOCSIFFLAGS")?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero is a valid `ifreq`.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo") {
        *d = *s as libc::c_char;
    }
    // SAFETY: `ifr` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills its flags.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) };
    cvt(r as isize).ctx("SIOCGIFFLAGS lo")?;
    // SAFETY: SIOCGIFFLAGS wrote the flags member of the union.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `ifr`.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS as _, &ifr) };
    cvt(r as isize).ctx("SIOCSIFFLAGS lo up")?;
    Ok(())
}

/// A connected loopback TCP pair (sender, receiver). `rcvbuf`: `SO_RCVBUF` of the listening
/// socket before `listen`, inherited by the receiver (so its window is small from the SYN on).
pub(super) fn tcp_pair(rcvbuf: Option<i32>) -> Result<(TcpStream, TcpStream), String> {
    loopback_up()?;
    // SAFETY: plain socket creation; the descriptor is owned right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    cvt(fd as isize).ctx("socket")?;
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Some(n) = rcvbuf {
        setsockopt_int(fd.as_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, n).ctx("SO_RCVBUF")?;
    }
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `sa` is a valid sockaddr_in of the size passed.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    cvt(r as isize).ctx("bind 127.0.0.1:0")?;
    // SAFETY: listen on a bound socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), 1) } as isize).ctx("listen")?;
    let listener = TcpListener::from(fd);
    let port = listener.local_addr().ctx("getsockname")?.port();
    let tx = TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).ctx("connect")?;
    let (rx, _) = listener.accept().ctx("accept")?;
    rx.set_read_timeout(Some(WAIT)).ctx("SO_RCVTIMEO")?;
    setsockopt_int(tx.as_fd(), libc::SOL_SOCKET, libc::SO_ZEROCOPY, 1).ctx("SO_ZEROCOPY")?;
    Ok((tx, rx))
}

/// One `send(MSG_ZEROCOPY)` of `len` bytes at `ptr`.
pub(super) fn send_zc(tx: &TcpStream, m: &Mapping, len: usize) -> io::Result<usize> {
    let len = len.min(m.len());
    // SAFETY: `m` is a live mapping of at least `len` bytes; the kernel only reads it (and keeps
    // page references, not the address, past the call).
    cvt(unsafe { libc::send(tx.as_raw_fd(), m.as_ptr().cast(), len, libc::MSG_ZEROCOPY) })
}

/// A zerocopy completion from the error queue.
#[derive(Debug)]
pub(super) struct Notification {
    errno: u32,
    origin: u8,
    code: u8,
    /// First and last send call (counted from 0 per socket) the notification covers.
    lo: u32,
    hi: u32,
}

/// One message of the error queue, without waiting (`EAGAIN` when it is empty).
fn read_errqueue(tx: &TcpStream) -> io::Result<Notification> {
    let mut ctrl = [0u64; 16];
    // SAFETY: all-zero is a valid msghdr (no name, no iovec).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = ctrl.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&ctrl) as _;
    // SAFETY: `msg` points at `ctrl`, writable for msg_controllen bytes.
    let r = unsafe {
        libc::recvmsg(
            tx.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    cvt(r)?;
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !c.is_null() {
        // SAFETY: `c` is a control message header inside `ctrl`.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_IP && h.cmsg_type == libc::IP_RECVERR {
            // SAFETY: an IP_RECVERR message carries a sock_extended_err (maybe unaligned).
            let ee: libc::sock_extended_err =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c).cast()) };
            return Ok(Notification {
                errno: ee.ee_errno,
                origin: ee.ee_origin,
                code: ee.ee_code,
                lo: ee.ee_info,
                hi: ee.ee_data,
            });
        }
        // SAFETY: as above.
        c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
    }
    Err(io::Error::other("error queue message without IP_RECVERR"))
}

/// Waits (up to WAIT) for the error queue to have a message (`POLLERR`) and reads it.
pub(super) fn wait_notification(tx: &TcpStream) -> Result<Notification, String> {
    let mut p = libc::pollfd {
        fd: tx.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, WAIT.as_millis() as i32) };
    cvt(r as isize).ctx("poll for POLLERR")?;
    ensure(p.revents & libc::POLLERR != 0, || {
        format!("no zerocopy notification within {WAIT:?}")
    })?;
    read_errqueue(tx).ctx("recvmsg(MSG_ERRQUEUE)")
}

/// The notification of exactly the send calls `lo..=hi`, without error.
pub(super) fn check_notification(n: &Notification, lo: u32, hi: u32, what: &str) -> TestResult {
    ensure_eq(
        n.origin,
        SO_EE_ORIGIN_ZEROCOPY,
        &format!("{what}: ee_origin"),
    )?;
    ensure_eq(n.errno, 0, &format!("{what}: ee_errno"))?;
    ensure_eq(
        (n.lo, n.hi),
        (lo, hi),
        &format!("{what}: send calls covered"),
    )?;
    ensure(n.code == 0 || n.code == SO_EE_CODE_ZEROCOPY_COPIED, || {
        format!("{what}: ee_code {}", n.code)
    })?;
    diag(format!(
        "{what}: notification for sends {lo}..={hi}, {}",
        if n.code == 0 {
            "zero-copy to the end"
        } else {
            "SO_EE_CODE_ZEROCOPY_COPIED (loopback copied at delivery)"
        }
    ));
    Ok(())
}

/// The error queue is empty: the socket still holds the pages of every zerocopy send.
pub(super) fn no_notification(tx: &TcpStream, what: &str) -> TestResult {
    expect_errno(read_errqueue(tx), libc::EAGAIN, what)
}

/// device -> streaming buffer -> `send(MSG_ZEROCOPY)` -> receiver (into a streaming mapping) ->
/// device -> compare; the completion is for send 0.
pub fn streaming_send() -> TestResult {
    let (tx, mut rx) = tcp_pair(None)?;
    let dev = open(0)?;
    let src = device_filled(&dev, BufKind::Streaming, LEN, 3200)?;
    let n = send_zc(&tx, &src.map, LEN).ctx("send(MSG_ZEROCOPY) from the streaming mapping")?;
    ensure_eq(n, LEN, "bytes sent")?;
    let want = pattern(LEN, 3200);
    let mut dst = client_target(&dev, &want)?;
    rx.read_exact(&mut dst.map[..LEN])
        .ctx("receive into a streaming mapping")?;
    verify_via_device(&dst, &want, "received")?;
    let n = wait_notification(&tx)?;
    check_notification(&n, 0, 0, "MSG_ZEROCOPY from a streaming mapping")?;
    no_notification(&tx, "a second notification")
}

/// Bytes queued ahead of the zerocopy send: far more than the receiver's window.
pub(super) const FILL: usize = 64 << 10;

/// `BUF_FREE` and `munmap` of the buffer while a `MSG_ZEROCOPY` send still holds its pages, then
/// its pages' likely successors filled with junk: the receiver still gets the bytes that were
/// sent. Deterministic: the receiver (SO_RCVBUF 4 KiB, not reading) has its window closed by the
/// FILL bytes queued first, so the zerocopy bytes cannot leave the sender before the receiver
/// reads; the error queue is checked empty at the moment of the free (the pages are still
/// referenced by the socket), and the completion comes only after the receiver drained it all.
pub fn free_before_completion() -> TestResult {
    let (mut tx, mut rx) = tcp_pair(Some(4096))?;
    // Room for everything in the send queue (root may exceed wmem_max), so no send blocks.
    setsockopt_int(tx.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 1 << 20)
        .ctx("SO_SNDBUFFORCE")?;
    let filler = pattern(FILL, 3210);
    tx.write_all(&filler).ctx("send the filler")?;
    let dev = open(0)?;
    let src = device_filled(&dev, BufKind::Streaming, LEN, 3211)?;
    let n = send_zc(&tx, &src.map, LEN).ctx("send(MSG_ZEROCOPY)")?;
    ensure_eq(n, LEN, "bytes sent")?;
    no_notification(
        &tx,
        "error queue before the free (the send holds the pages)",
    )?;
    let Mapped { buf, map } = src;
    buf.free().ctx("BUF_FREE with the send in flight")?;
    drop(map);
    // Whatever reuses the freed pages writes junk over them: new buffers and anonymous memory.
    let mut junk = Vec::new();
    for _ in 0..8 {
        let b = dev
            .alloc(LEN as u64, BufKind::Streaming)
            .ctx("alloc junk")?;
        let mut m = b.map().ctx("mmap junk")?;
        m.fill(0xEE);
        junk.push((b, m));
    }
    let mut anon = Mapping::anonymous(4 << 20).ctx("anonymous junk")?;
    anon.fill(0xEE);
    no_notification(&tx, "error queue after the free")?;
    let mut got = vec![0u8; FILL + LEN];
    rx.read_exact(&mut got).ctx("receive filler and payload")?;
    check_same(&got[..FILL], &filler, "filler")?;
    check_pattern(
        &got[FILL..],
        3211,
        "payload sent from the freed, unmapped buffer",
    )?;
    let n = wait_notification(&tx)?;
    check_notification(&n, 0, 0, "after BUF_FREE + munmap")
}

/// `send(MSG_ZEROCOPY)` from a coherent mapping, then a plain `send` of it (a copy, which always
/// works), then a zerocopy send from a streaming mapping. PFN-mapped: GUP refuses the first,
/// `EFAULT`, nothing sent, no notification, and the failed call takes no send number (the
/// streaming send is notified as send 0). Page-backed (IOMMU): the first is sent (send 0, the
/// streaming one send 1). The receiver checks the stream either way.
pub fn coherent_send() -> TestResult {
    let (mut tx, mut rx) = tcp_pair(None)?;
    let dev = open(0)?;
    let coh = device_filled(&dev, BufKind::Coherent, LEN, 3220)?;
    let backing = coherent_backing(&coh.map)?;
    let r = send_zc(&tx, &coh.map, LEN);
    let mut seeds = Vec::new();
    match backing {
        Backing::Pfn => {
            expect_errno(
                r,
                libc::EFAULT,
                "send(MSG_ZEROCOPY) from a PFN-mapped coherent buffer",
            )?;
            no_notification(&tx, "error queue after the refused send")?;
        }
        Backing::Pages => {
            let n = r.ctx("send(MSG_ZEROCOPY) from a page-backed coherent buffer")?;
            ensure_eq(n, LEN, "bytes sent")?;
            seeds.push(3220);
        }
    }
    tx.write_all(&coh.map[..LEN])
        .ctx("plain send from the coherent mapping")?;
    seeds.push(3220);
    let st = device_filled(&dev, BufKind::Streaming, LEN, 3221)?;
    let n = send_zc(&tx, &st.map, LEN).ctx("send(MSG_ZEROCOPY) from a streaming mapping")?;
    ensure_eq(n, LEN, "bytes sent")?;
    seeds.push(3221);
    let mut got = vec![0u8; seeds.len() * LEN];
    rx.read_exact(&mut got).ctx("receive")?;
    for (k, (chunk, seed)) in got.chunks(LEN).zip(&seeds).enumerate() {
        check_pattern(chunk, *seed, &format!("received block {k}"))?;
    }
    let last = (seeds.len() - 2) as u32;
    // One notification may cover several sends: collect until the last one is covered.
    let mut next = 0;
    while next <= last {
        let n = wait_notification(&tx)?;
        ensure(n.lo == next && n.hi >= n.lo && n.hi <= last, || {
            format!(
                "notification for sends {}..={}, expected from {next} up to {last}",
                n.lo, n.hi
            )
        })?;
        check_notification(
            &n,
            n.lo,
            n.hi,
            &format!("{backing:?}-backed coherent, then streaming"),
        )?;
        next = n.hi + 1;
    }
    no_notification(&tx, "a further notification")
}
