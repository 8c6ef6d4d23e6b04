# make check, debug kernel boot: the whole suite again under KASAN, lockdep, DMA-API debug,
# kmemleak, UBSAN bounds and Rust debug assertions, then the leak and DMA-API bookkeeping checks
# once the module is gone. The fail-nth sweep is its own boot (debug-failnth.sh), beside this
# one. scripts/check adds --kernel <debug build> --module <edu_dma.ko built against it>.
# vm: --append kmemleak=on
# vm: --timeout 2400
bound_to_both
edu-tests --group all
edu-tests --group unbind
leak_checks
