# make check, MSI boot: the whole suite (exhaustive sizes) with MSI, onward zero-copy I/O from the
# mappings (O_DIRECT to ext4 and a raw disk, MSG_ZEROCOPY, vmsplice, io_uring), real clients (dd,
# cat, head; fio with its psync, libaio and io_uring engines) on the node, unbind with files open,
# rmmod.
# vm: --fio
bound_to_both
EDU_TEST_EXHAUSTIVE=1 EDU_TEST_EXPECT_IRQ=msi edu-tests --group all
disk_mount
edu-tests --group onward
# edudma capture / replay: device -> streaming ring -> O_DIRECT file on ext4, and back; verified.
t capture-verify 'edudma capture --out /mnt/capture --size 256K --buffers 4 --buffer-size 16K --verify --quiet > /tmp/cap; r=$?; sed "s/^/# /" /tmp/cap; [ $r = 0 ] && grep -q "^capture: 262144 bytes verified" /tmp/cap'
t replay-verify 'edudma replay --in /mnt/capture --buffers 4 --buffer-size 16K --verify --quiet > /tmp/rep; r=$?; sed "s/^/# /" /tmp/rep; [ $r = 0 ] && grep -q "^replay: 262144 bytes verified" /tmp/rep'
t capture-size-not-4k-refused '! edudma capture --out /mnt/bad --size 1000 --quiet 2> /tmp/e && grep -q "multiple of 4096" /tmp/e'
# fio (Debian's, from the ext4 disk): every engine, sequential and random, writes and reads.
fio_tests
head -c 4096 /dev/urandom > /tmp/pat
t dd-write-read 'dd if=/tmp/pat of=/dev/edu-dma0 bs=4096 count=1 2>/dev/null && dd if=/dev/edu-dma0 of=/tmp/back 2>/dev/null && cmp /tmp/pat /tmp/back'
t cat-reads-window 'cat /dev/edu-dma0 | cmp - /tmp/pat'
t head-reads-prefix 'head -c 100 /dev/edu-dma0 > /tmp/h && [ "$(wc -c < /tmp/h)" = 100 ] && cmp -n 100 /tmp/h /tmp/pat'
t dd-write-past-end-enospc '! dd if=/tmp/pat of=/dev/edu-dma0 bs=4096 seek=1 count=1 2>/tmp/e && grep -q "No space" /tmp/e'
# dma-buf: edu0's buffer exported, imported by edu1; edu0 writes it by DMA, edu1 reads it by DMA.
t share-edu0-edu1 'edudma share --from /dev/edu-dma0 --to /dev/edu-dma1 --size 16K > /tmp/sh; r=$?; sed "s/^/# /" /tmp/sh; [ $r = 0 ] && grep -q "16384 bytes verified" /tmp/sh'
edu-tests --group unbind
t rmmod-after-close 'rmmod edu_dma'
dma_api_checks
