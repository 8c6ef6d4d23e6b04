//! A device going away while streaming pages of its buffers are in use by three clients: a
//! `MSG_ZEROCOPY` send (held in the socket behind a closed receive window), an `O_DIRECT` write
//! submitted through io_uring and not yet reaped, and a registered io_uring fixed buffer. The
//! body of `onward.unbind_inflight` (edu-dma1 unbound through sysfs, then rebound) and of
//! `unplug.onward_inflight` (edu-dma2 hot-unplugged by the host, `scripts/vm --hotplug 2`, when
//! the guest prints `EDU-UNPLUG-NOW 2`). Unbind and unplug unmap the buffers from the device;
//! their pages stay ordinary memory owned by whoever holds them, so every client finishes with
//! the device's bytes. The checks hold whatever the timing (the `O_DIRECT` write may finish
//! before or after the device leaves; either way it must write the bytes), and the data is
//! verified by the other device, edu-dma0. dma-buf both ways rides along: edu-dma0 keeps using
//! an import of the leaving device's buffer, and the leaving device's own import is detached.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use edu_dma::{BufKind, Device, Dir, SyncDir};
use io_uring::{opcode, types};

use super::uring::{register, ring, write_fixed_then_unregister};
use super::zerocopy::{
    check_notification, no_notification, send_zc, tcp_pair, wait_notification, FILL,
};
use super::*;
use crate::harness::inflight::How;
use crate::harness::sysfs::unbind;

/// The device each way of leaving takes: unbind edu-dma1 (bus 0 in every boot); unplug the second
/// hot-pluggable one, edu-dma2 (edu-dma1 is `unplug.inflight`'s).
fn instance(how: How) -> u32 {
    match how {
        How::Unbind => 1,
        How::Unplug => 2,
    }
}

pub fn inflight(how: How) -> TestResult {
    let n = instance(how);
    let path = Device::instance_path(n);
    let dev = open(n)?;
    let addr = dev.info().ctx("info")?.pci_address();
    let check = open(0)?;
    let before_pin = vm_pin_kib()?;

    // 1. A zerocopy send the receiver's closed window keeps in the socket.
    let (mut tx, mut rx) = tcp_pair(Some(4096))?;
    setsockopt_int(tx.as_fd(), libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, 1 << 20)
        .ctx("SO_SNDBUFFORCE")?;
    let filler = pattern(FILL, 3500);
    std::io::Write::write_all(&mut tx, &filler).ctx("send the filler")?;
    let zc = device_filled(&dev, BufKind::Streaming, LEN, 3501)?;
    ensure_eq(
        send_zc(&tx, &zc.map, LEN).ctx("send(MSG_ZEROCOPY)")?,
        LEN,
        "bytes sent",
    )?;
    no_notification(&tx, "error queue before the device left")?;

    // 2. A registered fixed buffer; 3. an O_DIRECT write from a third buffer, submitted only.
    let reg = device_filled(&dev, BufKind::Streaming, LEN, 3502)?;
    let dio = device_filled(&dev, BufKind::Streaming, LEN, 3503)?;
    let mut ring = ring()?;
    // SAFETY: `reg` stays mapped until after the unregister below.
    unsafe { register(&ring, &[reg.iovec(LEN)]) }.ctx("IORING_REGISTER_BUFFERS")?;
    let (fd, path_d) = ext4_file("unbind-dio")?;
    let (ff, path_f) = ext4_file("unbind-fixed")?;
    let w = opcode::Write::new(types::Fd(fd.as_raw_fd()), dio.map.as_ptr(), LEN as u32)
        .offset(0)
        .build()
        .user_data(3);
    // SAFETY: `dio` stays mapped until the completion is reaped below.
    unsafe { ring.submission().push(&w) }.map_err(|_| "submission queue full".to_string())?;
    ring.submit().ctx("submit the O_DIRECT write")?;

    // 4. dma-buf both ways: edu-dma0 imports an export of the leaving device's buffer, and the
    // leaving device imports an export of edu-dma0's buffer.
    let shared = device_filled(&dev, BufKind::Streaming, LEN, 3504)?;
    let shared_fd = shared
        .buf
        .export()
        .ctx("export the leaving device's buffer")?;
    let imp0 = check.import(shared_fd.as_fd()).ctx("edu-dma0 imports it")?;
    let theirs = check
        .alloc(LEN as u64, BufKind::Streaming)
        .ctx("alloc on edu-dma0")?;
    let theirs_fd = theirs.export().ctx("export edu-dma0's buffer")?;
    let imp_gone = dev
        .import(theirs_fd.as_fd())
        .ctx("the leaving device imports it")?;
    diag(format!(
        "{how:?} of {addr} with the three clients holding streaming pages"
    ));
    let rebind = match how {
        How::Unbind => Some(unbind(&addr)?),
        How::Unplug => {
            println!("EDU-UNPLUG-NOW {n}");
            let _ = std::io::stdout().flush();
            // Busy polling keeps a vCPU running, so guest time does not jump ahead of the host's
            // unplug (under -icount sleep=off an idle guest skips to its next timer).
            let t = Instant::now();
            while path.exists() && t.elapsed() < Duration::from_secs(10) {
                std::thread::yield_now();
            }
            ensure(!path.exists(), || {
                format!(
                    "{} still exists 10 s after the unplug request",
                    path.display()
                )
            })?;
            None
        }
    };
    expect_errno(dev.info(), libc::ENODEV, &format!("INFO after the {how:?}"))?;

    // 3. The O_DIRECT write completes with every byte.
    ring.submit_and_wait(1).ctx("wait for the O_DIRECT write")?;
    let cqe = ring
        .completion()
        .next()
        .ok_or("no completion for the O_DIRECT write")?;
    ensure_eq(cqe.user_data(), 3, "completion")?;
    ensure_eq(
        cqe.result(),
        LEN as i32,
        "the in-flight O_DIRECT write's result",
    )?;
    // 2. The fixed buffer still writes the device's bytes.
    write_fixed_then_unregister(
        &mut ring,
        &ff,
        reg.map.as_ptr(),
        LEN,
        before_pin,
        &format!("WRITE_FIXED after the {how:?}"),
    )?;
    // 1. The receiver drains; the sent bytes are the device's.
    let mut got = vec![0u8; FILL + LEN];
    rx.read_exact(&mut got).ctx("receive filler and payload")?;
    check_same(&got[..FILL], &filler, "filler")?;
    check_pattern(
        &got[FILL..],
        3501,
        &format!("zerocopy payload sent across the {how:?}"),
    )?;
    let n = wait_notification(&tx)?;
    check_notification(&n, 0, 0, &format!("zerocopy send across the {how:?}"))?;
    // The mappings themselves still hold the device's bytes.
    for (m, seed) in [(&zc, 3501), (&reg, 3502), (&dio, 3503)] {
        check_pattern(
            &m.map[..LEN],
            seed,
            &format!("streaming mapping after the {how:?}"),
        )?;
    }
    // 4. The importer of the gone device's buffer still moves its bytes (the pages live with
    // the dma-buf); the gone device's own import was detached at its unbind: ENODEV for a
    // transfer, and BUF_FREE forgets the handle.
    imp0.sync(0, LEN as u64, SyncDir::ForDevice)
        .ctx("edu-dma0: SYNC_FOR_DEVICE of the import")?;
    let want = pattern(LEN, 3504);
    let mut got = vec![0u8; WIN];
    for (i, chunk) in want.chunks(WIN).enumerate() {
        imp0.xfer((i * WIN) as u64, 0, WIN as u32, Dir::ToDevice, 0)
            .ctx(format!("edu-dma0: XFER import page {i} -> window"))?;
        check
            .read_window_into(&mut got, 0)
            .ctx("edu-dma0: window -> user")?;
        check_same(
            &got,
            chunk,
            &format!("a buffer of the gone device, read by its importer across the {how:?}"),
        )?;
    }
    expect_errno(
        imp_gone.xfer(0, 0, WIN as u32, Dir::ToDevice, 0),
        libc::ENODEV,
        &format!("XFER of an import held by the device after the {how:?}"),
    )?;
    imp_gone
        .free()
        .ctx("BUF_FREE of the gone device's import")?;
    drop((imp0, shared_fd, theirs_fd, theirs, shared));
    // Both files, read back O_DIRECT into edu-dma0's buffers and checked by that device.
    for (f, seed, what) in [(&fd, 3503, "O_DIRECT write"), (&ff, 3502, "WRITE_FIXED")] {
        verify_file(
            &check,
            f,
            0,
            &pattern(LEN, seed),
            &format!("{what} across the {how:?}"),
        )?;
    }
    drop((zc, reg, dio, ring));
    drop(dev);
    let _ = std::fs::remove_file(path_d);
    let _ = std::fs::remove_file(path_f);
    match rebind {
        Some(mut rebind) => {
            let d = rebind.bind_and_open()?;
            round_trip_on(&d, 3510, "after rebind")
        }
        None => {
            ensure(
                !std::path::Path::new(&format!("/sys/bus/pci/devices/{addr}")).exists(),
                || format!("{addr} still in sysfs after the unplug"),
            )?;
            round_trip_on(&check, 3511, "edu-dma0 after the unplug")
        }
    }
}
