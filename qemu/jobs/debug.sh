# make check, debug kernel boot: the whole suite again under KASAN, lockdep, DMA-API debug,
# kmemleak, UBSAN bounds and Rust debug assertions, then leak and DMA-API bookkeeping checks once the module
# is gone. scripts/check adds --kernel <debug build> --module <edu_dma.ko built against it>.
# vm: --append kmemleak=on
# vm: --timeout 2400
bound_to_both
edu-tests --group all
edu-tests --group unbind
t rmmod-debug 'rmmod edu_dma'
echo scan > /sys/kernel/debug/kmemleak; sleep 2; echo scan > /sys/kernel/debug/kmemleak
cat /sys/kernel/debug/kmemleak > /tmp/leaks
if grep -q edu_dma /tmp/leaks; then echo 'not ok kmemleak-clean'; cat /tmp/leaks; else echo 'ok kmemleak-clean'; fi
e=$(cat /sys/kernel/debug/dma-api/error_count)
if [ "$e" = 0 ]; then echo 'ok dma-api-error-count-zero'; else echo "not ok dma-api-error-count-zero - $e"; fi
n=$(grep -cE ' 0000:00:0[34].0 ' /sys/kernel/debug/dma-api/dump)
if [ "$n" = 0 ]; then echo 'ok dma-api-no-mapping-left'; else echo "not ok dma-api-no-mapping-left - $n"; fi
