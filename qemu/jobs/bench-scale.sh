# make bench, real-time scaling boots (rt2, rt4): one COPY process per edu device.
# scripts/bench adds --devices N and passes BENCH_PROCS=N.
# vm: --icount none
# vm: --append loglevel=4 dma_debug=off
exec 2>/dev/console   # progress notes straight to the console: the output is the records
edu-bench scale --procs "$BENCH_PROCS" --seconds "$BENCH_SCALE_S"
