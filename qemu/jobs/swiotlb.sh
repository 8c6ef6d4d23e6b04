# make check, swiotlb=force boot: every streaming mapping bounces (every count 1..=4096 for
# streaming buffers only: coherent memory never bounces, the main boot covers it); dma-buf
# export's syncs checked against real bounce buffers; the queue's requests bounce the same way.
# Onward zero-copy I/O too: every streaming page a client reads or writes has a bounce buffer.
# vm: --append swiotlb=force
# vm: --disk
EDU_TEST_EXHAUSTIVE=streaming edu-tests --group buf --group user --group dmabuf --group queue
t share-edu0-edu1 'edudma share --from /dev/edu-dma0 --to /dev/edu-dma1 --size 16K > /tmp/sh; r=$?; sed "s/^/# /" /tmp/sh; [ $r = 0 ] && grep -q "16384 bytes verified" /tmp/sh'
disk_mount
edu-tests --group onward
t rmmod-swiotlb 'rmmod edu_dma'
dma_api_checks
