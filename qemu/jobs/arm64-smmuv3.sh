# make check (EDU_DMA_ARM64=1), arm64 boot behind virt's SMMUv3 (iommu=smmuv3): edu's bus
# addresses are IOVAs. The module's default 28-bit mask on purpose: RAM starts at 1 GiB, so no
# buffer could reach the device without translation (dma-direct would refuse the mask at probe).
# The core, buf, user and unbind groups, rmmod, DMA-API checks.
# vm: --iommu
arm64_checks smmuv3
EDU_TEST_EXPECT_DMA_BITS=28 EDU_TEST_EXPECT_IRQ=msi EDU_TEST_EXPECT_COHERENT=1 edu-tests --group core --group buf --group user
edu-tests --group unbind
t rmmod-arm64-smmuv3 'rmmod edu_dma'
dma_api_checks
