# shellcheck disable=SC2086 # the BENCH_* options are lists of words
# make bench, guest-time boot: size sweep of the four paths, per-command driver overhead,
# FACTORIAL latency, gup_test, `edudma capture` to ext4 (O_DIRECT, 4 buffers), dma_map_benchmark
# (on the second edu). scripts/bench passes the sample counts (BENCH_* variables) and the -icount
# shift (BENCH_SHIFT, default 4).
# vm: --devices 2
# vm: --disk
# vm: --icount shift=4,sleep=off
# vm: --append tsc_early_khz=1000000 loglevel=4
# insmod: buf_cap_kib=16384
exec 2>/dev/console   # progress notes straight to the console: the output is the records
edu-bench sweep $BENCH_SWEEP
edu-bench overhead $BENCH_OVERHEAD
edu-bench latency --samples "$BENCH_LATENCY" --label icount
edu-bench gup $BENCH_GUP
# Capture: device -> 4 streaming buffers -> O_DIRECT writes to ext4; its guest time against the
# device bound (100 ms per 4 KiB command). No CPU touches the payload: the device writes the
# buffers' pages and the block layer DMAs from those same pages (O_DIRECT pins the mapping).
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || echo "edu-bench: cannot mount the disk" >&2
if edudma capture --out /mnt/capture --size "$BENCH_CAPTURE" --buffers 4 --verify --quiet > /tmp/cap; then
    sed -n 's/^capture: \([0-9]*\) bytes verified in \([0-9.]*\) s, \([0-9]*\) DMA commands, [0-9.]* KiB\/s, \([0-9.]*\) of the device bound$/@bench {"kind":"capture","bytes":\1,"secs":\2,"commands":\3,"fraction":\4,"buffers":4}/p' /tmp/cap
else
    echo "edu-bench: capture failed: $(cat /tmp/cap)" >&2
fi
d=$(find /sys/bus/pci/drivers/edu_dma/ -maxdepth 1 -name '0000:*' | sort | tail -n 1); d=${d##*/}
echo "$d" > /sys/bus/pci/drivers/edu_dma/unbind
echo dma_map_benchmark > "/sys/bus/pci/devices/$d/driver_override"
echo "$d" > /sys/bus/pci/drivers_probe
edu-bench dmamap --seconds 1
