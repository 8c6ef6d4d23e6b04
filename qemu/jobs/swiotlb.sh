# make check, swiotlb=force boot: every streaming mapping bounces.
# vm: --append swiotlb=force
EDU_TEST_EXHAUSTIVE=1 edu-tests --group buf --group user
