# SPDX-License-Identifier: MIT
"""
``mount -t fuse.vmcorefs`` and fstab for real (in a private mount
namespace), and the dump-environment script (contrib/vmcorefs-dump.sh) with
its systemd unit: a dump saved, a killed or signalled run resumed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (REPO, VMCOREFS, require_fuse, run_vmcorefs,
                      small_machine, vmcore_bytes)

MIB = 1 << 20
PAGE = 4096


# --------------------------------------------------------------------------
# mount(8), fstab, the dump environment


def _in_namespace(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or shutil.which("unshare") is None or not os.path.exists("/sbin/mount.fuse3"):
        pytest.skip("needs root, unshare(1) and fuse3's mount.fuse3")
    (tmp_path / "ns.sh").write_text("set -eu\n" + script)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", str(tmp_path / "ns.sh")],
                          capture_output=True, text=True, timeout=120)


def test_mount_t_fuse_vmcorefs_through_mount_fuse3(tmp_path):
    """mount(8) -> /sbin/mount.fuse3 -> 'vmcorefs demo MP -o rw,dev,suid' from a clean PATH."""
    require_fuse()
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vmcorefs").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (bindir / "vmcorefs").chmod(0o755)
    mp = tmp_path / "mnt"
    mp.mkdir()
    res = _in_namespace(f"""
export PYTHONPATH={shlex.quote(str(REPO))}
mount --bind {bindir} /usr/local/bin
mount -t fuse.vmcorefs demo {mp} -o allow_other,noatime
grep -q " {mp} fuse.vmcorefs " /proc/mounts
test -r {mp}/vmcore && head -c 4 {mp}/vmcore | od -c | head -1
grep "^mode: standalone" {mp}/meminfo/summary
umount {mp}
for i in $(seq 50); do pgrep -f "vmcorefs.*{mp}" >/dev/null || break; sleep 0.1; done
pgrep -f "vmcorefs.*{mp}" && echo "daemon still running" && exit 1
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "E   L   F" in res.stdout


def test_mount_helper_and_fstab(tmp_path):
    """contrib/mount.vmcorefs as mount(8)'s helper, from an fstab line with vmcorefs options."""
    require_fuse()
    desc = small_machine(tmp_path)
    mp = tmp_path / "mnt"
    mp.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"{desc} {mp} fuse.vmcorefs "
                     "noauto,nofail,allow_other,mode=standalone,x-systemd.idle-timeout=1 0 0\n")
    wrapper = tmp_path / "vmcorefs"
    wrapper.write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec {shlex.quote(sys.executable)} "
                       "-m vmcorefs \"$@\"\n")
    wrapper.chmod(0o755)
    helper = REPO / "contrib" / "mount.vmcorefs"
    res = _in_namespace(f"""
# the helper in place of mount.fuse3, as /sbin/mount.fuse.vmcorefs would be
mount --bind {helper} /usr/sbin/mount.fuse3
export VMCOREFS={wrapper}
mount -T {fstab} {mp}
grep -q " {mp} fuse.vmcorefs " /proc/mounts
grep "^mode: standalone" {mp}/meminfo/summary
stat -c %a {mp}/vmcore
umount {mp}
# mount(8)'s fake mode and a direct call in mount(8)'s convention
{helper} {desc} {mp} -f -o ro -t fuse.vmcorefs
! grep -q " {mp} " /proc/mounts
{helper} {desc} {mp} -o ro,allow_other -t vmcorefs
grep -q " {mp} fuse.vmcorefs " /proc/mounts
umount {mp}
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "444" in res.stdout  # allow_other came through


def test_dump_environment_script(tmp_path):
    require_fuse()
    desc = small_machine(tmp_path)
    env = dict(os.environ, VMCOREFS=str(tmp_path / "vmcorefs"), VMCOREFS_DUMP_SOURCE=str(desc),
               VMCOREFS_DUMP_DIR=str(tmp_path / "crash"), VMCOREFS_DUMP_ACTION="none",
               VMCOREFS_DUMP_RUN=str(tmp_path / "run"), VMCOREFS_DUMP_CONF="/nonexistent",
               VMCOREFS_DUMP_CMDLINE=str(tmp_path / "cmdline"))
    (tmp_path / "cmdline").write_text("console=ttysclp0 vmcorefs.mode=standalone vmcorefs.action=reboot\n")
    (tmp_path / "vmcorefs").write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                                       f"{shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (tmp_path / "vmcorefs").chmod(0o755)
    res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "mode standalone" in res.stderr  # from the kernel command line; the action from the environment
    dumps = sorted((tmp_path / "crash").glob("vmcore-*.elf"))
    assert len(dumps) == 1
    assert dumps[0].read_bytes() == vmcore_bytes(str(desc))
    subprocess.run(["sha256sum", "--quiet", "-c", dumps[0].name + ".sha256"], cwd=tmp_path / "crash", check=True)
    assert "mode: standalone" in Path(str(dumps[0])[:-4] + ".meminfo.txt").read_text()
    assert not os.path.ismount(tmp_path / "run" / "mnt")


def _dump_script_env(tmp_path: Path, source: Path, **extra: str) -> dict:
    """The environment of contrib/vmcorefs-dump.sh in the tests: everything below *tmp_path*."""
    (tmp_path / "vmcorefs").write_text(f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(REPO))} exec "
                                       f"{shlex.quote(sys.executable)} -m vmcorefs \"$@\"\n")
    (tmp_path / "vmcorefs").chmod(0o755)
    return dict(os.environ, VMCOREFS=str(tmp_path / "vmcorefs"), VMCOREFS_DUMP_SOURCE=str(source),
                VMCOREFS_DUMP_DIR=str(tmp_path / "crash"), VMCOREFS_DUMP_ACTION="none",
                VMCOREFS_DUMP_RUN=str(tmp_path / "run"), VMCOREFS_DUMP_CONF="/nonexistent",
                VMCOREFS_DUMP_CMDLINE=str(tmp_path / "cmdline"), **extra)


def test_dump_script_runs_again_after_a_killed_run(tmp_path):
    """
    What a killed run leaves: a stale vmcorefs mount (daemon gone) and a
    partial dump that cannot be resumed (here: of another dump). The next
    run detaches the mount, starts the dump over instead of failing at
    every boot; the kernel command line's words are not glob patterns.
    """
    require_fuse()
    from conftest import wait_for_mount
    desc = small_machine(tmp_path)
    other = small_machine(tmp_path, "other", seed=2)  # same size, other contents
    crash = tmp_path / "crash"
    crash.mkdir()
    old = crash / "vmcore-20000101-000000.elf"
    run_vmcorefs("save", other, old, "--chunk-size", "1M", "--stop-after", "3M", check=False)
    assert Path(str(old) + ".vmcorefs-partial").exists()
    mnt = tmp_path / "run" / "mnt"
    mnt.mkdir(parents=True)
    # unquoted, "vmcorefs.m*" would match the file vmcorefs.mode=kdump in the working directory
    (tmp_path / "cmdline").write_text("console=ttysclp0 vmcorefs.mode=standalone vmcorefs.m*\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "vmcorefs.mode=kdump").write_text("")
    daemon = subprocess.Popen(VMCOREFS + ["mount", str(desc), str(mnt), "-f"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_for_mount(mnt, daemon)
        daemon.kill()
        daemon.wait()
        with pytest.raises(OSError):
            os.listdir(mnt)  # ENOTCONN: stale
        res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")],
                             env=_dump_script_env(tmp_path, desc), cwd=cwd, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        assert "mode standalone" in res.stderr
        assert "detached" in res.stderr and "starting it over (--restart)" in res.stderr
        assert old.read_bytes() == vmcore_bytes(str(desc))
        assert not Path(str(old) + ".vmcorefs-partial").exists()
        subprocess.run(["sha256sum", "--quiet", "-c", old.name + ".sha256"], cwd=crash, check=True)
        assert not os.path.ismount(mnt)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)


def test_dump_script_starts_a_damaged_partial_dump_over(tmp_path):
    """
    A partial dump whose state file is damaged: the save exits 4 (it
    cannot be resumed, nothing was written) and the script starts that
    dump over with --restart, to the right file, instead of failing at
    every boot.
    """
    require_fuse()
    desc, crash = small_machine(tmp_path), tmp_path / "crash"
    old = crash / "vmcore-20000101-000000.elf"
    crash.mkdir()
    run_vmcorefs("save", desc, old, "--chunk-size", "1M", "--stop-after", "3M", check=False)
    state = Path(f"{old}.vmcorefs-partial")
    state.write_text(state.read_text().replace("\nchunk ", "\nchunk x", 1))  # damaged, its "done" lines intact
    res = run_vmcorefs("save", desc, old, check=False)
    assert res.returncode == 4 and "damaged" in res.stderr, res.stderr
    (tmp_path / "cmdline").write_text("")
    res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=_dump_script_env(tmp_path, desc),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "damaged" in res.stderr and "starting it over (--restart)" in res.stderr
    assert old.read_bytes() == vmcore_bytes(str(desc)) and not state.exists()
    assert sorted(p.name for p in crash.glob("vmcore-*.elf")) == [old.name]
    subprocess.run(["sha256sum", "--quiet", "-c", old.name + ".sha256"], cwd=crash, check=True)


def test_dump_script_stops_the_save_on_sigterm(tmp_path):
    """
    SIGTERM to the script alone (what systemd's KillMode=mixed sends): the
    save stops at once (not after the whole dump), the script unmounts and
    exits 143; the next run resumes to the right file.
    """
    require_fuse()
    small_machine(tmp_path, size=24 * MIB)
    desc = tmp_path / "slow.toml"  # 1 MiB of HSA per 0.25 s: a few seconds for the first 16 MiB
    run_vmcorefs("emulate", tmp_path / "m.raw", "-o", desc, "--save-areas", tmp_path / "m.cpu",
                 "--hsa-size", "16M", "--sclp-latency-us", "250000")
    (tmp_path / "cmdline").write_text("")
    env = _dump_script_env(tmp_path, desc)
    err = tmp_path / "err.txt"
    with open(err, "w") as f:
        proc = subprocess.Popen(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, stderr=f)
    try:
        # a state, not a time: the save has begun (its state file exists);
        # it may not handle signals yet (the script repeats TERM until the
        # save has stopped, whatever it is doing)
        deadline = time.monotonic() + 60
        while not list((tmp_path / "crash").glob("vmcore-*.elf.vmcorefs-partial")):
            assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert "SIGTERM: stopped after" in text, text  # the save's own message: it was stopped
    partials = list((tmp_path / "crash").glob("vmcore-*.elf.vmcorefs-partial"))
    assert len(partials) == 1
    out = Path(str(partials[0])[:-len(".vmcorefs-partial")])
    size = out.stat().st_size
    assert size < 24 * MIB
    assert not os.path.ismount(tmp_path / "run" / "mnt")
    time.sleep(0.5)
    assert out.stat().st_size == size  # nothing writes any more
    res = subprocess.run(["sh", str(REPO / "contrib" / "vmcorefs-dump.sh")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "resuming" in res.stderr and "--restart" not in res.stderr
    assert out.read_bytes() == vmcore_bytes(str(desc))


def test_dump_script_mounts_a_dump_disk_left_mounted(tmp_path):
    """A killed run left the dump disk mounted on the target directory: unmounted, mounted again, dump saved."""
    require_fuse()
    if shutil.which("mkfs.ext4") is None or shutil.which("losetup") is None or shutil.which("mountpoint") is None:
        pytest.skip("needs mkfs.ext4, losetup and mountpoint")
    desc = small_machine(tmp_path)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 * MIB)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(disk)], check=True)
    env = _dump_script_env(tmp_path, desc)
    (tmp_path / "cmdline").write_text("")
    target = tmp_path / "run" / "target"
    check = tmp_path / "check"
    (tmp_path / "want.elf").write_bytes(vmcore_bytes(str(desc)))
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if k.startswith("VMCOREFS"))
    res = _in_namespace(exports + f"""
dev=$(losetup -f --show {disk})
trap 'umount {target} 2>/dev/null || true; umount {check} 2>/dev/null || true; losetup -d "$dev"' EXIT
mkdir -p {target} {check}
mount "$dev" {target}
VMCOREFS_DUMP_TARGET=$dev VMCOREFS_DUMP_DIR=/crash sh {REPO / "contrib" / "vmcorefs-dump.sh"}
! mountpoint -q {target}
mount "$dev" {check}
ls {check}/crash
cmp {check}/crash/vmcore-*.elf {tmp_path / "want.elf"}
echo done
""", tmp_path)
    assert res.returncode == 0 and res.stdout.strip().endswith("done"), res.stdout + res.stderr
    assert "left mounted by an earlier run" in res.stderr


def test_systemd_unit_runs_the_script():
    unit = (REPO / "contrib" / "vmcorefs-dump.service").read_text()
    assert re.search(r"^ExecStart=/usr/libexec/vmcorefs/vmcorefs-dump\.sh$", unit, re.M)
    assert re.search(r"^Type=oneshot$", unit, re.M) and "[Install]" in unit
    if shutil.which("systemd-analyze"):
        res = subprocess.run(["systemd-analyze", "verify", str(REPO / "contrib" / "vmcorefs-dump.service")],
                             capture_output=True, text=True)
        problems = [ln for ln in res.stderr.splitlines()
                    if "vmcorefs-dump.sh" not in ln and "man vmcorefs" not in ln and ln.strip()]
        assert not problems, res.stderr
