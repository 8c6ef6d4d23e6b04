# make check, stress boot: load, kill -9, memory pressure and a seeded ioctl fuzzer.
# scripts/check passes the seed (--env EDU_FUZZ_SEED=N) and prints it in its summary; without it
# edu-tests takes one from the clock. The fuzzer's result line names the seed either way.
edu-tests --group stress
t rmmod-stress 'rmmod edu_dma'
dma_api_checks
