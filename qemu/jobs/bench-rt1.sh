# make bench, real-time boot with one edu: link utilisation (and FACTORIAL latency). No -icount:
# the figures depend on the host's load (docs/performance.md).
# vm: --devices 1
# vm: --icount none
# vm: --append loglevel=4 dma_debug=off
exec 2>/dev/console   # progress notes straight to the console: the output is the records
edu-bench link --seconds "$BENCH_LINK_S"
dmesg | grep -iE "clocksource|tsc:" | sed 's/^/# /'
edu-bench latency --samples "$BENCH_RT_LATENCY" --label realtime
