# make check, INTx boot (no MSI): the core, timeout and queue groups on a shared legacy interrupt
# (the queue is driven from the hard handler), and the per-file cap on buffer memory.
# vm: --append pci=nomsi
# insmod: file_cap_kib=1024
t intx-irq-registered 'grep -q edu_dma /proc/interrupts'
EDU_TEST_EXPECT_IRQ=intx edu-tests --group core --group timeouts
EDU_TEST_EXPECT_IRQ=intx EDU_TEST_FILE_CAP_KIB=1024 edu-tests --group queue
EDU_TEST_FILE_CAP_KIB=1024 edu-tests --filter file_cap
t rmmod-intx 'rmmod edu_dma'
dma_api_checks
