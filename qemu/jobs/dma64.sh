# make check, 64-bit edu boot: a 64-bit DMA mask on 1 GiB of RAM.
# vm: --edu dma_mask=0xffffffffffffffff
# vm: --mem 1G
# insmod: dma_bits=64
EDU_TEST_EXPECT_DMA_BITS=64 edu-tests --group all
t rmmod-dma64 'rmmod edu_dma'
dma_api_checks
