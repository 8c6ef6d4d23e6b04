# shellcheck disable=SC2086 # the BENCH_* options are lists of words
# make bench, guest-time boot: size sweep of the four paths, per-command driver overhead,
# FACTORIAL latency, gup_test, dma_map_benchmark (on the second edu). scripts/bench passes the
# sample counts (BENCH_* variables) and the -icount shift (BENCH_SHIFT, default 4).
# vm: --devices 2
# vm: --icount shift=4,sleep=off
# vm: --append tsc_early_khz=1000000 loglevel=4
# insmod: buf_cap_kib=16384
exec 2>/dev/console   # progress notes straight to the console: the output is the records
edu-bench sweep $BENCH_SWEEP
edu-bench overhead $BENCH_OVERHEAD
edu-bench latency --samples "$BENCH_LATENCY" --label icount
edu-bench gup $BENCH_GUP
d=$(find /sys/bus/pci/drivers/edu_dma/ -maxdepth 1 -name '0000:*' | sort | tail -n 1); d=${d##*/}
echo "$d" > /sys/bus/pci/drivers/edu_dma/unbind
echo dma_map_benchmark > "/sys/bus/pci/devices/$d/driver_override"
echo "$d" > /sys/bus/pci/drivers_probe
edu-bench dmamap --seconds 1
