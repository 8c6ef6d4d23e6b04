# make check (EDU_DMA_ARM64=1), arm64 boot: QEMU virt with a GICv3 ITS, PCIe host coherent (virt's
# own device tree). RAM starts at 1 GiB, beyond the edu default 28-bit reach: a 64-bit mask.
# MSI goes through the ITS. The core, buf, user and unbind groups, rmmod, DMA-API checks.
# vm: --edu dma_mask=0xffffffffffffffff
# insmod: dma_bits=64
arm64_checks its
EDU_TEST_EXPECT_DMA_BITS=64 EDU_TEST_EXPECT_IRQ=msi EDU_TEST_EXPECT_COHERENT=1 edu-tests --group core --group buf --group user
edu-tests --group unbind
t rmmod-arm64 'rmmod edu_dma'
dma_api_checks
