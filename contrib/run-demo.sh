#!/usr/bin/env bash
# Set everything up, then mount the embedded demo machine, copy /vmcore out,
# show its ELF headers and the /meminfo summary, and unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
bash contrib/setup.sh
work=$(mktemp -d /tmp/vmcorefs-demo.XXXXXX)
mnt="$work/mnt"
mkdir "$mnt"
cleanup() { .venv/bin/vmcorefs umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
.venv/bin/vmcorefs demo "$mnt"
echo "== ls -l $mnt $mnt/meminfo"
ls -l "$mnt" "$mnt/meminfo"
echo "== cp $mnt/vmcore $work/dump.elf"
time cp "$mnt/vmcore" "$work/dump.elf"
echo "== readelf -hlW dump.elf"
readelf -hlW "$work/dump.elf"
echo "== cat $mnt/meminfo/summary"
cat "$mnt/meminfo/summary"
.venv/bin/vmcorefs umount "$mnt"
echo "== unmounted"
