// SPDX-License-Identifier: GPL-2.0
/*
 * C shim for edu_dma.ko: kernel APIs that exist only as static inlines (or macros) and have no
 * rust/helpers wrapper in Linux 7.2, so Rust cannot reach them through `kernel::bindings`.
 * Each function is a one-line forwarder; the leaf of src/raw/ that needs it declares it and is
 * its only user (dma.rs, dmabuf.rs, gup.rs, irqlock.rs, memlock.rs, pci.rs, signal.rs).
 */
#include <linux/dma-mapping.h>
#include <linux/pci.h>
#include <linux/mm_types.h>
#include <linux/sched/signal.h>
#include <linux/spinlock.h>
#include <linux/uio.h>

int edu_dma_mapping_error(struct device *dev, dma_addr_t addr);
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
