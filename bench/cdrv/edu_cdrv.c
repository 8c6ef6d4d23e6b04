// SPDX-License-Identifier: GPL-2.0
/*
 * edu_cdrv: a C reference driver for QEMU's edu device, built only for the benchmarks
 * (scripts/bench, docs/performance.md "C reference driver"). It does what the public C edu
 * drivers do: read()/write() of at most the 4 KiB device window through a kmalloc bounce buffer
 * mapped with dma_map_single, completed by the interrupt; factorial by interrupt; the hard
 * handler acknowledges the device and wakes the waiter (no interrupt thread). It speaks edu-dma's
 * EDU_DMA_IOC_FACTORIAL, so the same benchmark code drives both drivers.
 *
 * It binds only through driver_override (its ID entry is override_only): edu_dma keeps the
 * other edu devices. One user at a time per operation (a mutex); a timed-out command leaves the
 * device marked broken (the bounce buffer stays mapped until unbind) rather than unmapping memory
 * the device may still write.
 */
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>
#include <uapi/linux/edu_dma.h>

#define EDU_FACT	0x08
#define EDU_STATUS	0x20
#define EDU_STATUS_COMPUTING	0x01
#define EDU_STATUS_IRQ	0x80
#define EDU_IRQ_STATUS	0x24
#define EDU_IRQ_ACK	0x64
#define EDU_DMA_SRC	0x80
#define EDU_DMA_DST	0x88
#define EDU_DMA_COUNT	0x90
#define EDU_DMA_CMD	0x98
#define EDU_CMD_START	0x1
#define EDU_CMD_TO_RAM	0x2
#define EDU_CMD_IRQ	0x4
#define EDU_IRQ_FACT	0x1
#define EDU_IRQ_DMA	0x100
#define EDU_WINDOW	0x40000
#define EDU_WINDOW_SIZE	4096
#define EDU_TIMEOUT	(2 * HZ)	/* 100 ms per DMA command; 2 s cover a loaded host */

struct edu_cdrv {
	struct pci_dev *pdev;
	void __iomem *bar;
	struct miscdevice misc;
	struct mutex lock;		/* one command at a time */
	wait_queue_head_t wq;
	atomic_t irq_status;		/* bits delivered by the handler, not yet consumed */
	void *bounce;			/* EDU_WINDOW_SIZE bytes */
	bool broken;			/* a command timed out: the device may still DMA */
};

static irqreturn_t edu_cdrv_irq(int irq, void *data)
{
	struct edu_cdrv *edu = data;
	u32 status = ioread32(edu->bar + EDU_IRQ_STATUS);

	if (!status || status == ~0u)
		return IRQ_NONE;
	iowrite32(status, edu->bar + EDU_IRQ_ACK);
	atomic_or(status, &edu->irq_status);
	wake_up(&edu->wq);
	return IRQ_HANDLED;
}

/*
 * Waits (uninterruptibly: the device owns the bounce buffer until it completes) for interrupt
 * bit @bit; 0 or -ETIMEDOUT.
 */
static int edu_cdrv_wait(struct edu_cdrv *edu, u32 bit)
{
	if (!wait_event_timeout(edu->wq, atomic_read(&edu->irq_status) & bit, EDU_TIMEOUT))
		return -ETIMEDOUT;
	atomic_andnot(bit, &edu->irq_status);
	return 0;
}

static void edu_cdrv_clear(struct edu_cdrv *edu, u32 bit)
{
	atomic_andnot(bit, &edu->irq_status);
}

static struct edu_cdrv *to_edu(struct file *f)
{
	return container_of(f->private_data, struct edu_cdrv, misc);
}

static long edu_cdrv_ioctl(struct file *f, unsigned int cmd, unsigned long arg)
{
	struct edu_cdrv *edu = to_edu(f);
	struct edu_dma_factorial req;
	int ret;

	if (cmd != EDU_DMA_IOC_FACTORIAL)
		return -ENOTTY;
	if (copy_from_user(&req, (void __user *)arg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;
	if (req.n > 12)
		return -EOVERFLOW;
	ret = mutex_lock_interruptible(&edu->lock);
	if (ret)
		return ret;
	edu_cdrv_clear(edu, EDU_IRQ_FACT);
	iowrite32(EDU_STATUS_IRQ, edu->bar + EDU_STATUS);
	iowrite32(req.n, edu->bar + EDU_FACT);
	ret = edu_cdrv_wait(edu, EDU_IRQ_FACT);
	/*
	 * edu computes in a host thread: under -icount sleep=off an idle guest's clock can jump to
	 * the timeout before that thread ran. Done is done, interrupt or not.
	 */
	if (ret && !(ioread32(edu->bar + EDU_STATUS) & EDU_STATUS_COMPUTING))
		ret = 0;
	if (!ret)
		req.result = ioread32(edu->bar + EDU_FACT);
	mutex_unlock(&edu->lock);
	if (ret)
		return ret;
	return copy_to_user((void __user *)arg, &req, sizeof(req)) ? -EFAULT : 0;
}

/* One DMA command between the bounce buffer and window offset @off. */
static ssize_t edu_cdrv_dma(struct edu_cdrv *edu, size_t len, loff_t off, bool to_ram)
{
	enum dma_data_direction dir = to_ram ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
	struct device *dev = &edu->pdev->dev;
	dma_addr_t bus;
	int ret;

	bus = dma_map_single(dev, edu->bounce, len, dir);
	if (dma_mapping_error(dev, bus))
		return -ENOMEM;
	edu_cdrv_clear(edu, EDU_IRQ_DMA);
	writeq(to_ram ? EDU_WINDOW + off : bus, edu->bar + EDU_DMA_SRC);
	writeq(to_ram ? bus : EDU_WINDOW + off, edu->bar + EDU_DMA_DST);
	writeq(len, edu->bar + EDU_DMA_COUNT);
	writeq(EDU_CMD_START | EDU_CMD_IRQ | (to_ram ? EDU_CMD_TO_RAM : 0), edu->bar + EDU_DMA_CMD);
	ret = edu_cdrv_wait(edu, EDU_IRQ_DMA);
	if (ret) {
		edu->broken = true;
		dev_err(dev, "DMA command timed out; the device stays unusable\n");
		return ret;
	}
	dma_unmap_single(dev, bus, len, dir);
	return len;
}

static ssize_t edu_cdrv_rw(struct file *f, char __user *ubuf, size_t len, loff_t *pos,
			   bool to_ram)
{
	struct edu_cdrv *edu = to_edu(f);
	loff_t off = *pos;
	ssize_t ret;

	if (off < 0 || off >= EDU_WINDOW_SIZE)
		return off == EDU_WINDOW_SIZE ? 0 : -EINVAL;
	len = min_t(size_t, len, EDU_WINDOW_SIZE - off);
	if (!len)
		return 0;
	ret = mutex_lock_interruptible(&edu->lock);
	if (ret)
		return ret;
	if (edu->broken) {
		ret = -EIO;
	} else if (to_ram) {
		ret = edu_cdrv_dma(edu, len, off, true);
		if (ret > 0 && copy_to_user(ubuf, edu->bounce, len))
			ret = -EFAULT;
	} else {
		ret = copy_from_user(edu->bounce, ubuf, len) ? -EFAULT :
			edu_cdrv_dma(edu, len, off, false);
	}
	mutex_unlock(&edu->lock);
	if (ret > 0)
		*pos = off + ret;
	return ret;
}

static ssize_t edu_cdrv_read(struct file *f, char __user *buf, size_t len, loff_t *pos)
{
	return edu_cdrv_rw(f, buf, len, pos, true);
}

static ssize_t edu_cdrv_write(struct file *f, const char __user *buf, size_t len, loff_t *pos)
{
	return edu_cdrv_rw(f, (char __user *)buf, len, pos, false);
}

static const struct file_operations edu_cdrv_fops = {
	.owner = THIS_MODULE,
	.read = edu_cdrv_read,
	.write = edu_cdrv_write,
	.unlocked_ioctl = edu_cdrv_ioctl,
	.llseek = default_llseek,
};

static int edu_cdrv_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct edu_cdrv *edu;
	int ret, irq;

	edu = devm_kzalloc(dev, sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	edu->bounce = devm_kzalloc(dev, EDU_WINDOW_SIZE, GFP_KERNEL);
	if (!edu->bounce)
		return -ENOMEM;
	edu->pdev = pdev;
	mutex_init(&edu->lock);
	init_waitqueue_head(&edu->wq);
	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	edu->bar = pcim_iomap_region(pdev, 0, "edu_cdrv");
	if (IS_ERR(edu->bar))
		return PTR_ERR(edu->bar);
	pci_set_master(pdev);
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(28));
	if (ret)
		return ret;
	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI | PCI_IRQ_INTX);
	if (ret < 0)
		return ret;
	irq = pci_irq_vector(pdev, 0);
	ret = request_irq(irq, edu_cdrv_irq, IRQF_SHARED, "edu_cdrv", edu);
	if (ret)
		goto free_vectors;
	edu->misc.minor = MISC_DYNAMIC_MINOR;
	edu->misc.name = "edu-cdrv";
	edu->misc.fops = &edu_cdrv_fops;
	edu->misc.parent = dev;
	ret = misc_register(&edu->misc);
	if (ret)
		goto free_irq;
	pci_set_drvdata(pdev, edu);
	dev_info(dev, "edu_cdrv: /dev/edu-cdrv, irq %d (%s)\n", irq,
		 pdev->msi_enabled ? "MSI" : "INTx");
	return 0;

free_irq:
	free_irq(irq, edu);
free_vectors:
	pci_free_irq_vectors(pdev);
	return ret;
}

static void edu_cdrv_remove(struct pci_dev *pdev)
{
	struct edu_cdrv *edu = pci_get_drvdata(pdev);

	misc_deregister(&edu->misc);
	free_irq(pci_irq_vector(pdev, 0), edu);
	pci_free_irq_vectors(pdev);
}

static const struct pci_device_id edu_cdrv_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8), .override_only = 1 },
	{ }
};
MODULE_DEVICE_TABLE(pci, edu_cdrv_ids);

static struct pci_driver edu_cdrv_driver = {
	.name = "edu_cdrv",
	.id_table = edu_cdrv_ids,
	.probe = edu_cdrv_probe,
	.remove = edu_cdrv_remove,
};
module_pci_driver(edu_cdrv_driver);

MODULE_DESCRIPTION("C reference driver for QEMU's edu device (benchmarks only)");
MODULE_LICENSE("GPL");
