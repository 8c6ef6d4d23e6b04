# make demo: the /dev nodes, `edudma info`, factorials computed by the device, buffer round trips
# through it, a verified DMA copy. scripts/demo prints this job's output.
ls -l /dev/edu-dma*
edudma info --all
edudma --dev /dev/edu-dma0 factorial 10
edudma --dev /dev/edu-dma1 factorial 12
edudma --dev /dev/edu-dma0 buf --kind coherent --size 4096
edudma --dev /dev/edu-dma1 buf --kind streaming --size 4096
edudma --dev /dev/edu-dma0 copy --size 64K
