#!/bin/sh
# SPDX-License-Identifier: MIT
# vmcorefs-dump.sh: the dump step of a dump environment, the job zfcpdump's
# user space does after a stand-alone dump IPL (or a kdump initramfs after a
# crash): mount vmcorefs on the crashed machine, save /vmcore to the dump
# disk with its SHA-256 and the /meminfo summary, unmount, then reboot (or
# power off, or stay). Plain POSIX sh for an initramfs; run by
# contrib/vmcorefs-dump.service under systemd.
#
# Configuration, later ones winning: the defaults below; /etc/vmcorefs/dump.conf
# (shell assignments of the VMCOREFS_DUMP_* variables); the kernel command
# line (vmcorefs.source=, vmcorefs.target=, vmcorefs.dir=, vmcorefs.mode=,
# vmcorefs.action=); the environment.
#
#   VMCOREFS_DUMP_SOURCE  what to dump: a machine description, an s390 dump
#                         file, "demo", or /proc/vmcore (a real kdump kernel:
#                         saved as is, no mount) [/etc/vmcorefs/machine.toml]
#   VMCOREFS_DUMP_TARGET  the dump disk to mount (/dev/..., LABEL=..., UUID=...),
#                         or empty when VMCOREFS_DUMP_DIR is already mounted []
#   VMCOREFS_DUMP_DIR     the directory for the dumps: below the dump disk's
#                         root when a target is given [/var/crash]
#   VMCOREFS_DUMP_MODE    auto | kdump | standalone [auto]
#   VMCOREFS_DUMP_ACTION  after the dump: reboot | poweroff | halt | none [reboot]
#   VMCOREFS              the vmcorefs command [vmcorefs on the PATH]
#   VMCOREFS_DUMP_RUN     working directory for mount points [/run/vmcorefs]
#
# Each dump is DIR/vmcore-YYYYmmdd-HHMMSS.elf with .sha256 and .meminfo.txt
# beside it. A dump interrupted by a reset is resumed at the next run (the
# newest *.vmcorefs-partial in DIR), after vmcorefs has verified what was
# written; a partial dump that cannot be resumed (damaged, or of another
# dump: vmcorefs save exits with status 4 then, having written nothing) is
# started over instead. Mounts left behind by a killed run are
# detached first. Exit status: 0 saved, 1 failed (the action is not taken
# then, so that someone can look), 143 (SIGTERM) or 130 (SIGINT): stopped,
# the next run resumes.
set -u

log() { echo "vmcorefs-dump: $*" >&2; }
die() { log "$*"; cleanup; exit 1; }

env_source=${VMCOREFS_DUMP_SOURCE-} env_target=${VMCOREFS_DUMP_TARGET-} env_dir=${VMCOREFS_DUMP_DIR-}
env_mode=${VMCOREFS_DUMP_MODE-} env_action=${VMCOREFS_DUMP_ACTION-}
VMCOREFS_DUMP_SOURCE=/etc/vmcorefs/machine.toml
VMCOREFS_DUMP_TARGET=
VMCOREFS_DUMP_DIR=/var/crash
VMCOREFS_DUMP_MODE=auto
VMCOREFS_DUMP_ACTION=reboot
conf=${VMCOREFS_DUMP_CONF:-/etc/vmcorefs/dump.conf}
# shellcheck disable=SC1090
[ -r "$conf" ] && . "$conf"
cmdline=${VMCOREFS_DUMP_CMDLINE:-/proc/cmdline}
if [ -r "$cmdline" ]; then
    set -f  # split the command line into words, but expand no pattern in it
    for word in $(cat "$cmdline"); do
        case $word in
            vmcorefs.source=*) VMCOREFS_DUMP_SOURCE=${word#*=} ;;
            vmcorefs.target=*) VMCOREFS_DUMP_TARGET=${word#*=} ;;
            vmcorefs.dir=*) VMCOREFS_DUMP_DIR=${word#*=} ;;
            vmcorefs.mode=*) VMCOREFS_DUMP_MODE=${word#*=} ;;
            vmcorefs.action=*) VMCOREFS_DUMP_ACTION=${word#*=} ;;
        esac
    done
    set +f
fi
[ -n "$env_source" ] && VMCOREFS_DUMP_SOURCE=$env_source
[ -n "$env_target" ] && VMCOREFS_DUMP_TARGET=$env_target
[ -n "$env_dir" ] && VMCOREFS_DUMP_DIR=$env_dir
[ -n "$env_mode" ] && VMCOREFS_DUMP_MODE=$env_mode
[ -n "$env_action" ] && VMCOREFS_DUMP_ACTION=$env_action
vmcorefs=${VMCOREFS:-vmcorefs}
run=${VMCOREFS_DUMP_RUN:-/run/vmcorefs}
mnt=$run/mnt
target_mnt=$run/target
mounted_fs="" mounted_target="" save_pid=""

cleanup() {
    [ -n "$mounted_fs" ] && { "$vmcorefs" umount "$mnt" || "$vmcorefs" umount --lazy "$mnt"; } >/dev/null 2>&1
    [ -n "$mounted_target" ] && umount "$target_mnt" 2>/dev/null
    mounted_fs="" mounted_target=""
}
# A signal stops the save (it records what reached the disk, so that the
# next run resumes), then the mounts go. The save runs in the background
# with 'wait': a shell runs no trap while a foreground command runs, and
# systemd (KillMode=mixed) signals only this shell.
# The save starts with INT and TERM ignored and takes them over once it can
# stop cleanly (Python starting up would otherwise die of an early signal,
# before its partial file says what was written): TERM is sent again until
# it has stopped, however fast or slow it starts. (A signal in the instant
# between the fork and the subshell's trap ends the save before it began:
# nothing was written, and the next run starts afresh.)
stop() {
    trap '' INT TERM
    if [ -n "$save_pid" ]; then
        while kill -TERM "$save_pid" 2>/dev/null && ! exited "$save_pid"; do
            sleep 1
        done
        wait "$save_pid"
    fi
    cleanup
    exit "$1"
}
# exited PID: the process is gone or a zombie (exited, not yet waited for)
exited() {
    [ ! -r "/proc/$1/stat" ] || [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]
}
trap 'stop 130' INT
trap 'stop 143' TERM

# an initramfs may have none of these yet
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -e /dev/null ] || mount -t devtmpfs devtmpfs /dev
command -v "$vmcorefs" >/dev/null 2>&1 || die "$vmcorefs not found: set VMCOREFS or put vmcorefs on the PATH"

# a killed run may have left its mounts: a stale vmcorefs mount (its daemon
# gone) and the dump disk
if [ -d "$run" ]; then
    "$vmcorefs" umount --lazy "$mnt" >/dev/null 2>&1 && log "detached $mnt, left mounted by an earlier run"
fi
mkdir -p "$mnt" "$target_mnt" || die "cannot create $run"
dir=$VMCOREFS_DUMP_DIR
if [ -n "$VMCOREFS_DUMP_TARGET" ]; then
    dev=$VMCOREFS_DUMP_TARGET
    case $dev in LABEL=*|UUID=*) dev=$(blkid -l -o device -t "$dev") || die "no disk $VMCOREFS_DUMP_TARGET";; esac
    if mountpoint -q "$target_mnt"; then
        log "unmounting $target_mnt, left mounted by an earlier run"
        umount "$target_mnt" || umount -l "$target_mnt" || die "cannot unmount $target_mnt"
    fi
    mounted_target=1  # already: a signal during mount runs its trap right after it
    mount "$dev" "$target_mnt" || die "cannot mount the dump disk $dev"
    dir=$target_mnt/${VMCOREFS_DUMP_DIR#/}
fi
mkdir -p "$dir" || die "cannot create $dir"

# resume the newest interrupted dump, else start a new one
name=""
for partial in "$dir"/vmcore-*.elf.vmcorefs-partial; do
    [ -e "$partial" ] && name=$(basename "${partial%.vmcorefs-partial}")
done
[ -n "$name" ] && log "resuming $dir/$name"
[ -n "$name" ] || name=vmcore-$(date +%Y%m%d-%H%M%S).elf
out=$dir/$name

if [ "$VMCOREFS_DUMP_SOURCE" = /proc/vmcore ]; then
    src=/proc/vmcore
    [ -r /proc/vmcore ] || die "no /proc/vmcore: this is not a kdump kernel"
else
    modprobe fuse 2>/dev/null || true
    [ -c /dev/fuse ] || die "/dev/fuse is missing: load the fuse module"
    log "mounting $VMCOREFS_DUMP_SOURCE on $mnt (mode $VMCOREFS_DUMP_MODE)"
    mounted_fs=1  # already: a signal during mount runs its trap right after it
    "$vmcorefs" mount "$VMCOREFS_DUMP_SOURCE" "$mnt" --mode "$VMCOREFS_DUMP_MODE" \
        || die "cannot mount $VMCOREFS_DUMP_SOURCE"
    cp "$mnt/meminfo/summary" "${out%.elf}.meminfo.txt" 2>/dev/null || log "no /meminfo/summary saved"
    src=$mnt
fi

# run_save [OPTION]: vmcorefs save in the background (see stop); sets status
run_save() {
    (trap '' INT TERM; exec "$vmcorefs" save "$src" "$out" --progress --sha256-file --sync "$@") &
    save_pid=$!
    wait "$save_pid"
    status=$?
    save_pid=""
}

log "saving $src to $out"
run_save
if [ $status -eq 4 ]; then
    # vmcorefs save: the partial dump cannot be resumed (damaged, of another
    # dump, or the source changed) and nothing was written; resuming would
    # fail at every boot
    log "cannot resume $out: starting it over (--restart)"
    run_save --restart
fi
if [ $status -ne 0 ]; then
    die "the dump was not saved (exit $status); $out.vmcorefs-partial lets the next run resume"
fi
sha256=$(cut -d' ' -f1 "$out.sha256")  # before the dump disk is unmounted
cleanup
sync
log "saved $out ($sha256)"

case $VMCOREFS_DUMP_ACTION in
    reboot) log "rebooting"; reboot -f ;;
    poweroff) log "powering off"; poweroff -f ;;
    halt) halt -f ;;
    none|"") ;;
    *) log "unknown action $VMCOREFS_DUMP_ACTION: staying" ;;
esac
exit 0
