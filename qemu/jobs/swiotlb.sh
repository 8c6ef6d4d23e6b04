# make check, swiotlb=force boot: every streaming mapping bounces (every count 1..=4096 for
# streaming buffers only: coherent memory never bounces, the main boot covers it).
# vm: --append swiotlb=force
EDU_TEST_EXHAUSTIVE=streaming edu-tests --group buf --group user
