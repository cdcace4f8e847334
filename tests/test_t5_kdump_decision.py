# SPDX-License-Identifier: MIT
"""
The kdump decision on the real fixture, damaged one byte at a time.

The fixture (../shared/fixtures/kdump-1g) is described once with ``vmcorefs
emulate``; each case appends a ``[[store.patch]]`` that flips one byte of
what the crashed kernel left for a dump tool: the os_info page header, its
entry area, the lowcore os_info pointer (old 0xE18), the magic, the version,
and the VMCOREINFO note text. Old memory below S = 0xc000000 lies at real
address + B (B = 0x34000000, the kdump swap), so every patch of old memory
goes there. Each case checks ``vmcorefs check`` (exit code, the BAD line
with its reason), a mount in auto mode (/meminfo says stand-alone and why),
``--mode kdump`` (one-line error, non-zero exit, no traceback) and that
nothing crashes. The VMCOREINFO text has no checksum on this 6.1 kernel: the
decision stays kdump and exactly the note (and that byte of memory) changes
in /vmcore. Nothing hashes the whole GiB.

Then the CPU states of the same fixture taken from ELF cores (``vmcorefs
emulate --cpus-from-elf``): the kernel's own /proc/vmcore gives /vmcore back
byte for byte, QEMU's ``dump-guest-memory`` notes (little-endian pr_pid,
unshifted clock comparator, GS_CB) give the save area the crashed kernel
stored in old memory, and damaged cores give one-line errors.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import subprocess

import pytest

from conftest import describe_kdump_fixture, run_vmcorefs, unpack_fixture
from reference import cksm, raw_notes

B = 0x34000000  # crashkernel base
S = 0x0C000000  # crashkernel size
MEMORY = 0x40000000
OS_INFO = 0x4A5000  # old address of the crashed kernel's os_info page
VMCOREINFO_NOTE = 0xD6A000  # old address of the VMCOREINFO note (lowcore 0xE0C)
OSRELEASE_AT = VMCOREINFO_NOTE + 24 + len("OSRELEASE=6.1.192-")  # the "v" of vmcorefs
HEADERS = 0x3000  # ELF headers and notes of the fixture's /vmcore; memory follows


def real(old: int) -> int:
    """Return the real address of old address *old* in the kdump-time image (the swap)."""
    if old < S:
        return old + B
    if B <= old < B + S:
        return old - B
    return old


@dataclasses.dataclass
class Case:
    """One damaged byte: where (real address), how (XOR mask), and what the checks must say."""

    name: str
    address: int
    xor: int
    check: str | None  # the check that must go BAD (None: the decision stays kdump)
    detail: str = ""  # part of that check's detail
    also_bad: tuple[str, ...] = ()
    fix_checksum: bool = False  # also patch the os_info checksum so only the flipped field is wrong


CASES = [
    Case("header-crashkernel-addr", real(OS_INFO + 0x14), 0x01, "os_info checksum", "stored 0x40010001"),
    Case("header-csum", real(OS_INFO + 0x0B), 0x10, "os_info checksum", "stored 0x40010011, computed 0x40010001"),
    Case("header-crashkernel-size", real(OS_INFO + 0x1C), 0x80, "os_info checksum", "computed"),
    Case("entry0-addr", real(OS_INFO + 0x27), 0x01, "os_info checksum", "computed"),
    Case("entry1-size", real(OS_INFO + 0x20 + 20 + 15), 0x04, "os_info checksum", "computed"),
    Case("entry-area-end", real(OS_INFO + 0xFFF), 0x01, "os_info checksum", "computed"),
    Case("pointer-unaligned", real(0xE1F), 0x01, "os_info pointer", "0x4a5001 at lowcore 0xe18 (not page aligned)"),
    Case("pointer-outside", real(0xE1C), 0x80, "os_info pointer", "0x804a5000 at lowcore 0xe18 (outside memory)"),
    Case("pointer-high-byte", real(0xE18), 0x01, "os_info pointer", "(outside memory)"),
    Case("magic", real(OS_INFO), 0x01, "os_info magic", "0x4e53494e464f535a"),
    Case("version", real(OS_INFO + 0x0D), 0x02, "os_info version", "3.1", also_bad=("os_info checksum",)),
    Case("version-checksum-fixed", real(OS_INFO + 0x0D), 0x02, "os_info version", "3.1", fix_checksum=True),
    Case("vmcoreinfo-text", real(OSRELEASE_AT), 0x20, None),
    # the capture kernel's own lowcore at real 0xE18: not the crashed kernel's, so nothing changes
    Case("capture-kernel-lowcore", 0xE1F, 0x01, None),
]




@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory):
    image = unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw")
    d = tmp_path_factory.mktemp("decision")
    describe_kdump_fixture(d, "base.toml")
    return {"image": image, "dir": d, "base": (d / "base.toml").read_text()}


def read_image(image, address: int, length: int) -> bytes:
    with open(image, "rb") as f:
        return os.pread(f.fileno(), length, address)


def describe(files, case: Case) -> tuple[os.PathLike, bytes, bytes]:
    """Write the case's description next to the base one; return it, the old and the new byte."""
    old = read_image(files["image"], case.address, 1)
    new = bytes([old[0] ^ case.xor])
    patches = [(case.address, new)]
    if case.fix_checksum:
        page = bytearray(read_image(files["image"], real(OS_INFO), 4096))
        page[case.address - real(OS_INFO)] ^= case.xor
        patches.append((real(OS_INFO + 8), struct.pack(">I", cksm(bytes(page[0x0C:])))))
    return patched(files, case.name, patches), old, new


def patched(files, name: str, patches: list[tuple[int, bytes]]) -> os.PathLike:
    """Write a description of the fixture with *patches* (real address, bytes) laid over it."""
    text = files["base"]
    for address, data in patches:
        text += f"\n[[store.patch]]\naddress = {address:#x}\ndata = \"{data.hex()}\"\n"
    path = files["dir"] / f"{name}.toml"
    path.write_text(text)
    return path


def bad_lines(output: str) -> dict[str, str]:
    return {line[5:].split(":", 1)[0]: line for line in output.splitlines() if line.startswith("BAD  ")}


def assert_one_line_error(res, *needles: str) -> None:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmcorefs: "), res.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_undamaged_fixture_is_kdump(fixture_files):
    res = run_vmcorefs("check", fixture_files["dir"] / "base.toml", check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BAD" not in res.stdout
    assert "OK   os_info pointer: 0x4a5000 at lowcore 0xe18" in res.stdout
    assert "OK   os_info magic: 0x4f53494e464f535a" in res.stdout


@pytest.mark.parametrize("case", [c for c in CASES if c.check], ids=lambda c: c.name)
def test_damaged_setup_falls_back_to_standalone(case, fixture_files, mounter, tmp_path):
    desc, _old, _new = describe(fixture_files, case)

    # vmcorefs check: exit 1, the BAD line names the reason
    res = run_vmcorefs("check", desc, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    bad = bad_lines(res.stdout)
    assert case.check in bad, res.stdout
    assert case.detail in bad[case.check], bad[case.check]
    assert set(bad) == {case.check, *case.also_bad}, res.stdout
    decision = res.stdout.splitlines()[-1]
    assert decision.startswith("decision: stand-alone dump (no valid kdump setup: ")
    assert f" {case.check}: " in decision and case.detail in decision
    assert res.stderr == ""

    # --mode kdump refuses, in one line, for info and for mount
    res = run_vmcorefs("info", desc, "--mode", "kdump", check=False)
    assert_one_line_error(res, "cannot force kdump mode", case.check)
    mp = tmp_path / "forced"
    mp.mkdir()
    res = run_vmcorefs("mount", desc, mp, "--mode", "kdump", check=False)
    assert_one_line_error(res, "cannot force kdump mode", case.check)
    assert not os.path.ismount(mp)

    # auto mode mounts a stand-alone dump of all memory and says why
    m = mounter(desc)
    summary = m.path("meminfo/summary").read_text()
    assert "mode: standalone" in summary
    why = next(line for line in summary.splitlines() if line.startswith("why: "))
    assert why.startswith("why: no valid kdump setup: ") and f" {case.check}: " in why
    assert bad_lines(m.path("meminfo/checks").read_text()).keys() == bad.keys()
    for name in os.listdir(m.path("meminfo")):  # every file reads
        if name != "cpus":
            m.path(f"meminfo/{name}").read_bytes()
    with open(m.path("vmcore"), "rb") as f:
        head = f.read(HEADERS)
        assert head[:4] == b"\x7fELF"
        phnum = struct.unpack_from(">H", head, 0x38)[0]
        assert phnum == 2  # PT_NOTE, one PT_LOAD: the crashkernel is not left out
        p_offset, _vaddr, paddr, filesz = struct.unpack_from(">QQQQ", head, 64 + 56 + 8)
        assert (paddr, filesz) == (0, MEMORY)
        # old memory is still read through the swap: old 0x1000 (boot CPU status) is at real B + 0x1000
        f.seek(p_offset + 0x1000)
        assert f.read(4096) == read_image(fixture_files["image"], B + 0x1000, 4096)
    assert "Traceback" not in m.unmount()


def vmcoreinfo_desc_offset(head: bytes) -> int:
    """Return the file offset of the VMCOREINFO note's descriptor in a vmcore's header block."""
    off = struct.unpack_from(">Q", head, 64 + 8)[0]
    end = off + struct.unpack_from(">Q", head, 64 + 32)[0]
    while off < end:
        namesz, descsz, _type = struct.unpack_from(">III", head, off)
        desc = off + 12 + (namesz + 3) // 4 * 4
        if head[off + 12:off + 12 + namesz] == b"VMCOREINFO\0":
            return desc
        off = desc + (descsz + 3) // 4 * 4
    raise AssertionError("no VMCOREINFO note")


def test_vmcoreinfo_text_has_no_checksum(fixture_files, mounter):
    """A flipped byte in the VMCOREINFO text: still kdump, and exactly that byte changes in /vmcore."""
    case = next(c for c in CASES if c.name == "vmcoreinfo-text")
    desc, old, new = describe(fixture_files, case)
    assert (old, new) == (b"v", b"V")
    res = run_vmcorefs("check", desc, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BAD" not in res.stdout and "decision: kdump" in res.stdout
    assert run_vmcorefs("info", desc, "--mode", "kdump").returncode == 0

    oracle = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    with open(oracle, "rb") as f:
        expected_head = bytearray(f.read(HEADERS))
    at = vmcoreinfo_desc_offset(bytes(expected_head)) + len("OSRELEASE=6.1.192-")
    assert expected_head[at:at + 1] == b"v"
    expected_head[at] ^= 0x20
    mem_at = HEADERS + OSRELEASE_AT  # the note's own bytes in the PT_LOAD (p_offset 0x3000, paddr 0)
    page = mem_at & ~0xFFF
    expected_page = bytearray(read_image(oracle, page, 4096))
    expected_page[mem_at - page] ^= 0x20

    m = mounter(desc)
    assert "mode: kdump" in m.path("meminfo/summary").read_text()
    assert "kernel: 6.1.192-Vmcorefs" in m.path("meminfo/summary").read_text()
    assert b"OSRELEASE=6.1.192-Vmcorefs\n" in m.path("meminfo/vmcoreinfo").read_bytes()
    vmcore = m.path("vmcore")
    assert os.stat(vmcore).st_size == os.path.getsize(oracle)
    fd = os.open(vmcore, os.O_RDONLY)
    try:
        assert os.pread(fd, HEADERS, 0) == bytes(expected_head)
        assert os.pread(fd, 4096, page) == bytes(expected_page)
        for off in (HEADERS, page - 4096, page + 4096, os.path.getsize(oracle) - 4096):
            assert os.pread(fd, 4096, off) == read_image(oracle, off, 4096), hex(off)
    finally:
        os.close(fd)
    m.unmount()


def test_capture_kernel_lowcore_is_not_the_crashed_one(fixture_files):
    """Damage at real 0xE18 (the capture kernel's lowcore) does not matter: old 0xE18 is at B + 0xE18."""
    case = next(c for c in CASES if c.name == "capture-kernel-lowcore")
    desc, _old, _new = describe(fixture_files, case)
    res = run_vmcorefs("check", desc, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK   os_info pointer: 0x4a5000 at lowcore 0xe18" in res.stdout


def test_check_of_unusable_input_exits_2(fixture_files):
    path = fixture_files["dir"] / "broken.toml"
    path.write_text(fixture_files["base"] + '\n[[store.patch]]\naddress = 0x40000000\ndata = "00"\n')
    res = run_vmcorefs("check", path, check=False)
    assert res.returncode == 2
    assert "decision: unusable input" in res.stdout and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# --------------------------------------------------------------------------
# CPU states from an ELF core: vmcorefs emulate --cpus-from-elf

QEMU_NOTES = "qemu-kdump-dump.notes"
CPU1_PREFIX = 0xD64000


def elf_core(notes: bytes, *, machine: int = 22, data: int = 2, e_type: int = 4, filesz: int | None = None) -> bytes:
    """Return a minimal ELF64 core holding *notes* as its only (PT_NOTE) segment."""
    bo = ">" if data == 2 else "<"
    ehdr = b"\x7fELF" + bytes([2, data, 1]) + bytes(9) + struct.pack(
        bo + "HHIQQQIHHHHHH", e_type, machine, 1, 0, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack(bo + "IIQQQQQQ", 4, 0, 120, 0, 0, len(notes) if filesz is None else filesz, 0, 0)
    return ehdr + phdr + notes


@pytest.fixture(scope="module")
def qemu_core(tmp_path_factory):
    from conftest import FIXTURES
    path = FIXTURES / "kdump-1g" / QEMU_NOTES
    if not path.exists():
        pytest.skip(f"{path} is not available")
    blob = path.read_bytes()
    core = tmp_path_factory.mktemp("qemu") / "qemu-dump.elf"
    core.write_bytes(elf_core(blob))
    return {"notes": blob, "core": core}


def old_save_area(image, prefix: int) -> bytes:
    return read_image(image, real(prefix + 0x1200), 512)


def test_cpus_from_kernel_vmcore_give_the_same_vmcore(fixture_files, mounter):
    """The fixture's /proc/vmcore as CPU source: /vmcore is that file again, byte for byte."""
    oracle = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    desc = fixture_files["dir"] / "from-vmcore.toml"
    res = run_vmcorefs("emulate", fixture_files["image"], "--environment", "kdump", "--cpus-from-elf", oracle,
                       "-o", desc)
    assert "boot CPU's registers are taken from old memory" in res.stderr
    from vmcorefs.description import load
    machine = load(str(desc))
    try:
        assert [c.address for c in machine.cpus] == [0, 1] and machine.vector
        assert machine.cpus[0].save_area is None  # kdump: from old memory at 0x1200
        assert machine.cpus[1].save_area == old_save_area(fixture_files["image"], CPU1_PREFIX)
    finally:
        machine.close()
    m = mounter(desc)
    res = subprocess.run(["cmp", str(m.path("vmcore")), str(oracle)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    m.unmount()


def test_cpus_from_qemu_dump(qemu_core, fixture_files):
    """QEMU's notes: pr_pid little-endian, TODCMP unshifted, GS_CB: CPU 1 equals old memory's save area."""
    from vmcorefs.sources.elfnotes import cpus_from_elf
    cpus, producer = cpus_from_elf(str(qemu_core["core"]))
    assert producer.startswith("qemu")
    assert [(c.address, c.pid, c.prefix) for c in cpus] == [(0, 1, 0x878000), (1, 2, CPU1_PREFIX)]
    expected = old_save_area(fixture_files["image"], CPU1_PREFIX)
    assert cpus[1].save_area == expected
    # the clock comparator: QEMU writes e39fd9cde664d8ee, store status keeps it >> 8
    assert expected[0x130:0x138] == (0xE39FD9CDE664D8EE >> 8).to_bytes(8, "big")
    # vector registers: V0..V15 high halves are the FPRs (QEMU 'info registers': V01 = 0x64, V08 = ...)
    vx = cpus[1].vector
    assert vx[16:32] == bytes.fromhex("0000000000000064" + "00" * 8)
    assert vx[8 * 16:9 * 16] == bytes.fromhex("000003ffa7af9000" + "00" * 8)
    assert vx[256:] == bytes(256)


async def test_qemu_cpus_give_the_fixture_notes(qemu_core, fixture_files):
    """Described with QEMU's CPU states, the kdump /vmcore headers and notes equal the kernel's."""
    desc = fixture_files["dir"] / "from-qemu.toml"
    run_vmcorefs("emulate", fixture_files["image"], "--environment", "kdump", "--cpus-from-elf",
                 qemu_core["core"], "-o", desc)
    from vmcorefs.description import load
    from vmcorefs.dump import Dump
    from vmcorefs.views.vmcore import build_vmcore
    machine = load(str(desc))
    try:
        dump = await Dump.open(machine)
        vmcore = build_vmcore(dump)
        head = await vmcore.read(0, HEADERS)
    finally:
        machine.close()
    oracle = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    assert head == read_image(oracle, 0, HEADERS)


def test_producer_detection_is_robust(qemu_core):
    """QEMU is recognised without its GS_CB note, and with a big-endian pr_pid (an s390x host) by note order."""
    from vmcorefs.sources.elfnotes import cpus_from_notes, parse_notes
    notes = raw_notes(qemu_core["notes"])
    no_gs = b"".join(n for _name, t, n in notes if t != 0x30B)
    cpus, producer = cpus_from_notes(parse_notes(no_gs))
    assert producer.startswith("qemu") and "little-endian" in producer
    big_endian_pid = bytearray(no_gs)
    for off in (i for i in range(0, len(no_gs) - 4, 4) if no_gs[i:i + 12] == struct.pack(">III", 5, 336, 1)):
        pid = struct.unpack_from("<i", big_endian_pid, off + 20 + 32)[0]
        struct.pack_into(">i", big_endian_pid, off + 20 + 32, pid)
    cpus2, producer = cpus_from_notes(parse_notes(bytes(big_endian_pid)))
    assert producer.startswith("qemu") and "order" in producer
    assert [c.save_area for c in cpus2] == [c.save_area for c in cpus]
    oracle = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    kernel = read_image(oracle, 0x1000, 0x15B4)
    cpus3, producer = cpus_from_notes(parse_notes(kernel))
    assert producer.startswith("kernel") and [c.pid for c in cpus3] == [1, 2]
    assert cpus3[1].save_area == cpus[1].save_area  # the same CPU through both producers


def bad_cores(qemu_notes: bytes) -> dict[str, tuple[bytes, str]]:
    """Return damaged cores and a part of the one-line error each must give."""
    notes = raw_notes(qemu_notes)
    prstatus = notes[0][2]
    first_cpu = b"".join(n for _name, _t, n in notes[:10])
    no_prefix = b"".join(n for _name, t, n in notes[:10] if t != 0x305)
    return {
        "not-elf": (b"this is not a core file\n" * 10, "is not an ELF file"),
        "empty": (b"", "is not an ELF file"),
        "short-header": (b"\x7fELF\x02\x02\x01", "truncated"),
        "wrong-machine": (elf_core(qemu_notes, machine=62), "not s390x"),
        "little-endian": (elf_core(qemu_notes, data=1), "not a big-endian 64-bit"),
        "not-core": (elf_core(qemu_notes, e_type=2), "not an ELF core file"),
        "segment-beyond-file": (elf_core(qemu_notes)[:120 + 1000], "truncated"),
        "note-beyond-segment": (elf_core(qemu_notes, filesz=1000), "truncated note at"),
        "no-prstatus": (elf_core(notes[1][2]), "before the first NT_PRSTATUS"),
        "no-notes": (elf_core(b""), "no NT_PRSTATUS note"),
        "missing-prefix": (elf_core(no_prefix), "has no NT_S390_PREFIX note"),
        "short-prstatus": (elf_core(struct.pack(">III", 5, 200, 1) + prstatus[12:20] + bytes(200)),
                           "has 200 bytes, not 336"),
        "duplicate-note": (elf_core(first_cpu + notes[2][2]), "two notes of type 0x305"),
    }


@pytest.mark.parametrize("kind", ["not-elf", "empty", "short-header", "wrong-machine", "little-endian", "not-core",
                                  "segment-beyond-file", "note-beyond-segment", "no-prstatus", "no-notes",
                                  "missing-prefix", "short-prstatus", "duplicate-note"])
def test_bad_elf_input_is_one_line_error(kind, qemu_core, tmp_path):
    from vmcorefs.errors import InputError
    from vmcorefs.sources.elfnotes import cpus_from_elf
    data, message = bad_cores(qemu_core["notes"])[kind]
    core = tmp_path / f"{kind}.elf"
    core.write_bytes(data)
    with pytest.raises(InputError) as exc:
        cpus_from_elf(str(core))
    assert message in str(exc.value) and "\n" not in str(exc.value)
    if kind in ("not-elf", "note-beyond-segment", "wrong-machine"):  # and through the command, no traceback
        image = tmp_path / "mem.raw"
        with open(image, "wb") as f:
            f.truncate(1 << 20)
        res = run_vmcorefs("emulate", image, "--cpus-from-elf", core, "-o", tmp_path / "m.toml", check=False)
        assert_one_line_error(res, message)
        assert res.returncode == 1 and not (tmp_path / "m.toml").exists()


def test_cpus_from_elf_excludes_other_cpu_sources(qemu_core, tmp_path):
    image = tmp_path / "mem.raw"
    with open(image, "wb") as f:
        f.truncate(1 << 20)
    sa = tmp_path / "sa.bin"
    sa.write_bytes(bytes(512))
    res = run_vmcorefs("emulate", image, "--cpus-from-elf", qemu_core["core"], "--save-areas", sa,
                       "-o", tmp_path / "m.toml", check=False)
    assert_one_line_error(res, "--cpus-from-elf")


def test_entry_of_size_2_63_is_a_finding_not_a_crash(fixture_files, mounter):
    """An os_info entry claiming 2^63 bytes (checksums otherwise right): BAD, never a crash or a huge read."""
    page = bytearray(read_image(fixture_files["image"], real(OS_INFO), 4096))
    struct.pack_into(">QQI", page, 0x20, 0x1000, 1 << 63, 0)
    struct.pack_into(">I", page, 8, cksm(bytes(page[0x0C:])))
    desc = patched(fixture_files, "entry-2-63", [(real(OS_INFO), bytes(page[:0x40]))])
    res = run_vmcorefs("check", desc, check=False, timeout=60)
    assert res.returncode == 1, res.stdout + res.stderr
    assert bad_lines(res.stdout).keys() == {"os_info entry 0 (vmcoreinfo)"}
    assert "0x1000+0x8000000000000000 is outside memory or too large" in res.stdout
    m = mounter(desc)
    assert "mode: standalone" in m.path("meminfo/summary").read_text()
    # VMCOREINFO still comes from the note lowcore 0xE0C points to
    assert m.path("meminfo/vmcoreinfo").read_bytes().startswith(b"OSRELEASE=6.1.192-vmcorefs\n")
    with open(m.path("vmcore"), "rb") as f:
        assert f.read(4) == b"\x7fELF"


def test_vmcoreinfo_note_without_an_end_is_left_out(fixture_files, mounter):
    """A VMCOREINFO note whose size runs to the end of the world: no VMCOREINFO, dump still served."""
    desc = patched(fixture_files, "vmcoreinfo-endless",
                   [(real(VMCOREINFO_NOTE + 4), struct.pack(">I", 0xFFFFFFF0))])
    res = run_vmcorefs("check", desc, check=False, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr  # nothing checksummed changed: still kdump
    assert "vmcoreinfo: none: VMCOREINFO note at 0xd6a000 has an implausible size 4294967280" in res.stdout
    m = mounter(desc)
    assert not m.path("meminfo/vmcoreinfo").exists()
    with open(m.path("vmcore"), "rb") as f:
        head = f.read(HEADERS)
    with pytest.raises(AssertionError, match="no VMCOREINFO note"):
        vmcoreinfo_desc_offset(head)
    # one page less of notes: memory starts a page earlier, and is the same memory
    p_offset = struct.unpack_from(">Q", head, 64 + 56 + 8)[0]
    assert p_offset == HEADERS - 0x1000
    proc = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    with open(m.path("vmcore"), "rb") as f, open(proc, "rb") as g:
        f.seek(p_offset + 0x100000)
        g.seek(HEADERS + 0x100000)
        assert f.read(1 << 20) == g.read(1 << 20)
