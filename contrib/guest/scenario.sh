#!/bin/sh
# SPDX-License-Identifier: MIT
# Guest side of contrib/guest/run-scenario.py, run by the userland's
# /sbin/vmcorefs-init (vmcorefs_run=/mnt/share/scenario.sh) in the first
# kernel and, after the crash, in the kdump capture kernel. The host staged
# in /mnt/share: src/ (this checkout's vmcorefs package and
# contrib/vmcorefs-dump.sh), guestcheck.py, bzImage, config.sh (SCENARIO,
# PEEK, EFAULT, ROOT_ARGS). Every step writes out/NAME.out, out/NAME.err and a line
# "NAME rc=N start=UPTIME end=UPTIME" to out/steps.txt, and prints
# "VMCOREFS-T8 step NAME rc=N" on the console (the host's watchdog).
#
# Scenarios: live (first kernel: demo hashes, /dev/mem as SOURCE), kdump
# (crash at once; the capture kernel: /proc/vmcore, vmcorefs on it, the dump
# step), all (live, then kdump, in one boot).
S=/mnt/share
O=$S/out
. $S/config.sh
export PYTHONPATH=$S/src
up() { cut -d' ' -f1 /proc/uptime; }
mark() { echo "VMCOREFS-T8 $* uptime=$(up)"; }
step() {
    name=$1
    shift
    a=$(up)
    "$@" > "$O/$name.out" 2> "$O/$name.err"
    rc=$?
    echo "$name rc=$rc start=$a end=$(up)" >> "$O/steps.txt"
    mark "step $name rc=$rc"
    return $rc
}
M=/mnt/scratch  # tmpfs: the root is read-only
V="python3 -m vmcorefs"
G="python3 $S/guestcheck.py"
mkdir -p /run/bin
printf '#!/bin/sh\nexec python3 -m vmcorefs "$@"\n' > /run/bin/vmcorefs
chmod 755 /run/bin/vmcorefs

if [ -e /proc/vmcore ]; then
    mark "capture-kernel"
    cat /proc/iomem > "$O/cap-iomem.txt"
    step cap-proc-vmcore $G hash /proc/vmcore
    mark "proc-vmcore $(cut -d'"' -f8 "$O/cap-proc-vmcore.out")"
    step cap-check $V check /proc/vmcore
    step cap-info $V info /proc/vmcore
    mkdir -p $M/k
    step cap-mount $V mount /proc/vmcore $M/k
    step cap-summary cat $M/k/meminfo/summary
    step cap-vmcore $G hash $M/k/vmcore
    step cap-umount fusermount3 -u $M/k
    step cap-dump env VMCOREFS=/run/bin/vmcorefs VMCOREFS_DUMP_SOURCE=/proc/vmcore VMCOREFS_DUMP_TARGET=$($G disks dump) \
        VMCOREFS_DUMP_DIR=/dumps VMCOREFS_DUMP_ACTION=none sh $S/src/contrib/vmcorefs-dump.sh
    mark "capture-done"
    exit 0
fi

mark "first-kernel scenario=$SCENARIO"
cat /proc/iomem > "$O/iomem.txt"
if [ "$SCENARIO" != kdump ]; then
    mkdir -p $M/demo $M/live
    step demo-mount $V demo $M/demo
    step demo-vmcore $G hash $M/demo/vmcore
    # the dump header's TOD (offset 0x38) is when the mount was made: zeroed;
    # the header and the first 64 MiB (the HSA, every CPU's lowcore and save
    # area): the rest is the memory /vmcore showed (reading all costs 45 s)
    step demo-zcore-mem $G hash $M/demo/zcore/mem --zero-at 0x38:8 --limit 0x4001000
    step demo-meminfo $G tree $M/demo/meminfo
    for f in memmap reipl hsa; do step demo-zcore-$f $G hash $M/demo/zcore/$f; done
    step demo-umount fusermount3 -u $M/demo

    step live-info $V info /dev/mem
    step live-check $V check /dev/mem
    # the mount is told that the kernel refuses the page EFAULT (the test seam:
    # this kernel has no CMM); EFAULT is kernel text, which peek and pinned never read
    VMCOREFS_DEVMEM_TEST="efault=$EFAULT" step live-mount $V mount /dev/mem $M/live
    step live-summary cat $M/live/meminfo/summary
    step live-peek $G peek $M/live/vmcore $PEEK
    step live-pinned $G pinned $M/live/vmcore 16
    step live-efault $G page $M/live/vmcore "$EFAULT"
    step live-umount fusermount3 -u $M/live
    # the whole live /vmcore, built in the process (no FUSE), for crash on the host
    step live-save $V save /dev/mem "$($G disks live)" --force -q
    # (the one-line errors of a bad /dev/mem or /proc/vmcore: tests/test_t8_devmem.py, on the host)
fi
mark "first-kernel-done"
if [ "$SCENARIO" != live ]; then
    kexec -s -p $S/bzImage --append="console=ttysclp0 $ROOT_ARGS nr_cpus=1 panic=0 vmcorefs_run=/mnt/share/scenario.sh"
    mark "kexec rc=$? loaded=$(cat /sys/kernel/kexec_crash_loaded)"
    sync
    mark "crashing"
    echo c > /proc/sysrq-trigger
fi
