# make check, hot unplug boot: QEMU unplugs edu-dma1 (device_del through QMP) while commands run
# on it, when edu-tests prints EDU-UNPLUG-NOW on the console.
# vm: --hotplug
edu-tests --group unplug | tee /dev/console
t other-device-survives-unplug 'edudma --dev /dev/edu-dma0 factorial 5 >/dev/null'
t rmmod-after-unplug 'rmmod edu_dma'
