# make check, vIOMMU boot: edu's bus addresses are IOVAs, MSI goes through interrupt remapping.
# vm: --iommu
# vm: --mem 1G
t iommu-translates-edu 'ls /sys/class/iommu/ | grep -q . && [ -e /sys/bus/pci/devices/0000:00:03.0/iommu_group ]'
edu-tests --group core --group buf --group user
