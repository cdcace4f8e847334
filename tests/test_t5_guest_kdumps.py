# SPDX-License-Identifier: MIT
"""
Real kdumps made here (tests/guest.py): the guest kernel of ../shared/guest
under qemu-system-s390x, 3 CPUs WITHOUT the vector facility
(``-cpu max,vx=off,vxeh=off``), CPU 2 taken offline before the crash on CPU 1. The
capture kernel's /proc/vmcore (``proc-vmcore.elf``) is the oracle: vmcorefs
must give it byte for byte from QEMU's ELF dump of the same stopped guest,
from its RAM image and through ``vmcorefs emulate``.

What the kernel wrote (checked below, true of the kernel, not of vmcorefs):
two CPU note sets (CPUs 0 and 1; CPU 2 was offline, the kernel had set its
prefix to 0 when it took it down, and leaves such CPUs out) and no
NT_S390_VXRS_LOW/HIGH notes at all. QEMU 7.2's dump-guest-memory writes
notes for all three CPUs, each with VXRS_LOW, VXRS_HIGH and GS_CB, vector
facility or not.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct

import pytest

from conftest import run_vmcorefs, sha256_file
from guest import NOVX_OFFLINE, GuestError, guest_kdump, require_guest
from reference import note_desc, raw_notes

pytestmark = pytest.mark.guest

PT_LOAD, PT_NOTE = 1, 4
NT_PRSTATUS, NT_S390_PREFIX = 1, 0x305
NOTE_NAMES = {1: "NT_PRSTATUS", 2: "NT_PRFPREG", 3: "NT_PRPSINFO", 0x301: "NT_S390_TIMER",
              0x302: "NT_S390_TODCMP", 0x303: "NT_S390_TODPREG", 0x304: "NT_S390_CTRS",
              0x305: "NT_S390_PREFIX", 0x309: "NT_S390_VXRS_LOW", 0x30a: "NT_S390_VXRS_HIGH",
              0x30b: "NT_S390_GS_CB"}
VXRS = {0x309, 0x30a}


@pytest.fixture(scope="module")
def guest():
    """The directory of the vx=off guest's kdump (made once, then cached; see tests/guest.py)."""
    require_guest()
    try:
        return guest_kdump("novx-offline", **NOVX_OFFLINE)
    except GuestError as e:
        pytest.fail(f"the guest kdump could not be made: {e}")


# --- reading the ELF files (struct only, nothing from vmcorefs) ---------------

def phdrs(path) -> list[dict]:
    with open(path, "rb") as f:
        head = f.read(64)
        assert head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 2, f"{path}: not an ELF64 big-endian file"
        phoff, = struct.unpack_from(">Q", head, 32)
        phentsize, phnum = struct.unpack_from(">HH", head, 54)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        p_type, _flags, off, _va, pa, filesz, memsz, _align = struct.unpack_from(">IIQQQQQQ", table, i * phentsize)
        out.append({"type": p_type, "offset": off, "paddr": pa, "filesz": filesz, "memsz": memsz})
    return out


def notes(path) -> list[tuple[bytes, int, bytes]]:
    """(name, type, whole note) of every note of the PT_NOTE segments."""
    out = []
    with open(path, "rb") as f:
        for p in phdrs(path):
            if p["type"] == PT_NOTE:
                f.seek(p["offset"])
                out += raw_notes(f.read(p["filesz"]))
    return out


def cpu_note_sets(all_notes) -> list[dict[int, bytes]]:
    """The per-CPU note sets, each starting with an NT_PRSTATUS: {type: descriptor}."""
    sets: list[dict[int, bytes]] = []
    for name, ntype, whole in all_notes:
        if name == b"CORE" and ntype == NT_PRSTATUS:
            sets.append({})
        if sets and name in (b"CORE", b"LINUX") and ntype != 3:
            sets[-1][ntype] = note_desc(whole)
    return sets


def prefix(note_set: dict[int, bytes]) -> int:
    return struct.unpack(">I", note_set[NT_S390_PREFIX])[0]


def note_names(all_notes) -> list[str]:
    return [f"{name.decode()}/{NOTE_NAMES.get(t, hex(t))}" for name, t, _ in all_notes]


# --- what the kernel wrote: facts about the scenario (hold whatever vmcorefs does)

def test_the_kernel_left_the_offline_cpu_out(guest):
    cpus = json.loads((guest / "cpus.json").read_text())
    assert cpus["offline_cpus"] == [2] and cpus["crash_cpu"] == 1
    assert [c["cpu-index"] for c in cpus["query-cpus-fast"]] == [0, 1, 2]
    # CPU 0 runs the capture kernel (nr_cpus=1); the others are stopped
    assert [c["cpu-state"] for c in cpus["query-cpus-fast"]] == ["operating", "stopped", "stopped"]
    console = (guest / "console.log").read_text()
    assert "VMCOREFS-CPU-ONLINE cpu=2 online=0" in console
    assert "VMCOREFS-CRASHING on-cpu=1" in console
    assert "qemu-system-s390x: warning" not in console  # e.g. "'vxeh' requires 'vx'": a CPU no machine has

    kernel = cpu_note_sets(notes(guest / "proc-vmcore.elf"))
    qemu = cpu_note_sets(notes(guest / "qemu-kdump.elf"))
    assert len(qemu) == 3, "QEMU writes a note set for every CPU"
    assert len(kernel) == 2, f"the kernel's vmcore has {len(kernel)} CPUs, expected 2 (CPU 2 was offline)"
    # CPU 2 went offline with its prefix reset to 0; the kernel writes no notes for such a CPU
    assert prefix(qemu[2]) == 0
    # note set #1 is the crashed CPU 1, stopped since the crash: the same prefix and PSW in QEMU's notes
    assert prefix(kernel[1]) == prefix(qemu[1]) != 0
    assert kernel[1][NT_PRSTATUS][112:128] == qemu[1][NT_PRSTATUS][112:128]
    # note set #0 is the IPL CPU 0 as the crashed kernel left it (QEMU's is the capture kernel's now)
    assert prefix(kernel[0]) not in (0, prefix(kernel[1]))


def test_the_kernel_wrote_no_vector_notes(guest):
    hwcap = int(re.search(r"VMCOREFS-HWCAP (0x[0-9a-f]+|0)", (guest / "console.log").read_text()).group(1), 0)
    assert not hwcap & (1 << 11), f"the first kernel uses the vector registers (AT_HWCAP {hwcap:#x})"
    kernel = notes(guest / "proc-vmcore.elf")
    assert not [t for _, t, _ in kernel if t in VXRS], "a vx=off guest's kernel writes no VXRS notes"
    assert note_names(kernel) == (
        ["CORE/NT_PRPSINFO"]
        + ["CORE/NT_PRSTATUS", "CORE/NT_PRFPREG", "LINUX/NT_S390_TIMER", "LINUX/NT_S390_TODCMP",
           "LINUX/NT_S390_TODPREG", "LINUX/NT_S390_CTRS", "LINUX/NT_S390_PREFIX"] * 2
        + ["VMCOREINFO/0x0"])
    # one PT_LOAD: old memory below the crashkernel (at the top of memory)
    loads = [p for p in phdrs(guest / "proc-vmcore.elf") if p["type"] == PT_LOAD]
    below = (NOVX_OFFLINE["memory_mib"] - NOVX_OFFLINE["crashkernel_mib"]) << 20
    assert [(p["paddr"], p["memsz"]) for p in loads] == [(0, below)]
    assert f"VMCOREFS-CRASH-SIZE {NOVX_OFFLINE['crashkernel_mib'] << 20}" in (guest / "console.log").read_text()


# --- vmcorefs: /vmcore from every source ------------------------------------

# what vmcorefs is given: QEMU's ELF dump, the RAM image, and three descriptions of the RAM image
# (emulate: as a new user would, no CPU options; the CPUs from QEMU's notes; as a stand-alone
# dump that caught the capture kernel running)
EMULATE = {
    "emulate": ["--environment", "kdump"],
    "emulate-cpus-from-qemu-elf": ["--environment", "kdump", "--cpus-from-elf", "qemu-kdump.elf"],
    "emulate-standalone": ["--environment", "standalone"],
}
SOURCES = ["qemu-kdump.elf", "qemu-kdump.kdump-zlib", "ram.raw", *EMULATE]


@pytest.fixture(scope="module")
def saved(guest, tmp_path_factory):
    """``saved(source) -> Path``: /vmcore as ``vmcorefs save`` writes it from *source* (once per module)."""
    work = tmp_path_factory.mktemp("guest-saves")
    done: dict[str, object] = {}

    def save(source: str):
        if source not in done:
            src = guest / source
            if source in EMULATE:
                src = work / f"{source}.toml"
                args = [str(guest / a) if a.endswith(".elf") else a for a in EMULATE[source]]
                run_vmcorefs("emulate", guest / "ram.raw", *args, "-o", src)
            out = work / f"{source}.vmcore"
            res = run_vmcorefs("save", src, out, "--no-sha256", "-q", check=False)
            done[source] = out if res.returncode == 0 else AssertionError(
                f"vmcorefs save {src} failed ({res.returncode}): {res.stderr}")
        if isinstance(done[source], AssertionError):
            raise done[source]
        return done[source]

    return save


@functools.cache
def kernel_sha256(path) -> str:
    """sha256 of the guest's proc-vmcore.elf, computed once per run."""
    return sha256_file(path)


def load_segments(path) -> list[tuple[int, int, int]]:
    return [(p["paddr"], p["memsz"], p["filesz"]) for p in phdrs(path) if p["type"] == PT_LOAD]


def first_memory_difference(ours, kernel, chunk: int = 1 << 24) -> int | None:
    """The first physical address where the PT_LOAD memory of two vmcores differs, or None."""
    ours_loads = {p["paddr"]: p for p in phdrs(ours) if p["type"] == PT_LOAD}
    with open(ours, "rb") as a, open(kernel, "rb") as b:
        for p in phdrs(kernel):
            if p["type"] != PT_LOAD:
                continue
            q = ours_loads[p["paddr"]]
            a.seek(q["offset"])
            b.seek(p["offset"])
            done = 0
            while done < p["filesz"]:
                n = min(chunk, p["filesz"] - done)
                x, y = a.read(n), b.read(n)
                if x != y:
                    i = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), min(len(x), len(y)))
                    return p["paddr"] + done + i
                done += n
    return None


@pytest.mark.parametrize("source", SOURCES)
def test_memory_is_the_kernels(guest, saved, source):
    """The PT_LOAD layout and every byte of memory equal the kernel's (notes aside)."""
    out = saved(source)
    kernel = guest / "proc-vmcore.elf"
    assert load_segments(out) == load_segments(kernel)
    where = first_memory_difference(out, kernel)
    assert where is None, f"memory from {source} differs from the kernel's first at physical {where:#x}"


def explain_difference(ours, kernel) -> str:
    """Say how a vmcore differs from the kernel's: size, headers, notes (which, where), memory."""
    lines = []
    size_a, size_b = ours.stat().st_size, kernel.stat().st_size
    if size_a != size_b:
        lines.append(f"size {size_a} (kernel: {size_b})")
    pa, pb = phdrs(ours), phdrs(kernel)
    if pa != pb:
        def show(ph):
            return ", ".join(f"{'LOAD' if p['type'] == PT_LOAD else 'NOTE' if p['type'] == PT_NOTE else p['type']}"
                             f" off={p['offset']:#x} paddr={p['paddr']:#x} filesz={p['filesz']:#x}" for p in ph)
        lines.append(f"program headers: {show(pa)}\n  (kernel: {show(pb)})")
    na, nb = notes(ours), notes(kernel)
    names_a, names_b = note_names(na), note_names(nb)
    if names_a != names_b:
        extra = [n for n in names_a if names_a.count(n) > names_b.count(n)]
        missing = [n for n in names_b if names_b.count(n) > names_a.count(n)]
        lines.append(f"notes: {len(na)} (kernel: {len(nb)}); only in ours: {sorted(set(extra))}, "
                     f"only in the kernel's: {sorted(set(missing))}")
        lines.append(f"  ours:   {names_a}")
        lines.append(f"  kernel: {names_b}")
        # the others, in order, without the note kinds only one side has
        kinds = set(extra) | set(missing)
        na = [n for n, name in zip(na, names_a) if name not in kinds]
        nb = [n for n, name in zip(nb, names_b) if name not in kinds]
        names_a, names_b = note_names(na), note_names(nb)
    if names_a == names_b:
        differ = [f"#{i} {n}" for i, (n, x, y) in enumerate(zip(names_a, na, nb)) if x[2] != y[2]]
        lines.append(f"notes with other contents: {differ}" if differ else
                     "every other note is identical")
    if load_segments(ours) == load_segments(kernel):
        where = first_memory_difference(ours, kernel)
        lines.append("memory: identical" if where is None else f"memory: first difference at physical {where:#x}")
    return "\n".join(lines)


@pytest.mark.parametrize("source", SOURCES)
def test_vmcore_is_byte_identical_to_the_kernels(guest, saved, source):
    """
    The target: /vmcore from QEMU's ELF dump, from the RAM image and through
    ``emulate`` (also with the CPUs from QEMU's notes, also as a stand-alone
    dump of the running capture kernel) is the guest kernel's /proc/vmcore,
    every byte: no VXRS notes for CPUs without the vector facility, however
    QEMU's notes look (the facility decided as the kernel does, never from
    QEMU's notes); no notes for the offline CPU.
    """
    out = saved(source)
    kernel = guest / "proc-vmcore.elf"
    if sha256_file(out) != kernel_sha256(kernel):
        pytest.fail(f"/vmcore from {source} is not the kernel's /proc/vmcore:\n{explain_difference(out, kernel)}")


def test_mounted_qemu_dump_is_the_kernels_vmcore(guest, mounter):
    m = mounter(guest / "qemu-kdump.elf")
    vmcore = m.path("vmcore")
    kernel = guest / "proc-vmcore.elf"
    if sha256_file(vmcore) != kernel_sha256(kernel):
        pytest.fail(f"the mounted /vmcore of qemu-kdump.elf is not the kernel's /proc/vmcore:\n"
                    f"{explain_difference(vmcore, kernel)}")
    m.unmount()


def test_qemu_kdump_zlib_holds_the_memory_of_its_elf_dump(guest, mounter, tmp_path):
    """
    QEMU's kdump-zlib dump of the same stopped guest (a flattened stream,
    rebuilt by makedumpfile -R and read by libkdumpfile, an independent
    reader of the format) holds every page of RAM with the bytes of QEMU's
    ELF dump; mounted as it is, it is the kernel's /proc/vmcore, as the ELF
    dump is.
    """
    from conftest import require_s390x
    zlib_dump, elf = guest / "qemu-kdump.kdump-zlib", guest / "qemu-kdump.elf"
    with open(zlib_dump, "rb") as f:
        assert f.read(16) == b"makedumpfile\0\0\0\0"  # QEMU writes the flattened format
    import subprocess
    rebuilt = tmp_path / "rebuilt.kdump"
    with open(zlib_dump, "rb") as stream:
        subprocess.run(require_s390x("makedumpfile") + ["-R", str(rebuilt)], stdin=stream, check=True,
                       capture_output=True, timeout=600)
    (load,) = [p for p in phdrs(elf) if p["type"] == PT_LOAD]
    addrs = list(range(0, load["filesz"], 4096 * 61))
    script = ("import hashlib, sys, kdumpfile\nk = kdumpfile.kdumpfile(sys.argv[1])\n"
              "for a in sys.argv[2:]:\n"
              "    print(hashlib.sha256(k.read(kdumpfile.KDUMP_MACHPHYSADDR, int(a), 4096)).hexdigest())\n")
    res = subprocess.run(["/usr/bin/python3", "-c", script, rebuilt, *map(str, addrs)], capture_output=True,
                         text=True)
    if "No module named 'kdumpfile'" in res.stderr:
        pytest.skip("python3-libkdumpfile is missing for /usr/bin/python3")
    assert res.returncode == 0, res.stderr[-2000:]
    with open(elf, "rb") as f:
        want = []
        for a in addrs:
            f.seek(load["offset"] + a - load["paddr"])
            want.append(hashlib.sha256(f.read(4096)).hexdigest())
    assert res.stdout.split() == want
    m = mounter(zlib_dump)
    assert sha256_file(m.path("vmcore")) == kernel_sha256(guest / "proc-vmcore.elf")
    assert "QEMU dump-guest-memory" in m.path("meminfo/summary").read_text()
    m.unmount()
