# Fuzzer seed sweep (scripts/fuzz-sweep boots it; not part of make check): the ioctl fuzzer of
# `stress.fuzz` for fixed seeds, default 3000 iterations each, in one boot. Prints one
# `ok fuzz-seed-<s>` / `not ok fuzz-seed-<s> - <reason>` line per seed, plus `# ` diagnostics. A seed passes only if edu-tests exits 0 and printed
# `ok stress.fuzz` (so a selection that ran nothing cannot pass). `--filter stress.fuzz` also
# runs `stress.fuzz_overlapping_dest` (one transfer), which must pass too.
# vm: --timeout 5400
SEEDS="$(seq 1 50) 1796150319"
for s in $SEEDS; do
    t0=$(date +%s)
    EDU_FUZZ_SEED=$s edu-tests --group stress --filter stress.fuzz > /tmp/seed.log 2>&1
    rc=$?
    t=$(( $(date +%s) - t0 ))
    if [ $rc = 0 ] && grep -qx 'ok stress.fuzz' /tmp/seed.log && ! grep -q '^not ok' /tmp/seed.log; then
        echo "ok fuzz-seed-$s"
    else
        why=$(grep -m1 '^not ok' /tmp/seed.log)
        echo "not ok fuzz-seed-$s - exit $rc${why:+: $why}"
        sed 's/^/# /' /tmp/seed.log
    fi
    it=$(grep -m1 '^# fuzz: [0-9]* iterations' /tmp/seed.log | sed 's/^# fuzz: \([0-9]*\) iterations.*/\1/')
    dma=$(grep -m1 '^# fuzz: .* guest time' /tmp/seed.log | sed 's/.*DMA commands \([0-9/]*\),.*/\1/')
    echo "# seed $s: ${it:-?} iterations, DMA commands ${dma:-?}, ${t} s guest time"
    echo "fuzz-sweep: seed $s done (exit $rc)" > /dev/console
done
