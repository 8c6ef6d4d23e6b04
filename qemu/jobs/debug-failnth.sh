# make check, debug kernel boot beside debug.sh: fault injection (fail-nth) over every entry point
# and over probe (edu-tests group failnth), then the leak and DMA-API bookkeeping checks once the
# module is gone. The sweep keeps the faults out of DMA-API debug's own bookkeeping (stack-trace
# filter, see failnth.rs), so those checks stay meaningful; the fault-injection framework prints
# nothing (verbose 0). scripts/check adds --kernel <debug build> --module <edu_dma.ko built
# against it>.
# vm: --append kmemleak=on
# vm: --timeout 1800
bound_to_both
EDU_TEST_REQUIRE_FAILNTH=1 edu-tests --group failnth
leak_checks
