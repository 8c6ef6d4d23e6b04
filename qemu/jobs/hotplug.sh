# make check, hot unplug boot: QEMU unplugs edu-dma1 (device_del through QMP) while commands run
# on it, when edu-tests prints EDU-UNPLUG-NOW 1; then edu-dma2 while a MSG_ZEROCOPY send, an
# O_DIRECT write to ext4 and a registered io_uring buffer hold streaming pages of its buffers
# (EDU-UNPLUG-NOW 2).
# vm: --devices 3
# vm: --hotplug 2
# vm: --disk
disk_mount
edu-tests --group unplug | tee /dev/console
t other-device-survives-unplug 'edudma --dev /dev/edu-dma0 factorial 5 >/dev/null'
t rmmod-after-unplug 'rmmod edu_dma'
dma_api_checks
