# make check, vIOMMU boot: edu's bus addresses are IOVAs, MSI goes through interrupt remapping.
# vm: --iommu
# vm: --mem 1G
# vm: --disk
t iommu-translates-edu 'ls /sys/class/iommu/ | grep -q . && [ -e /sys/bus/pci/devices/0000:00:03.0/iommu_group ]'
edu-tests --group core --group buf --group user --group queue
# dma-buf import: the exporters map for edu through the vIOMMU (IOVAs, merged segments).
edu-tests --group dmabuf --filter import_
t share-edu0-edu1 'edudma share --from /dev/edu-dma0 --to /dev/edu-dma1 --size 16K > /tmp/sh; r=$?; sed "s/^/# /" /tmp/sh; [ $r = 0 ] && grep -q "16384 bytes verified" /tmp/sh'
# Onward zero-copy I/O: coherent mappings are page-backed here, so GUP-fast clients take them.
disk_mount
edu-tests --group onward
t rmmod-iommu 'rmmod edu_dma'
dma_api_checks
