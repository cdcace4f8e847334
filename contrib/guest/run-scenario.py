#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
Run a named vmcorefs scenario on a real s390x Linux: the kernel of
../shared/guest (bzImage) under qemu-system-s390x (TCG), with a Debian 12
s390x userland and this checkout.

    contrib/guest/run-scenario.py NAME --out DIR [--peek ADDR:LEN ...] [--efault ADDR]

NAME is a scenario of contrib/guest/scenario.sh: ``live`` (the first kernel:
the demo's files hashed through FUSE, /dev/mem as SOURCE), ``kdump`` (crash
at once, the capture kernel: /proc/vmcore, vmcorefs on it, the dump step of
contrib/vmcorefs-dump.sh onto a virtio disk) or ``all`` (both, one boot).

- Userland: ../shared/guest/make-userland.sh with python3-pytest and
  python3-hypothesis, in its own cache (/var/tmp/vmcorefs-userland-t8, or
  $VMCOREFS_GUEST_USERLAND): rebuilt only when the resolved packages or the
  script change; the squashfs image is the guest's root disk (/dev/vda), the
  unpacked tree (root/) serves as sysroot for qemu-s390x.
- This checkout: the vmcorefs package, contrib/vmcorefs-dump.sh,
  guestcheck.py and scenario.sh are copied into DIR/share, the guest's 9p
  share (/mnt/share; results in DIR/share/out).
- Disks: the root (the squashfs in partition 1 of an MBR disk, found by
  PARTUUID), DIR/live.img (raw, sparse; the live system's /vmcore is saved
  onto it), DIR/dump.ext4 (label DUMP, the dump step's target; its /dumps
  is copied out to DIR/dumps with debugfs afterwards). virtio-ccw disks get
  their names in no fixed order: the guest tells them by their content
  (guestcheck.py disks).
- Time limits: each console marker must come within --step-timeout seconds
  of the previous one, the whole run within --timeout; a hang fails in
  minutes, QEMU is killed.

Writes DIR/console.log and DIR/result.json (markers with host times, steps
with guest uptimes, exit); exits 0 when the scenario reached its end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GUEST = Path(os.environ.get("VMCOREFS_GUEST_DIR", REPO.parent / "shared" / "guest"))
USERLAND = Path(os.environ.get("VMCOREFS_GUEST_USERLAND", "/var/tmp/vmcorefs-userland-t8"))
EXTRA_PACKAGES = ("python3-pytest", "python3-hypothesis")
SCENARIOS = ("live", "kdump", "all")
ENDS = {"live": "VMCOREFS-T8 first-kernel-done", "kdump": "VMCOREFS-T8 capture-done",
        "all": "VMCOREFS-T8 capture-done"}


class ScenarioError(RuntimeError):
    """The scenario did not run to its end (the message says where)."""


def userland(timeout: float = 900) -> tuple[Path, Path]:
    """Build (or find up to date) the userland image; return (image, unpacked root)."""
    USERLAND.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["bash", str(GUEST / "make-userland.sh"), *EXTRA_PACKAGES],
                         env=dict(os.environ, CACHE=str(USERLAND)), capture_output=True, text=True,
                         timeout=timeout, cwd=USERLAND)
    if res.returncode != 0:
        raise ScenarioError(f"make-userland.sh failed ({res.returncode}): {res.stderr[-2000:]}")
    image = Path(res.stdout.strip().splitlines()[-1])
    return image, USERLAND / "root"


DISK_SIGNATURE = 0x766D6366  # "vmcf": the root disk's MBR signature, root=PARTUUID=766d6366-01
ROOT_START = 1 << 20  # the squashfs starts 1 MiB into the root disk, in partition 1


def root_disk(image: Path) -> Path:
    """
    The squashfs in partition 1 of an MBR disk (cached beside it): the
    kernel finds its root by PARTUUID, because virtio-ccw disks are probed
    in no fixed order (/dev/vda is not always the first -drive).
    """
    disk = image.with_suffix(".mbr")
    st = image.stat()
    stamp = f"{st.st_size} {st.st_mtime_ns}"
    if disk.exists() and Path(str(disk) + ".inputs").exists() and Path(str(disk) + ".inputs").read_text() == stamp:
        return disk
    size = -(-st.st_size // 512) * 512
    mbr = bytearray(512)
    mbr[440:444] = DISK_SIGNATURE.to_bytes(4, "little")
    mbr[446:462] = bytes([0, 0, 2, 0, 0x83, 0xFE, 0xFF, 0xFF]) + (ROOT_START // 512).to_bytes(4, "little") \
        + (size // 512).to_bytes(4, "little")
    mbr[510:512] = b"\x55\xaa"
    tmp = Path(str(disk) + ".tmp")
    with open(tmp, "wb") as f, open(image, "rb") as src:
        f.write(mbr)
        f.seek(ROOT_START)
        shutil.copyfileobj(src, f, 1 << 20)
        f.truncate(ROOT_START + size)
    os.replace(tmp, disk)
    Path(str(disk) + ".inputs").write_text(stamp)
    return disk


ROOT_ARGS = f"root=PARTUUID={DISK_SIGNATURE:08x}-01 rootfstype=squashfs ro init=/sbin/vmcorefs-init"


def stage(out: Path, scenario: str, peek: list[str], efault: int) -> Path:
    share = out / "share"
    if share.exists():
        shutil.rmtree(share)
    (share / "out").mkdir(parents=True)
    shutil.copytree(REPO / "vmcorefs", share / "src" / "vmcorefs",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (share / "src" / "contrib").mkdir()
    shutil.copy(REPO / "contrib" / "vmcorefs-dump.sh", share / "src" / "contrib")
    # byte-compiled here (Python 3.11 as in the guest; TCG compiles slowly)
    if sys.version_info[:2] == (3, 11):
        import compileall
        compileall.compile_dir(share / "src" / "vmcorefs", quiet=1)
    for f in ("guestcheck.py", "scenario.sh"):
        shutil.copy(HERE / f, share / f)
    shutil.copy(GUEST / "bzImage", share / "bzImage")
    (share / "config.sh").write_text(f"SCENARIO={scenario}\nPEEK='{' '.join(peek)}'\nEFAULT={efault:#x}\n"
                                     f"ROOT_ARGS='{ROOT_ARGS}'\n")
    return share


def make_disks(out: Path, mem_mib: int) -> tuple[Path, Path]:
    live = out / "live.img"
    live.unlink(missing_ok=True)
    with open(live, "wb") as f:
        f.truncate((mem_mib + 64) << 20)
    dump = out / "dump.ext4"
    dump.unlink(missing_ok=True)
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-L", "DUMP", "-F", str(dump), "1G"], check=True,
                   capture_output=True, timeout=120)
    return live, dump


def boot(out: Path, share: Path, image: Path, live: Path, dump: Path, *, mem_mib: int, smp: int,
         crashkernel: str, end: str, timeout: float, step_timeout: float) -> dict:
    append = f"console=ttysclp0 {ROOT_ARGS} crashkernel={crashkernel} panic=0 vmcorefs_run=/mnt/share/scenario.sh"
    cmd = ["qemu-system-s390x", "-machine", "s390-ccw-virtio", "-cpu", "max", "-smp", str(smp),
           "-m", str(mem_mib), "-nographic", "-no-reboot", "-kernel", str(GUEST / "bzImage"), "-append", append,
           "-drive", f"file={image},if=none,id=root,format=raw,readonly=on", "-device", "virtio-blk-ccw,drive=root",
           "-drive", f"file={live},if=none,id=live,format=raw", "-device", "virtio-blk-ccw,drive=live",
           "-drive", f"file={dump},if=none,id=dump,format=raw", "-device", "virtio-blk-ccw,drive=dump",
           "-fsdev", f"local,id=share,path={share},security_model=none",
           "-device", "virtio-9p-ccw,fsdev=share,mount_tag=share"]
    t0 = time.monotonic()
    marks: list[tuple[float, str]] = []
    last = [t0]
    con = open(out / "console.log", "wb")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def reader() -> None:
        buf = b""
        while chunk := proc.stdout.read1(4096):
            con.write(chunk)
            con.flush()
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode("utf-8", "replace").strip()
                if text.startswith("VMCOREFS"):
                    now = time.monotonic()
                    last[0] = now
                    marks.append((round(now - t0, 2), text))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    why = None
    while proc.poll() is None:
        now = time.monotonic()
        if now - t0 > timeout:
            why = f"the scenario took more than {timeout:.0f} s"
        elif now - last[0] > step_timeout:
            why = f"no progress for {step_timeout:.0f} s after {marks[-1][1] if marks else 'the start'!r}"
        if why:
            proc.kill()
            break
        time.sleep(0.2)
    proc.wait()
    th.join(timeout=10)
    con.close()
    reached = any(m.startswith(end) for _t, m in marks)
    result = {"qemu_cmdline": cmd, "seconds": round(time.monotonic() - t0, 2), "marks": marks,
              "reached_end": reached, "killed": why}
    if not reached and why is None:
        why = f"QEMU exited ({proc.returncode}) before {end!r}"
    result["error"] = why
    return result


def steps(share: Path) -> dict:
    out = {}
    path = share / "out" / "steps.txt"
    for line in path.read_text().splitlines() if path.exists() else []:
        m = re.match(r"(\S+) rc=(\d+) start=([\d.]+) end=([\d.]+)", line)
        if m:
            out[m.group(1)] = {"rc": int(m.group(2)), "seconds": round(float(m.group(4)) - float(m.group(3)), 2)}
    return out


def extract_dumps(dump: Path, out: Path) -> None:
    """Copy /dumps of the dump disk to OUT/dumps."""
    if (out / "dumps").exists():
        shutil.rmtree(out / "dumps")
    subprocess.run(["debugfs", "-R", f"rdump /dumps {out}", str(dump)], capture_output=True, timeout=300)


def run(name: str, out: Path, *, peek: list[str] = (), efault: int = 0x200000, mem_mib: int = 512, smp: int = 2,
        crashkernel: str = "224M", timeout: float = 900, step_timeout: float = 240) -> dict:
    """Run scenario *name* with its files in *out*; return DIR/result.json's content."""
    if name not in SCENARIOS:
        raise ScenarioError(f"no scenario {name!r}: one of {', '.join(SCENARIOS)}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    image, _root = userland()
    image = root_disk(image)
    t_userland = time.monotonic() - t0
    share = stage(out, name, list(peek), efault)
    live, dump = make_disks(out, mem_mib)
    result = boot(out, share, image, live, dump, mem_mib=mem_mib, smp=smp, crashkernel=crashkernel, end=ENDS[name],
                  timeout=timeout, step_timeout=step_timeout)
    result["userland_seconds"] = round(t_userland, 2)
    result["steps"] = steps(share)
    if name != "live":
        extract_dumps(dump, out)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name", choices=SCENARIOS)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--peek", nargs="*", default=[], help="ADDR:LEN of live memory to read back")
    ap.add_argument("--efault", type=lambda s: int(s, 0), default=0x200000,
                    help="the page the /dev/mem source is told the kernel refuses (default: kernel text)")
    ap.add_argument("--mem-mib", type=int, default=512)
    ap.add_argument("--timeout", type=float, default=900)
    a = ap.parse_args()
    try:
        res = run(a.name, a.out, peek=a.peek, efault=a.efault, mem_mib=a.mem_mib, timeout=a.timeout)
    except (ScenarioError, subprocess.SubprocessError, OSError) as exc:
        print(f"run-scenario: {exc}", file=sys.stderr)
        return 1
    for t, m in res["marks"]:
        print(f"[{t:7.2f}s] {m}")
    if res["error"]:
        print(f"run-scenario: {res['error']} (see {a.out / 'console.log'})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
