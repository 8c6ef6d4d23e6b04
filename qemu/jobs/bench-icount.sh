# shellcheck disable=SC2086 # the BENCH_* options are lists of words
# make bench, guest-time boot: size sweep of the four paths, per-command driver overhead,
# FACTORIAL latency, command gaps and CPU time per command (synchronous loops and the queue), one
# thread driving the 4 edu devices through their queues, gup_test, `edudma capture` to ext4
# (O_DIRECT, 4 buffers), edu-dma side by side with the C reference driver (bench/cdrv, on the last
# edu), dma_map_benchmark (then on it). scripts/bench passes the sample counts (BENCH_* variables),
# the C driver (/edu_cdrv.ko) and the -icount shift (BENCH_SHIFT, default 4).
# vm: --devices 4
# vm: --disk
# vm: --icount shift=4,sleep=off
# vm: --append tsc_early_khz=1000000 loglevel=4 dma_debug=off
# insmod: buf_cap_kib=16384
exec 2>/dev/console   # progress notes straight to the console: the output is the records
edu-bench sweep $BENCH_SWEEP
edu-bench overhead $BENCH_OVERHEAD
edu-bench latency --samples "$BENCH_LATENCY" --label icount
# Completion-interrupt-to-next-start gaps (the driver's debugfs edu-dma0/gaps) and CPU time per
# command (process + interrupt handler): XFER, pwrite/pread and COPY loops against the queue. The
# edu interrupts and the benchmark on CPU 0: where the waiter runs changes both figures by ~10 us
# (a wakeup on the handler's own CPU is done in the handler), and the kernel picks the IRQ's CPU.
for a in /sys/bus/pci/drivers/edu_dma/0000:*/msi_irqs/*; do
    [ -e "$a" ] && echo 0 > "/proc/irq/${a##*/}/smp_affinity_list"
done
edu-bench gaps --cpu 0 $BENCH_GAPS
# One thread, the queues of edu-dma0..3 (poll + REAP): aggregate against edu-dma0 alone. Before
# dma_map_benchmark takes the last device.
edu-bench qscale --devices 4 $BENCH_QSCALE
edu-bench gup $BENCH_GUP
# Capture: device -> 4 streaming buffers -> O_DIRECT writes to ext4; its guest time against the
# device bound (100 ms per 4 KiB command), and where the time went (--timings: the filling
# thread's wait for a free buffer is device idle time). Twice: as the tool runs by default, and
# with --spin, which keeps a CPU busy while a disk write is outstanding: under -icount sleep=off an
# idle guest's clock jumps to its next timer, so with every buffer at the disk (the host's disk is
# slower than the emulated device in wall time) the host's milliseconds of disk I/O cost up to
# seconds of guest time (docs/performance.md, figure 7).
# No CPU touches the payload: the device writes the buffers' pages and the block layer DMAs from
# those same pages (O_DIRECT pins the mapping). Shown by the record: the filling and writing
# threads' CPU time, the page cache's growth (none: O_DIRECT), and the sectors the disk wrote
# (/sys/block/vda/stat: the payload once, plus ext4's metadata).
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || echo "edu-bench: cannot mount the disk" >&2
capture_record() { # capture_record <kind> [edudma capture options]
    kind=$1; shift
    w0=$(awk '{print $7}' /sys/block/vda/stat)
    if edudma capture --out /mnt/capture --size "$BENCH_CAPTURE" --buffers 4 --verify --timings --quiet "$@" > /tmp/cap; then
        w1=$(awk '{print $7}' /sys/block/vda/stat)
        sed -n 's/^capture: \([0-9]*\) bytes verified in \([0-9.]*\) s, \([0-9]*\) DMA commands, [0-9.]* KiB\/s, \([0-9.]*\) of the device bound$/\1 \2 \3 \4/p' /tmp/cap > /tmp/cap.fig
        sed -n 's/^capture timings: //p' /tmp/cap > /tmp/cap.kv
        read -r bytes secs cmds frac < /tmp/cap.fig
        kv=$(tr ' ' '\n' < /tmp/cap.kv | sed 's/^\([a-z_]*\)=\(.*\)$/"\1":\2/' | paste -sd, -)
        echo "@bench {\"kind\":\"$kind\",\"bytes\":$bytes,\"secs\":$secs,\"commands\":$cmds,\"fraction\":$frac,\"buffers\":4,\"options\":\"$*\",\"disk_write_sectors\":$((w1 - w0)),$kv}"
    else
        echo "edu-bench: capture failed: $(cat /tmp/cap)" >&2
    fi
    rm -f /mnt/capture
}
capture_record capture_plain
capture_record capture --spin
# The last edu leaves edu_dma: first for the C reference driver (side_by_side, qemu/jobs/lib.sh),
# measured side by side with edu-dma on the first edu; then for dma_map_benchmark. (The boot
# `tick`, bench-tick.sh, repeats the comparison with the periodic tick.)
side_by_side $BENCH_SIDE
d=$(cat /tmp/side-bdf)
echo dma_map_benchmark > "/sys/bus/pci/devices/$d/driver_override"
echo "$d" > /sys/bus/pci/drivers_probe
edu-bench dmamap --seconds 1
