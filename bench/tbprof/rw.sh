# scripts/profile's example job: edu-dma's FACTORIAL and single 4 KiB pwrite/pread (edu-bench side),
# its interrupt and the benchmark on CPU0, counted between the two syncs.
# vm: --icount shift=4,sleep=off
# vm: --append tsc_early_khz=1000000 loglevel=4 dma_debug=off
exec 2>/dev/console
for irq in $(awk '/edu_dma/ {sub(":", "", $1); print $1}' /proc/interrupts); do
    echo 0 > "/proc/irq/$irq/smp_affinity_list"
done
taskset 1 edu-bench side --devs /dev/edu-dma0 --fact-samples 10 --rw-samples 10
sync
taskset 1 edu-bench side --devs /dev/edu-dma0 --fact-samples 1000 --rw-samples 100
sync
