# make check, vIOMMU boot: edu's bus addresses are IOVAs, MSI goes through interrupt remapping.
# vm: --iommu
# vm: --mem 1G
# vm: --disk
t iommu-translates-edu 'ls /sys/class/iommu/ | grep -q . && [ -e /sys/bus/pci/devices/0000:00:03.0/iommu_group ]'
edu-tests --group core --group buf --group user --group queue
# Onward zero-copy I/O: coherent mappings are page-backed here, so GUP-fast clients take them.
disk_mount
edu-tests --group onward
