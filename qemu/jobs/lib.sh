# shellcheck shell=sh
# In-VM side of every job under qemu/jobs/ (busybox sh): scripts/vm copies this file into the
# initramfs as /job-lib.sh, and /init sources it and calls job_run.
#
# A job file is the body of one VM boot. Its header comments are its options:
#   # vm: <scripts/vm option> [<value>]  one option a line, read by scripts/vm on the host; the
#                                        value is the rest of the line (no quoting needed)
#   # insmod: <module parameters>        read by job_run: insmod /edu_dma.ko <parameters>
# Variables passed with `scripts/vm --env NAME=VALUE` are exported from /job.env.
# The job runs after the module is loaded; its stdout and stderr are collected and printed, once
# it is done, between "=== results" and "=== end" (so kernel messages on the console cannot
# interleave with them). scripts/vm-job reads that block: its "ok <test>" / "not ok <test>" lines
# are the boot's tests.

# t <name> <command>: runs the shell command (a string, evaluated) and prints "ok <name>" or
# "not ok <name>".
t() { if eval "$2"; then echo "ok $1"; else echo "not ok $1"; fi; }

job_run() {
    # shellcheck source=/dev/null
    if [ -f /job.env ]; then . /job.env; fi
    edu_bdfs > /tmp/edu-bdfs
    {
        # shellcheck disable=SC2046 # the parameters are words
        insmod /edu_dma.ko $(sed -n 's/^# insmod: *//p' /job.sh) || echo "not ok insmod"
        # A subshell: a job's exit or cd ends only the job.
        # shellcheck source=/dev/null
        ( . /job.sh )
    } > /tmp/out 2>&1
    echo "=== results"; cat /tmp/out; echo "=== end"
}

# bound_to_both: the driver bound both edu devices of the VM.
bound_to_both() {
    n=$(find /sys/bus/pci/drivers/edu_dma/ -maxdepth 1 -name '0000:*' 2>/dev/null | wc -l)
    if [ "$n" = 2 ]; then echo "ok bound-to-both-devices"; else echo "not ok bound-to-both-devices - $n bound"; fi
}

# disk_mount: mounts the ext4 disk of `scripts/vm --disk` (/dev/vda) at /mnt and checks that the
# raw scratch disk is /dev/vdb, as one test line (edu-tests' `onward` group writes to both).
disk_mount() {
    mkdir -p /mnt
    t disk-mounted 'mount -t ext4 /dev/vda /mnt && [ "$(cat /sys/block/vdb/serial)" = edu-scratch ]'
}

# edu_bdfs: the PCI addresses of the VM's edu devices, one a line (job_run saves them in
# /tmp/edu-bdfs before the job, while every device is still plugged in).
edu_bdfs() {
    for d in /sys/bus/pci/devices/*; do
        [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] && echo "${d##*/}"
    done
}

# dma_api_checks: after rmmod, in every boot (the base kernel has DMA-API debug too). DMA-API debug
# must still be on (a detector that gave up would pass what follows without looking), then no
# DMA-API error in the whole boot and no mapping left of any edu device (unplugged ones included).
dma_api_checks() {
    d=$(cat /sys/kernel/debug/dma-api/disabled)
    if [ "$d" = N ]; then echo 'ok dma-api-enabled'; else echo "not ok dma-api-enabled - disabled: $d"; fi
    e=$(cat /sys/kernel/debug/dma-api/error_count)
    if [ "$e" = 0 ]; then echo 'ok dma-api-error-count-zero'; else echo "not ok dma-api-error-count-zero - $e"; fi
    sed 's/^/ /; s/$/ /' /tmp/edu-bdfs > /tmp/edu-bdf-words
    n=$(grep -cFf /tmp/edu-bdf-words /sys/kernel/debug/dma-api/dump)
    [ -s /tmp/edu-bdf-words ] || n='no edu device recorded'
    if [ "$n" = 0 ]; then echo 'ok dma-api-no-mapping-left'; else echo "not ok dma-api-no-mapping-left - $n"; fi
}

# leak_checks: after the debug boots' suites. rmmod, then kmemleak must still be on, then no leak
# of edu_dma, then dma_api_checks.
leak_checks() {
    t rmmod-debug 'rmmod edu_dma'
    t kmemleak-enabled 'echo scan > /sys/kernel/debug/kmemleak'
    sleep 2; echo scan > /sys/kernel/debug/kmemleak
    cat /sys/kernel/debug/kmemleak > /tmp/leaks
    if grep -q edu_dma /tmp/leaks; then echo 'not ok kmemleak-clean'; cat /tmp/leaks; else echo 'ok kmemleak-clean'; fi
    dma_api_checks
}

# fio_run <fio arguments>: Debian's fio from the disk of `scripts/vm --fio` (mounted at /mnt by
# disk_mount), started by the loader it was linked with, its libraries beside it, and the SysV
# shared-memory shim preloaded (the test kernel has no SYSVIPC; qemu/fio/shm.c).
fio_run() {
    /mnt/fio/lib/ld-linux-x86-64.so.2 --library-path /mnt/fio/lib --preload /mnt/fio/lib/libedu-shm.so \
        /mnt/fio/fio "$@"
}

# fio_tests: fio's jobs on /dev/edu-dma0 (qemu/fio/window.fio), one test line each: fio.<job> is
# ok when fio reported no error for the job (a failed crc32c verify is its error 84, EILSEQ)
# and it moved the whole 4 KiB (a write job: 4 KiB written, and 4 KiB read back by its verify
# phase; a read job: 4 KiB read and checked). fio.exit-status: fio exited 0. Then
# fio.detects-corruption: one byte of the window changed behind fio's back makes its verify fail
# at that block, with a non-zero exit.
fio_tests() {
    fio_run --output-format=terse --terse-version=3 /mnt/fio/window.fio > /tmp/fio.terse 2> /tmp/fio.err
    echo $? > /tmp/fio.rc
    sed 's/^/# fio: /' /tmp/fio.err
    sed -n 's/^\[\([a-z_]*-[a-z]*\)\]$/\1/p' /mnt/fio/window.fio > /tmp/fio.jobs
    while read -r job; do
        # terse v3: 3;version;job;group;error;read KiB;<40 more read fields>;write KiB;...
        fields=$(grep "^3;fio-[^;]*;$job;" /tmp/fio.terse | cut -d';' -f5,6,47)
        case $job in *write) want="0;4;4" ;; *) want="0;4;0" ;; esac
        [ "$fields" = "$want" ] || echo "# fio job $job: error;read KiB;write KiB = '$fields', want '$want'"
        t "fio.$job" '[ "$fields" = "$want" ]'
    done < /tmp/fio.jobs
    t fio.exit-status '[ "$(cat /tmp/fio.rc)" = 0 ]'
    t fio.detects-corruption 'printf X | dd of=/dev/edu-dma0 bs=1 seek=1000 count=1 conv=notrunc 2>/dev/null &&
        ! fio_run --name=corrupt --filename=/dev/edu-dma0 --size=4k --bs=512 --rw=read --verify=crc32c \
            --thread --output=/dev/null > /tmp/fio.bad 2>&1 &&
        grep -q "verify failed at file /dev/edu-dma0 offset 512, length 512" /tmp/fio.bad'
}

# arm64_checks its|smmuv3|noncoherent: the arm64 board's facts before the suites (qemu/jobs/arm64*.sh).
# Both devices bound, each one's interrupt an MSI of the GICv3 ITS (not a wired SPI); smmuv3:
# each device in an IOMMU group of a DMA (translating) domain of the SMMUv3; noncoherent: the PCIe
# host's device-tree node says dma-noncoherent (not dma-coherent) and the driver logged both devices non-coherent;
# otherwise it logged them coherent.
arm64_checks() {
    bound_to_both
    t arm64-msi-on-its '[ "$(grep edu_dma /proc/interrupts | grep -c ITS)" = 2 ]'
    case $1 in
        smmuv3)
            t arm64-smmuv3-present 'ls /sys/class/iommu/ | grep -q smmu'
            t arm64-smmuv3-translates-edu 'n=0; for b in $(cat /tmp/edu-bdfs); do
                grep -q "^DMA" "/sys/bus/pci/devices/$b/iommu_group/type" && n=$((n + 1)); done; [ $n = 2 ]' ;;
        *)
            t arm64-no-iommu '[ ! -e "/sys/bus/pci/devices/$(head -n 1 /tmp/edu-bdfs)/iommu_group" ]' ;;
    esac
    case $1 in
        noncoherent)
            t arm64-pcie-host-dma-noncoherent '! ls /proc/device-tree/pcie@*/dma-coherent 2>/dev/null | grep -q . &&
                ls /proc/device-tree/pcie@*/dma-noncoherent > /dev/null 2>&1'
            t arm64-driver-logged-noncoherent '[ "$(dmesg | grep -c "edu_dma.*DMA, non-coherent)")" = 2 ]' ;;
        *)
            t arm64-pcie-host-dma-coherent 'ls /proc/device-tree/pcie@*/dma-coherent > /dev/null 2>&1'
            t arm64-driver-logged-coherent '[ "$(dmesg | grep -c "edu_dma.*DMA, coherent)")" = 2 ]' ;;
    esac
}

# side_by_side [edu-bench side options]: make bench's comparison with the C reference driver
# (bench/cdrv, /edu_cdrv.ko, bound through driver_override) on the last edu, unbound from edu_dma
# for it: both drivers' interrupts and the benchmark on CPU0, FACTORIAL round trips and single
# 4 KiB pwrite/pread on /dev/edu-dma0 and /dev/edu-cdrv. Leaves that edu unbound, its BDF in
# /tmp/side-bdf.
side_by_side() {
    d=$(find /sys/bus/pci/drivers/edu_dma/ -maxdepth 1 -name '0000:*' | sort | tail -n 1); d=${d##*/}
    echo "$d" > /tmp/side-bdf
    echo "$d" > /sys/bus/pci/drivers/edu_dma/unbind
    if [ -f /edu_cdrv.ko ] && insmod /edu_cdrv.ko; then
        echo edu_cdrv > "/sys/bus/pci/devices/$d/driver_override"
        echo "$d" > /sys/bus/pci/drivers_probe
        for irq in $(awk '/edu_dma|edu_cdrv/ {sub(":", "", $1); print $1}' /proc/interrupts); do
            echo 0 > "/proc/irq/$irq/smp_affinity_list"
        done
        taskset 1 edu-bench side --devs /dev/edu-dma0,/dev/edu-cdrv "$@"
        echo "$d" > /sys/bus/pci/drivers/edu_cdrv/unbind
        rmmod edu_cdrv
    else
        echo "edu-bench: no C reference driver (/edu_cdrv.ko)" >&2
    fi
}
