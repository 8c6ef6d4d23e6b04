# shellcheck disable=SC2086 # BENCH_SIDE is a list of words
# make bench, guest-time boot with the periodic tick (nohz=off): edu-dma side by side with the C
# reference driver (side_by_side, qemu/jobs/lib.sh), as in the icount boot. The kernel idles
# tickless (NO_HZ_IDLE) everywhere else; the reference figures for the C driver (126 us
# per 4 KiB pwrite) were measured on a kernel with the periodic tick, whose idle exit costs each
# driver's round trip about 20 us less (docs/performance.md, section 11).
# vm: --devices 2
# vm: --icount shift=4,sleep=off
# vm: --append tsc_early_khz=1000000 loglevel=4 dma_debug=off nohz=off
exec 2>/dev/console   # progress notes straight to the console: the output is the records
side_by_side $BENCH_SIDE
