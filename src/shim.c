// SPDX-License-Identifier: GPL-2.0
/*
 * C shim for edu_dma.ko: kernel APIs that exist only as static inlines (or macros) and have no
 * rust/helpers wrapper in Linux 7.2, so Rust cannot reach them through `kernel::bindings`.
 * Each function is a one-line forwarder; the leaf of src/raw/ that needs it declares it and is
 * its only user (dma.rs, dmabuf.rs, gup.rs, irqlock.rs, memlock.rs, pci.rs, signal.rs, uring.rs).
 */
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/io_uring/cmd.h>
#include <linux/pci.h>
#include <linux/mm_types.h>
#include <linux/sched/signal.h>
#include <linux/spinlock.h>
#include <linux/uio.h>

int edu_dma_mapping_error(struct device *dev, dma_addr_t addr);
bool edu_dev_is_dma_coherent(struct device *dev);
void edu_dma_sync_single_for_cpu(struct device *dev, dma_addr_t addr, size_t size,
				 enum dma_data_direction dir);
void edu_dma_sync_single_for_device(struct device *dev, dma_addr_t addr, size_t size,
				    enum dma_data_direction dir);
unsigned int edu_dma_get_max_seg_size(struct device *dev);
void edu_dma_sync_sgtable_for_cpu(struct device *dev, struct sg_table *sgt,
				  enum dma_data_direction dir);
void edu_dma_sync_sgtable_for_device(struct device *dev, struct sg_table *sgt,
				     enum dma_data_direction dir);
bool edu_iov_iter_extract_will_pin(const struct iov_iter *iter);
int edu_pci_domain_nr(struct pci_dev *pdev);
int edu_task_sigpending(struct task_struct *p);

/* dev_is_dma_coherent() is static inline in linux/dma-map-ops.h. */
bool edu_dev_is_dma_coherent(struct device *dev)
{
	return dev_is_dma_coherent(dev);
}

int edu_dma_mapping_error(struct device *dev, dma_addr_t addr)
{
	return dma_mapping_error(dev, addr);
}

void edu_dma_sync_single_for_cpu(struct device *dev, dma_addr_t addr, size_t size,
				 enum dma_data_direction dir)
{
	dma_sync_single_for_cpu(dev, addr, size, dir);
}

void edu_dma_sync_single_for_device(struct device *dev, dma_addr_t addr, size_t size,
				    enum dma_data_direction dir)
{
	dma_sync_single_for_device(dev, addr, size, dir);
}

unsigned int edu_dma_get_max_seg_size(struct device *dev)
{
	return dma_get_max_seg_size(dev);
}

void edu_dma_sync_sgtable_for_cpu(struct device *dev, struct sg_table *sgt,
				  enum dma_data_direction dir)
{
	dma_sync_sgtable_for_cpu(dev, sgt, dir);
}

void edu_dma_sync_sgtable_for_device(struct device *dev, struct sg_table *sgt,
				     enum dma_data_direction dir)
{
	dma_sync_sgtable_for_device(dev, sgt, dir);
}

bool edu_iov_iter_extract_will_pin(const struct iov_iter *iter)
{
	return iov_iter_extract_will_pin(iter);
}

int edu_pci_domain_nr(struct pci_dev *pdev)
{
	return pci_domain_nr(pdev->bus);
}

/* task_sigpending (static inline): a real signal, unlike signal_pending also not TIF_NOTIFY_SIGNAL
 * task work. For raw/signal.rs. */
int edu_task_sigpending(struct task_struct *p)
{
	return task_sigpending(p);
}

unsigned long edu_spin_lock_irqsave(spinlock_t *lock);
int edu_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags);
void edu_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags);

unsigned long edu_spin_lock_irqsave(spinlock_t *lock)
{
	unsigned long flags;

	spin_lock_irqsave(lock, flags);
	return flags;
}

int edu_spin_trylock_irqsave(spinlock_t *lock, unsigned long *flags)
{
	return spin_trylock_irqsave(lock, *flags);
}

void edu_spin_unlock_irqrestore(spinlock_t *lock, unsigned long flags)
{
	spin_unlock_irqrestore(lock, flags);
}

long long edu_mm_pinned_vm_add_return(struct mm_struct *mm, long long pages);
void edu_mm_pinned_vm_sub(struct mm_struct *mm, long long pages);
unsigned long edu_rlimit(unsigned int limit);
struct mm_struct *edu_current_mm(void);

/* atomic64_add_return / atomic64_sub on mm->pinned_vm (static inline), and rlimit() (static
 * inline): the RLIMIT_MEMLOCK charge of long-term pins, as ib_umem_get does it. For
 * raw/memlock.rs. */
long long edu_mm_pinned_vm_add_return(struct mm_struct *mm, long long pages)
{
	return atomic64_add_return(pages, &mm->pinned_vm);
}

void edu_mm_pinned_vm_sub(struct mm_struct *mm, long long pages)
{
	atomic64_sub(pages, &mm->pinned_vm);
}

unsigned long edu_rlimit(unsigned int limit)
{
	return rlimit(limit);
}

/* current->mm (get_current is static inline). For raw/memlock.rs: the 7.2 `Task::mm` reads the
 * field through bindgen's task_struct layout, which disagrees with C's in this build (it read a
 * wrong field, so the charge missed the mm). */
struct mm_struct *edu_current_mm(void)
{
	return current->mm;
}

/*
 * io_uring commands, for raw/uring.rs. 7.2's bindings_helper.h does not include
 * <linux/io_uring/cmd.h>: struct io_uring_cmd is opaque to Rust, its accessors, io_uring_cmd_done
 * and io_uring_cmd_complete_in_task are static inlines, the exported io_uring_cmd_mark_cancelable
 * has no binding, and the task-work callback type takes structs by value (struct io_tw_req,
 * io_tw_token_t), so the callback itself is a C trampoline. The flags raw/uring.rs tests are
 * checked here against the kernel's enum.
 */
static_assert(IO_URING_F_CANCEL == (1 << 11));

/*
 * The driver's part of io_uring_cmd.pdu: the Rust task-work function, the command's tag, and
 * whether its ring posts 32-byte CQEs (then the second result word goes into big_cqe[0]).
 */
typedef int (*edu_uring_task_fn)(struct io_uring_cmd *cmd, u64 *res2);
struct edu_uring_pdu {
	edu_uring_task_fn task;
	u64 tag;
	bool cqe32;
};

unsigned int edu_uring_cmd_op(const struct io_uring_cmd *cmd);
struct file *edu_uring_cmd_file(const struct io_uring_cmd *cmd);
int edu_uring_cmd_read_sqe128(const struct io_uring_cmd *cmd, void *dst, size_t len,
			      unsigned int issue_flags);
void edu_uring_cmd_set_tag(struct io_uring_cmd *cmd, u64 tag);
u64 edu_uring_cmd_tag(struct io_uring_cmd *cmd);
void edu_uring_cmd_mark_cancelable(struct io_uring_cmd *cmd, unsigned int issue_flags);
void edu_uring_cmd_done(struct io_uring_cmd *cmd, int ret, unsigned int issue_flags);
void edu_uring_cmd_complete_in_task(struct io_uring_cmd *cmd, edu_uring_task_fn task);

unsigned int edu_uring_cmd_op(const struct io_uring_cmd *cmd)
{
	return cmd->cmd_op;
}

struct file *edu_uring_cmd_file(const struct io_uring_cmd *cmd)
{
	return cmd->file;
}

/* Copies len bytes of the SQE's command area: an SQE128 one (80 bytes), else -EINVAL. */
int edu_uring_cmd_read_sqe128(const struct io_uring_cmd *cmd, void *dst, size_t len,
			      unsigned int issue_flags)
{
	if (!(issue_flags & IO_URING_F_SQE128) ||
	    len > 2 * sizeof(struct io_uring_sqe) - offsetof(struct io_uring_sqe, cmd))
		return -EINVAL;
	/* The SQE may be in the ring userspace writes: one copy, then only the copy is read. */
	memcpy(dst, cmd->sqe->cmd, len);
	return 0;
}

/* The tag is read by the cancel path while an io-wq issue may set it: READ_ONCE/WRITE_ONCE. */
void edu_uring_cmd_set_tag(struct io_uring_cmd *cmd, u64 tag)
{
	WRITE_ONCE(io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->tag, tag);
}

u64 edu_uring_cmd_tag(struct io_uring_cmd *cmd)
{
	return READ_ONCE(io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->tag);
}

void edu_uring_cmd_mark_cancelable(struct io_uring_cmd *cmd, unsigned int issue_flags)
{
	io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->cqe32 = issue_flags & IO_URING_F_CQE32;
	io_uring_cmd_mark_cancelable(cmd, issue_flags);
}

/* IORING_SETUP_CQE32 (or CQE_MIXED) rings get the 32-byte CQE with res2 in big_cqe[0]. */
static void edu_uring_done(struct io_uring_cmd *cmd, int ret, u64 res2, unsigned int issue_flags)
{
	if (io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->cqe32)
		io_uring_cmd_done32(cmd, ret, res2, issue_flags);
	else
		io_uring_cmd_done(cmd, ret, issue_flags);
}

void edu_uring_cmd_done(struct io_uring_cmd *cmd, int ret, unsigned int issue_flags)
{
	edu_uring_done(cmd, ret, 0, issue_flags);
}

/* Task work: the CQE's result from the Rust function, then the completion (as nvme and ublk). */
static void edu_uring_cmd_tw(struct io_tw_req tw_req, io_tw_token_t tw)
{
	struct io_uring_cmd *cmd = io_uring_cmd_from_tw(tw_req);
	u64 res2 = 0;
	int ret = io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->task(cmd, &res2);

	edu_uring_done(cmd, ret, res2, IO_URING_CMD_TASK_WORK_ISSUE_FLAGS);
}

/* Safe in hard-IRQ context (nvme completes its passthrough commands this way from IRQs). */
void edu_uring_cmd_complete_in_task(struct io_uring_cmd *cmd, edu_uring_task_fn task)
{
	io_uring_cmd_to_pdu(cmd, struct edu_uring_pdu)->task = task;
	io_uring_cmd_complete_in_task(cmd, edu_uring_cmd_tw);
}
