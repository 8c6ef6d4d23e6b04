/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * edu_dma.h - userspace API of the edu-dma driver (QEMU "edu" PCI device, 1234:11e8).
 *
 * This header is the source of truth for the uapi. The Rust definitions in src/uapi.rs (shared by
 * the module and the userspace library) are checked against it by `make check-uapi`.
 *
 * Every device has a node /dev/edu-dma<N>. All structures are made of naturally aligned fixed-size
 * fields with no implicit padding; their size is encoded in the ioctl number, and reserved fields
 * and unknown flags must be zero (EINVAL otherwise), so the API can grow without breaking.
 *
 * Errors common to every ioctl: ENOTTY (unknown ioctl), EFAULT (bad argument pointer), EINVAL
 * (unknown flags, non-zero reserved fields, bad ranges), ENODEV (device unbound or unplugged),
 * EINTR (a signal ended the wait), ETIMEDOUT (the device did not complete in time). A wait broken
 * only by task work (io_uring's TWA_SIGNAL, no signal) restarts the call instead: it runs again
 * from its arguments (COPY from the start; read/write only if they moved nothing).
 */
#ifndef _UAPI_LINUX_EDU_DMA_H
#define _UAPI_LINUX_EDU_DMA_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define EDU_DMA_IOC_MAGIC	0xED

/* The device-side DMA window: 4096 bytes; one command moves 1..=4096 bytes. */
#define EDU_DMA_WINDOW_SIZE	4096

/* edu_dma_info.irq_mode */
#define EDU_DMA_IRQ_INTX	1
#define EDU_DMA_IRQ_MSI		2

/* EDU_DMA_IOC_INFO: identity and counters of the device behind the file. */
struct edu_dma_info {
	__u32 ident;		/* identification register, 0xRRrr00ed */
	__u32 version_major;	/* RR */
	__u32 version_minor;	/* rr */
	__u32 instance;		/* N of /dev/edu-dma<N> */
	__u32 dma_mask_bits;	/* DMA mask the driver set (28 unless raised) */
	__u32 irq_mode;		/* EDU_DMA_IRQ_* */
	__u32 pci_domain;
	__u32 pci_bus;
	__u32 pci_slot;
	__u32 pci_func;
	__u32 window_size;	/* EDU_DMA_WINDOW_SIZE */
	__u32 dma_coherent;	/* 1: the device's DMA is cache-coherent; 0: the kernel does
				 * cache maintenance (dev_is_dma_coherent()) */
	__u64 irq_count;	/* interrupts handled */
	__u64 dma_count;	/* DMA commands completed */
	__u64 dma_bytes;	/* bytes moved by those commands */
	__u64 fact_count;	/* factorials computed */
	__u64 timeout_count;	/* commands that timed out */
	__u64 reserved[3];
};

/* EDU_DMA_IOC_FACTORIAL: n! computed by the device, completed by its interrupt. n > 12: EOVERFLOW. */
struct edu_dma_factorial {
	__u32 n;		/* in */
	__u32 flags;		/* in: 0 */
	__u64 result;		/* out */
};

/* Buffer kinds (edu_dma_buf_alloc.kind). */
#define EDU_DMA_BUF_COHERENT	1	/* dma_alloc_coherent memory; mmap is VM_PFNMAP */
#define EDU_DMA_BUF_STREAMING	2	/* ordinary pages mapped with the streaming DMA API */

/*
 * EDU_DMA_IOC_BUF_ALLOC: a buffer owned by the file. size: 1 .. buf_max bytes (rounded up to
 * pages). Returns a handle (per file, never 0) and the mmap offset of the buffer's first byte.
 * ENOMEM: no memory under the DMA mask, or the device's buffer cap (module parameter) is reached.
 */
struct edu_dma_buf_alloc {
	__u64 size;		/* in */
	__u32 kind;		/* in: EDU_DMA_BUF_* */
	__u32 flags;		/* in: 0 */
	__u32 handle;		/* out */
	__u32 reserved;		/* in: 0 */
	__u64 mmap_offset;	/* out: pass to mmap(); page offsets within the buffer may be added */
};

/* EDU_DMA_IOC_BUF_FREE: drops the handle; the memory lives on while mappings of it exist. */
struct edu_dma_buf_free {
	__u32 handle;
	__u32 flags;		/* 0 */
};

/*
 * edu_dma_buf_export.flags: the open(2) flags of the new dma-buf file, with the values of
 * O_CLOEXEC and O_RDWR (asm-generic, as on x86; like DRM_CLOEXEC / DRM_RDWR). Without
 * EDU_DMA_EXPORT_RDWR the dma-buf is read-only (a PROT_WRITE mmap of it gets EACCES).
 */
#define EDU_DMA_EXPORT_CLOEXEC	02000000	/* O_CLOEXEC: close-on-exec fd */
#define EDU_DMA_EXPORT_RDWR	00000002	/* O_RDWR: writable dma-buf */

/*
 * EDU_DMA_IOC_BUF_EXPORT: a dma-buf fd sharing the pages of a streaming buffer of the file; a
 * coherent buffer gets EINVAL (its memory may not be pages, see README). The dma-buf holds the
 * pages and the buffer: it lives while any fd or mapping of it does, whatever happens to the
 * handle (BUF_FREE), the exporting file (close) or the device (unbind: the memory stays valid,
 * only the device's own mapping goes). DMA_BUF_IOCTL_SYNC on it hands the buffer between the
 * CPU and the device like EDU_DMA_IOC_BUF_SYNC does (start: for CPU, end: for device).
 * ENOENT: unknown handle; EINVAL: coherent buffer, unknown flags, reserved != 0;
 * EMFILE: no free fd.
 */
struct edu_dma_buf_export {
	__u32 handle;		/* in */
	__u32 flags;		/* in: EDU_DMA_EXPORT_* */
	__s32 fd;		/* out: the dma-buf */
	__u32 reserved;		/* in: 0 */
};

/*
 * EDU_DMA_IOC_BUF_IMPORT: a handle of the file for the dma-buf fd (any exporter: another edu, a
 * DMA-BUF heap, udmabuf), usable wherever a buffer handle is: XFER, COPY, BUF_SYNC, BUF_FREE.
 * The device is attached to the dma-buf (a static attachment) and mapped for it once, here,
 * bidirectionally; transfers use the mapped segments as the DMA API returned them. The mapping is
 * a streaming one: BUF_SYNC on the handle hands a range to the device / the CPU (DMA_BUF_IOCTL_SYNC
 * on the fd does the same when the exporter syncs its importers: edu and the system heap do,
 * udmabuf does not). The handle holds a reference to the dma-buf: closing the fd changes nothing;
 * BUF_FREE, closing the file or unbinding the device unmaps, detaches and drops it. Nothing is
 * charged to the buffer caps. mmap of the handle and its EXPORT: EINVAL (use the dma-buf fd).
 * EBADF: fd is not open; EINVAL: not a dma-buf, flags or reserved != 0; ERANGE: the exporter
 * mapped memory above the device's DMA mask.
 */
struct edu_dma_buf_import {
	__s32 fd;		/* in: the dma-buf */
	__u32 flags;		/* in: 0 */
	__u32 handle;		/* out */
	__u32 reserved;		/* in: 0 */
	__u64 size;		/* out: the dma-buf's size in bytes */
};

/* edu_dma_buf_sync.flags: exactly one of these. */
#define EDU_DMA_SYNC_FOR_DEVICE	1	/* CPU writes done; hand the range to the device */
#define EDU_DMA_SYNC_FOR_CPU	2	/* device writes done; hand the range back to the CPU */

/* EDU_DMA_IOC_BUF_SYNC: ownership of a streaming buffer (or import) range; a no-op for coherent
 * buffers. */
struct edu_dma_buf_sync {
	__u32 handle;
	__u32 flags;
	__u64 offset;
	__u64 len;
};

/* Transfer directions (flags of edu_dma_xfer and edu_dma_user_xfer): exactly one of these. */
#define EDU_DMA_TO_DEVICE	1	/* RAM -> device window */
#define EDU_DMA_FROM_DEVICE	2	/* device window -> RAM */

/*
 * EDU_DMA_IOC_XFER: moves count bytes (1..=4096) between buffer offset buf_offset and window offset
 * win_offset. win_offset + count <= 4096, buf_offset + count <= buffer size. timeout_ms 0: the
 * module's default. Streaming buffers: sync for the device before, for the CPU after.
 */
struct edu_dma_xfer {
	__u32 handle;
	__u32 flags;
	__u64 buf_offset;
	__u32 win_offset;
	__u32 count;
	__u32 timeout_ms;
	__u32 reserved;
};

/*
 * EDU_DMA_IOC_USER_XFER: zero-copy transfer between user memory [addr, addr + len) and the window
 * at win_offset (len 1..=4096, win_offset + len <= 4096). The pages are pinned and mapped with a
 * scatter-gather table for the transfer only. EFAULT: unmapped, read-only (FROM_DEVICE) or
 * VM_PFNMAP memory (e.g. a coherent buffer's mapping).
 */
struct edu_dma_user_xfer {
	__u64 addr;
	__u32 len;
	__u32 win_offset;
	__u32 flags;
	__u32 timeout_ms;
};

/* edu_dma_copy.flags */
#define EDU_DMA_COPY_SRC_BUF	1	/* src is an offset into buffer src_handle */
#define EDU_DMA_COPY_DST_BUF	2	/* dst is an offset into buffer dst_handle */

/*
 * EDU_DMA_IOC_COPY: copies len bytes (1 .. 2^32) from src to dst through the device, RAM -> window
 * -> RAM, 4096 bytes at a time: the driver's DMA copy engine. Plain src/dst are user addresses,
 * pinned in bounded windows (module parameter pin_window). On a signal or error it stops between
 * chunks; done tells how many bytes were copied. timeout_ms applies to each command.
 */
struct edu_dma_copy {
	__u64 src;
	__u64 dst;
	__u64 len;
	__u64 done;		/* out */
	__u32 flags;
	__u32 timeout_ms;
	__u32 src_handle;
	__u32 dst_handle;
};

/* EDU_DMA_IOC_FAULT (CAP_SYS_ADMIN): fault injection. drop_irqs: the next N DMA commands raise no
 * completion interrupt, so their waits time out. */
struct edu_dma_fault {
	__u32 drop_irqs;
	__u32 flags;		/* 0 */
};

/*
 * The asynchronous queue. EDU_DMA_IOC_SUBMIT queues requests on the file's queue (depth: module
 * parameter queue_depth, read at probe); the device runs them one command at a time, the files
 * of a device round robin (a request per turn; a copy a window step per turn), each file's
 * requests in submission order. EDU_DMA_IOC_REAP returns completions in completion order (per
 * file: submission order). User memory is pinned and mapped at submit and released when the
 * request is reaped (or the file closed): read what the device wrote after the reap (a bounce
 * buffer is copied back at that unmap). Every request ends exactly once: status 0, -ECANCELED
 * (file closed), -ENODEV (device unbound or unplugged), -ETIMEDOUT (no completion interrupt in
 * timeout_ms; the command is known to have finished before the request ends), -EIO (device stuck).
 * done counts the bytes that landed (for a copy, whole window steps whose second half completed).
 * A request occupies a queue slot from submit until it is reaped. poll(): POLLIN while a
 * completion waits (before the file's first submit: always, a plain node is readable), POLLOUT
 * while the queue has room; EDU_DMA_IOC_SET_EVENTFD: an eventfd
 * signalled per completion.
 */

/* edu_dma_req.op */
#define EDU_DMA_OP_XFER		1	/* buffer <-> window, as EDU_DMA_IOC_XFER */
#define EDU_DMA_OP_USER_XFER	2	/* user memory <-> window, as EDU_DMA_IOC_USER_XFER */
#define EDU_DMA_OP_COPY		3	/* RAM -> window -> RAM, as EDU_DMA_IOC_COPY */
#define EDU_DMA_OP_REG_XFER	4	/* registered user memory <-> window (EDU_DMA_IOC_REG_USER) */

/*
 * One queued request. Fields an op does not use must be 0 (EINVAL otherwise).
 *   XFER:      flags = direction, handle, addr = buffer offset, win_offset, len 1..=4096
 *   USER_XFER: flags = direction, addr = user address, win_offset, len 1..=4096
 *   COPY:      flags = EDU_DMA_COPY_*, addr = src, dst, handle = src_handle, dst_handle,
 *              len 1 .. pin_window pages (module parameter; E2BIG above)
 *   REG_XFER:  flags = direction, handle = registration id, addr = offset in the registered
 *              range, win_offset, len 1..=4096; [addr, addr + len) within the registration
 * Errors of one request: EINVAL (unknown op or flags, reserved or unused fields, bad ranges),
 * ENOENT (unknown handle or registration id), EFAULT (unpinnable user memory), E2BIG (copy too
 * long).
 */
struct edu_dma_req {
	__u64 cookie;		/* returned in the completion */
	__u32 op;		/* EDU_DMA_OP_* */
	__u32 flags;
	__u64 addr;
	__u64 dst;
	__u64 len;
	__u32 handle;
	__u32 dst_handle;
	__u32 win_offset;
	__u32 timeout_ms;	/* per command, 0 for the module's default */
	__u64 reserved;		/* 0 */
};

/*
 * EDU_DMA_IOC_SUBMIT: queues reqs[0 .. count) in order; returns how many were queued. Stops at
 * the first request that fails or does not fit: if that is the first one, the call fails with its
 * errno (EAGAIN: the queue is full). EINVAL: count 0, flags or reserved non-zero; EFAULT: reqs
 * unreadable; ENODEV after unbind.
 */
struct edu_dma_submit {
	__u64 reqs;		/* user pointer to struct edu_dma_req[count] */
	__u32 count;
	__u32 flags;		/* 0 */
};

/* One completion. */
struct edu_dma_cqe {
	__u64 cookie;
	__s32 status;		/* 0 or a negative errno */
	__u32 reserved;
	__u64 done;		/* bytes that landed */
};

/* edu_dma_reap.flags */
#define EDU_DMA_REAP_NONBLOCK	1	/* do not wait: EAGAIN if no completion is waiting */

/*
 * EDU_DMA_IOC_REAP: writes up to max completions to cqes and returns how many. Waits until min
 * (at most the file's requests in flight) are available, the timeout passes (timeout_ms, 0: no
 * timeout), or a signal: then returns those available, or fails with ETIMEDOUT / EINTR if there
 * are none (task work alone restarts the call, waiting for min again with its whole timeout; a
 * signal or task work never ends a queued request). Returns 0 at once when the file has nothing
 * in flight. EINVAL: max 0, min > max, unknown flags; EFAULT: cqes unwritable (the completions
 * stay queued).
 */
struct edu_dma_reap {
	__u64 cqes;		/* user pointer to struct edu_dma_cqe[max] */
	__u32 max;
	__u32 min;
	__u32 timeout_ms;
	__u32 flags;		/* EDU_DMA_REAP_* */
};

/*
 * EDU_DMA_IOC_SET_EVENTFD: the file's eventfd, whose counter goes up by 1 each time one of the
 * file's queued requests ends (whatever its status; from the interrupt handler, before the
 * completion is reapable by poll's POLLIN). fd -1 removes it; a new one replaces the old. The
 * driver holds the eventfd until then or until the file is closed (closing the eventfd's own fd
 * changes nothing). EBADF: fd not open, or negative but not -1; EINVAL: not an eventfd, flags or
 * reserved non-zero; ENODEV after unbind.
 */
struct edu_dma_set_eventfd {
	__s32 fd;		/* an eventfd, or -1 */
	__u32 flags;		/* 0 */
};

/*
 * EDU_DMA_IOC_REG_USER: registers user memory [addr, addr + len) of the calling process for
 * queued REG_XFER requests (like io_uring's fixed buffers): the pages are pinned long-term
 * (FOLL_LONGTERM, writable: read-only memory gets EFAULT) and mapped for the device once, here;
 * returns the registration's id (per file, never 0, never reused). The pinned pages are charged
 * to the caller's RLIMIT_MEMLOCK as pinned memory (mm->pinned_vm, VmPin in /proc/<pid>/status),
 * as RDMA does; CAP_IPC_LOCK bypasses the limit. A REG_XFER's RAM side is synced for the device
 * at submit and for the CPU when the request is reaped: the data is in the user's memory after
 * the reap (as for USER_XFER). EDU_DMA_IOC_UNREG_USER, closing the file, or unbind unmaps, unpins
 * and uncharges it; a registration named by queued requests lives on until the last of them is
 * reaped (the id is gone at once). After unbind the id stays until UNREG or close (requests:
 * ENODEV). Limits: addr and len page aligned, len 1 .. 16 MiB (EDU_DMA_REG_MAX_LEN), at most
 * EDU_DMA_REG_MAX registrations per file.
 * EINVAL: flags, reserved, unaligned or zero addr/len, wrapping range; E2BIG: len above the max;
 * ENOSPC: the file has EDU_DMA_REG_MAX registrations; ENOMEM: over RLIMIT_MEMLOCK (or out of
 * memory / DMA mapping space); EFAULT: unmapped, read-only, VM_IO/VM_PFNMAP memory.
 */
#define EDU_DMA_REG_MAX		16
#define EDU_DMA_REG_MAX_LEN	(16u << 20)

struct edu_dma_reg_user {
	__u64 addr;		/* in: page aligned */
	__u64 len;		/* in: page multiple, 1 .. EDU_DMA_REG_MAX_LEN */
	__u32 flags;		/* in: 0 */
	__u32 id;		/* out: the registration's id */
};

/* EDU_DMA_IOC_UNREG_USER: drops registration id (ENOENT: unknown; EINVAL: flags != 0). */
struct edu_dma_unreg_user {
	__u32 id;
	__u32 flags;		/* 0 */
};

/*
 * io_uring: IORING_OP_URING_CMD on the file with cmd_op EDU_DMA_URING_CMD_XFER queues ONE request,
 * a struct edu_dma_req in the SQE's command area (sqe->cmd, 80 bytes: the ring must be set up
 * with IORING_SETUP_SQE128, or the SQE be an IORING_OP_URING_CMD128 of an IORING_SETUP_SQE_MIXED
 * ring; a 16-byte command area: -EINVAL). The request is read once at issue (no user pointer to
 * keep valid); its cookie must be 0 (the command's user_data identifies it). It is checked, pinned
 * and queued like one EDU_DMA_IOC_SUBMIT request, on a queue of the file's own (queue_depth
 * slots, round robin with the file's SUBMIT queue and the other files; REAP, poll and the eventfd
 * do not see it). Its completion is the CQE: res = bytes done (status 0) or the negative errno of
 * the request (validation errors, -EAGAIN queue full, -ENODEV, -ECANCELED, -ETIMEDOUT, -EIO, as
 * for SUBMIT). On a ring with 32-byte CQEs (IORING_SETUP_CQE32, or the 32-byte CQEs of an
 * IORING_SETUP_CQE_MIXED ring) big_cqe[0] holds the bytes done in every case: with an error, what
 * landed before it (as a REAP completion's done; e.g. -ETIMEDOUT after a lost interrupt, whose
 * bytes landed). The pins and mappings are released before the CQE is posted. Unknown cmd_op:
 * -ENOTTY. Tearing the ring down (close of its fd, exit of the task) cancels the commands in
 * flight: not started, at once; running, after its current step (-ECANCELED). Each command holds
 * the file: closing the edu fd neither cancels nor ends them.
 */
#define EDU_DMA_URING_CMD_XFER	_IOW(EDU_DMA_IOC_MAGIC, 0x48, struct edu_dma_req)

#define EDU_DMA_IOC_INFO	_IOR(EDU_DMA_IOC_MAGIC, 0x00, struct edu_dma_info)
#define EDU_DMA_IOC_FACTORIAL	_IOWR(EDU_DMA_IOC_MAGIC, 0x01, struct edu_dma_factorial)
#define EDU_DMA_IOC_BUF_ALLOC	_IOWR(EDU_DMA_IOC_MAGIC, 0x10, struct edu_dma_buf_alloc)
#define EDU_DMA_IOC_BUF_FREE	_IOW(EDU_DMA_IOC_MAGIC, 0x11, struct edu_dma_buf_free)
#define EDU_DMA_IOC_BUF_SYNC	_IOW(EDU_DMA_IOC_MAGIC, 0x12, struct edu_dma_buf_sync)
#define EDU_DMA_IOC_BUF_EXPORT	_IOWR(EDU_DMA_IOC_MAGIC, 0x13, struct edu_dma_buf_export)
#define EDU_DMA_IOC_BUF_IMPORT	_IOWR(EDU_DMA_IOC_MAGIC, 0x14, struct edu_dma_buf_import)
#define EDU_DMA_IOC_XFER	_IOW(EDU_DMA_IOC_MAGIC, 0x20, struct edu_dma_xfer)
#define EDU_DMA_IOC_USER_XFER	_IOW(EDU_DMA_IOC_MAGIC, 0x21, struct edu_dma_user_xfer)
#define EDU_DMA_IOC_COPY	_IOWR(EDU_DMA_IOC_MAGIC, 0x22, struct edu_dma_copy)
#define EDU_DMA_IOC_FAULT	_IOW(EDU_DMA_IOC_MAGIC, 0x30, struct edu_dma_fault)
#define EDU_DMA_IOC_SUBMIT	_IOW(EDU_DMA_IOC_MAGIC, 0x40, struct edu_dma_submit)
#define EDU_DMA_IOC_REAP	_IOW(EDU_DMA_IOC_MAGIC, 0x41, struct edu_dma_reap)
#define EDU_DMA_IOC_SET_EVENTFD	_IOW(EDU_DMA_IOC_MAGIC, 0x42, struct edu_dma_set_eventfd)
#define EDU_DMA_IOC_REG_USER	_IOWR(EDU_DMA_IOC_MAGIC, 0x43, struct edu_dma_reg_user)
#define EDU_DMA_IOC_UNREG_USER	_IOW(EDU_DMA_IOC_MAGIC, 0x44, struct edu_dma_unreg_user)

#endif /* _UAPI_LINUX_EDU_DMA_H */
