# make check (EDU_DMA_ARM64=1), arm64 boot with non-coherent DMA: virt's device tree without the
# PCIe host's dma-coherent (scripts/vm --noncoherent), so the kernel does cache maintenance for
# edu: coherent buffers are uncached remaps (and so are their user mappings, the DMA API's page
# protection), streaming syncs clean and invalidate the caches. INFO must say so.
# The core, buf, user and unbind groups, rmmod, DMA-API checks.
# vm: --noncoherent
# vm: --edu dma_mask=0xffffffffffffffff
# insmod: dma_bits=64
arm64_checks noncoherent
EDU_TEST_EXPECT_DMA_BITS=64 EDU_TEST_EXPECT_IRQ=msi EDU_TEST_EXPECT_COHERENT=0 edu-tests --group core --group buf --group user
edu-tests --group unbind
t rmmod-arm64-noncoherent 'rmmod edu_dma'
dma_api_checks
