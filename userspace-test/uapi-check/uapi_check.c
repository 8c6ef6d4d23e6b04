// SPDX-License-Identifier: GPL-2.0
/*
 * uapi_check - prints the layout of include/uapi/linux/edu_dma.h, one "NAME VALUE" per line, in
 * the exact format and order of edu_dma::uapi_layout_report() (userspace-test/edu-dma/src/
 * layout.rs). run.sh diffs the two. Build: cc -I<repo>/include uapi_check.c
 */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>

#include <uapi/linux/edu_dma.h> /* -I<repo>/include */

#define STRUCT(s)                                                                        \
	do {                                                                             \
		printf("sizeof %s %zu\n", #s, sizeof(struct s));                          \
		printf("alignof %s %zu\n", #s, _Alignof(struct s));                       \
	} while (0)
#define FIELD(s, f)                                                                      \
	do {                                                                             \
		printf("offsetof %s.%s %zu\n", #s, #f, offsetof(struct s, f));            \
		printf("sizeof %s.%s %zu\n", #s, #f, sizeof(((struct s *)0)->f));         \
	} while (0)
#define IOCTL(n) printf("%s 0x%08x\n", #n, (unsigned int)(n))
#define CONST(n) printf("%s %u\n", #n, (unsigned int)(n))

/* The export flags are open(2)'s own: the header spells their values out (no <fcntl.h> in a uapi
 * header), this checks them against the C library's. */
_Static_assert(EDU_DMA_EXPORT_CLOEXEC == O_CLOEXEC, "EDU_DMA_EXPORT_CLOEXEC is O_CLOEXEC");
_Static_assert(EDU_DMA_EXPORT_RDWR == O_RDWR, "EDU_DMA_EXPORT_RDWR is O_RDWR");

int main(void)
{
	STRUCT(edu_dma_info);
	FIELD(edu_dma_info, ident);
	FIELD(edu_dma_info, version_major);
	FIELD(edu_dma_info, version_minor);
	FIELD(edu_dma_info, instance);
	FIELD(edu_dma_info, dma_mask_bits);
	FIELD(edu_dma_info, irq_mode);
	FIELD(edu_dma_info, pci_domain);
	FIELD(edu_dma_info, pci_bus);
	FIELD(edu_dma_info, pci_slot);
	FIELD(edu_dma_info, pci_func);
	FIELD(edu_dma_info, window_size);
	FIELD(edu_dma_info, dma_coherent);
	FIELD(edu_dma_info, irq_count);
	FIELD(edu_dma_info, dma_count);
	FIELD(edu_dma_info, dma_bytes);
	FIELD(edu_dma_info, fact_count);
	FIELD(edu_dma_info, timeout_count);
	FIELD(edu_dma_info, reserved);

	STRUCT(edu_dma_factorial);
	FIELD(edu_dma_factorial, n);
	FIELD(edu_dma_factorial, flags);
	FIELD(edu_dma_factorial, result);

	STRUCT(edu_dma_buf_alloc);
	FIELD(edu_dma_buf_alloc, size);
	FIELD(edu_dma_buf_alloc, kind);
	FIELD(edu_dma_buf_alloc, flags);
	FIELD(edu_dma_buf_alloc, handle);
	FIELD(edu_dma_buf_alloc, reserved);
	FIELD(edu_dma_buf_alloc, mmap_offset);

	STRUCT(edu_dma_buf_free);
	FIELD(edu_dma_buf_free, handle);
	FIELD(edu_dma_buf_free, flags);

	STRUCT(edu_dma_buf_export);
	FIELD(edu_dma_buf_export, handle);
	FIELD(edu_dma_buf_export, flags);
	FIELD(edu_dma_buf_export, fd);
	FIELD(edu_dma_buf_export, reserved);
	STRUCT(edu_dma_buf_import);
	FIELD(edu_dma_buf_import, fd);
	FIELD(edu_dma_buf_import, flags);
	FIELD(edu_dma_buf_import, handle);
	FIELD(edu_dma_buf_import, reserved);
	FIELD(edu_dma_buf_import, size);

	STRUCT(edu_dma_buf_sync);
	FIELD(edu_dma_buf_sync, handle);
	FIELD(edu_dma_buf_sync, flags);
	FIELD(edu_dma_buf_sync, offset);
	FIELD(edu_dma_buf_sync, len);

	STRUCT(edu_dma_xfer);
	FIELD(edu_dma_xfer, handle);
	FIELD(edu_dma_xfer, flags);
	FIELD(edu_dma_xfer, buf_offset);
	FIELD(edu_dma_xfer, win_offset);
	FIELD(edu_dma_xfer, count);
	FIELD(edu_dma_xfer, timeout_ms);
	FIELD(edu_dma_xfer, reserved);

	STRUCT(edu_dma_user_xfer);
	FIELD(edu_dma_user_xfer, addr);
	FIELD(edu_dma_user_xfer, len);
	FIELD(edu_dma_user_xfer, win_offset);
	FIELD(edu_dma_user_xfer, flags);
	FIELD(edu_dma_user_xfer, timeout_ms);

	STRUCT(edu_dma_copy);
	FIELD(edu_dma_copy, src);
	FIELD(edu_dma_copy, dst);
	FIELD(edu_dma_copy, len);
	FIELD(edu_dma_copy, done);
	FIELD(edu_dma_copy, flags);
	FIELD(edu_dma_copy, timeout_ms);
	FIELD(edu_dma_copy, src_handle);
	FIELD(edu_dma_copy, dst_handle);

	STRUCT(edu_dma_fault);
	FIELD(edu_dma_fault, drop_irqs);
	FIELD(edu_dma_fault, flags);

	STRUCT(edu_dma_req);
	FIELD(edu_dma_req, cookie);
	FIELD(edu_dma_req, op);
	FIELD(edu_dma_req, flags);
	FIELD(edu_dma_req, addr);
	FIELD(edu_dma_req, dst);
	FIELD(edu_dma_req, len);
	FIELD(edu_dma_req, handle);
	FIELD(edu_dma_req, dst_handle);
	FIELD(edu_dma_req, win_offset);
	FIELD(edu_dma_req, timeout_ms);
	FIELD(edu_dma_req, reserved);

	STRUCT(edu_dma_submit);
	FIELD(edu_dma_submit, reqs);
	FIELD(edu_dma_submit, count);
	FIELD(edu_dma_submit, flags);

	STRUCT(edu_dma_cqe);
	FIELD(edu_dma_cqe, cookie);
	FIELD(edu_dma_cqe, status);
	FIELD(edu_dma_cqe, reserved);
	FIELD(edu_dma_cqe, done);

	STRUCT(edu_dma_reap);
	FIELD(edu_dma_reap, cqes);
	FIELD(edu_dma_reap, max);
	FIELD(edu_dma_reap, min);
	FIELD(edu_dma_reap, timeout_ms);
	FIELD(edu_dma_reap, flags);

	STRUCT(edu_dma_reg_user);
	FIELD(edu_dma_reg_user, addr);
	FIELD(edu_dma_reg_user, len);
	FIELD(edu_dma_reg_user, flags);
	FIELD(edu_dma_reg_user, id);

	STRUCT(edu_dma_unreg_user);
	FIELD(edu_dma_unreg_user, id);
	FIELD(edu_dma_unreg_user, flags);

	STRUCT(edu_dma_set_eventfd);
	FIELD(edu_dma_set_eventfd, fd);
	FIELD(edu_dma_set_eventfd, flags);

	IOCTL(EDU_DMA_IOC_INFO);
	IOCTL(EDU_DMA_IOC_FACTORIAL);
	IOCTL(EDU_DMA_IOC_BUF_ALLOC);
	IOCTL(EDU_DMA_IOC_BUF_FREE);
	IOCTL(EDU_DMA_IOC_BUF_SYNC);
	IOCTL(EDU_DMA_IOC_BUF_EXPORT);
	IOCTL(EDU_DMA_IOC_BUF_IMPORT);
	IOCTL(EDU_DMA_IOC_XFER);
	IOCTL(EDU_DMA_IOC_USER_XFER);
	IOCTL(EDU_DMA_IOC_COPY);
	IOCTL(EDU_DMA_IOC_FAULT);
	IOCTL(EDU_DMA_IOC_SUBMIT);
	IOCTL(EDU_DMA_IOC_REAP);
	IOCTL(EDU_DMA_IOC_SET_EVENTFD);
	IOCTL(EDU_DMA_IOC_REG_USER);
	IOCTL(EDU_DMA_IOC_UNREG_USER);
	IOCTL(EDU_DMA_URING_CMD_XFER);

	CONST(EDU_DMA_IOC_MAGIC);
	CONST(EDU_DMA_WINDOW_SIZE);
	CONST(EDU_DMA_IRQ_INTX);
	CONST(EDU_DMA_IRQ_MSI);
	CONST(EDU_DMA_BUF_COHERENT);
	CONST(EDU_DMA_BUF_STREAMING);
	CONST(EDU_DMA_EXPORT_CLOEXEC);
	CONST(EDU_DMA_EXPORT_RDWR);
	CONST(EDU_DMA_SYNC_FOR_DEVICE);
	CONST(EDU_DMA_SYNC_FOR_CPU);
	CONST(EDU_DMA_TO_DEVICE);
	CONST(EDU_DMA_FROM_DEVICE);
	CONST(EDU_DMA_COPY_SRC_BUF);
	CONST(EDU_DMA_COPY_DST_BUF);
	CONST(EDU_DMA_OP_XFER);
	CONST(EDU_DMA_OP_USER_XFER);
	CONST(EDU_DMA_OP_COPY);
	CONST(EDU_DMA_OP_REG_XFER);
	CONST(EDU_DMA_REG_MAX);
	CONST(EDU_DMA_REG_MAX_LEN);
	CONST(EDU_DMA_REAP_NONBLOCK);
	return 0;
}
