# make check, debug kernel boot: the whole suite again under KASAN, lockdep, DMA-API debug,
# kmemleak, UBSAN bounds and Rust debug assertions, the fail-nth fault-injection sweep, then leak
# and DMA-API bookkeeping checks once the module is gone. scripts/check adds --kernel <debug
# build> --module <edu_dma.ko built against it>.
# vm: --append kmemleak=on
# vm: --timeout 2400
bound_to_both
edu-tests --group all
edu-tests --group unbind
# Fault injection (fail-nth) over every entry point and over probe. It keeps the faults out of
# DMA-API debug's own bookkeeping (stack-trace filter, see failnth.rs), so the checks below stay
# meaningful; the fault-injection framework prints nothing (verbose 0).
EDU_TEST_REQUIRE_FAILNTH=1 edu-tests --group failnth
t rmmod-debug 'rmmod edu_dma'
# Both leak detectors still on: a detector that gave up (kmemleak refuses a scan, DMA-API debug
# reads disabled) would pass the checks after it without looking.
t kmemleak-enabled 'echo scan > /sys/kernel/debug/kmemleak'
sleep 2; echo scan > /sys/kernel/debug/kmemleak
cat /sys/kernel/debug/kmemleak > /tmp/leaks
if grep -q edu_dma /tmp/leaks; then echo 'not ok kmemleak-clean'; cat /tmp/leaks; else echo 'ok kmemleak-clean'; fi
d=$(cat /sys/kernel/debug/dma-api/disabled)
if [ "$d" = N ]; then echo 'ok dma-api-enabled'; else echo "not ok dma-api-enabled - disabled: $d"; fi
e=$(cat /sys/kernel/debug/dma-api/error_count)
if [ "$e" = 0 ]; then echo 'ok dma-api-error-count-zero'; else echo "not ok dma-api-error-count-zero - $e"; fi
n=$(grep -cE ' 0000:00:0[34].0 ' /sys/kernel/debug/dma-api/dump)
if [ "$n" = 0 ]; then echo 'ok dma-api-no-mapping-left'; else echo "not ok dma-api-no-mapping-left - $n"; fi
