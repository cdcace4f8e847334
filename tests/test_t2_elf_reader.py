# SPDX-License-Identifier: MIT
"""
ELF inputs as vmcorefs reads them (with pyelftools, vmcorefs/sources/elfread.py),
checked against cores built and parsed here with struct alone
(tests/reference.py): the program header table, which vmcorefs unpacks in
bulk, against the file's bytes and against pyelftools' own per-segment
parse, with and without ELF extended numbering (PN_XNUM); notes of odd name
and descriptor sizes; damaged cores as one-line InputErrors (the commands on
damaged cores: the corpus of tests/test_t4_reliability.py). No FUSE.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

sys.path.insert(0, str(Path(__file__).parent))
from conftest import unpack_fixture  # noqa: E402
from reference import note, raw_notes, reference_header, reference_notes  # noqa: E402

from vmcorefs.errors import InputError  # noqa: E402
from vmcorefs.sources.elfread import parse_notes, read_elf_notes, read_program_headers  # noqa: E402

PAGE = 4096
PHDR = struct.Struct(">IIQQQQQQ")
PHDR_FIELDS = ("p_type", "p_flags", "p_offset", "p_vaddr", "p_paddr", "p_filesz", "p_memsz", "p_align")
PT_NUMBERS = {"PT_NULL": 0, "PT_LOAD": 1, "PT_NOTE": 4}


def save_area(i: int) -> bytes:
    sa = bytearray(512)
    struct.pack_into(">16Q", sa, 0x80, *[0x1000 * i + r for r in range(16)])
    struct.pack_into(">I", sa, 0x118, 0x10000 + 0x2000 * i)  # prefix: the CPU is dumped
    return bytes(sa)


def write_core(path: Path, nranges: int, cpus: int = 2) -> Path:
    """A sparse s390x vmcore of *nranges* one-page ranges (a hole after each) and *cpus* CPUs."""
    ranges = [(2 * PAGE * i, 2 * PAGE * i + PAGE) for i in range(nranges)]
    notes = reference_notes([save_area(i) for i in range(cpus)], None, b"OSRELEASE=6.1.0\n")
    head = reference_header(ranges, len(notes))
    with open(path, "wb") as f:
        f.write(head + notes + bytes(-len(notes) % PAGE))
        f.truncate(len(head) + -(-len(notes) // PAGE) * PAGE + nranges * PAGE)
    return path


def phdrs_of(data: bytes) -> list[dict]:
    """The program headers of an ELF64 big-endian core, parsed with struct (PN_XNUM: sh_info of section 0)."""
    phoff, shoff = struct.unpack_from(">QQ", data, 0x20)
    phnum = struct.unpack_from(">H", data, 0x38)[0]
    if phnum == 0xFFFF:
        phnum = struct.unpack_from(">I", data, shoff + 0x2C)[0]
    return [dict(zip(PHDR_FIELDS, PHDR.unpack_from(data, phoff + PHDR.size * i))) for i in range(phnum)]


def pyelftools_phdrs(path: Path) -> list[dict]:
    """The program headers as pyelftools parses them, one by one (p_type as a number)."""
    with open(path, "rb") as f:
        out = []
        for seg in ELFFile(f).iter_segments():
            h = dict(seg.header)
            h["p_type"] = PT_NUMBERS.get(h["p_type"], h["p_type"])
            out.append(h)
        return out


@pytest.mark.parametrize("nranges", [1, 70_000])  # 2 and 70,001 program headers (PN_XNUM)
def test_program_headers_are_those_of_the_file_and_of_pyelftools(tmp_path, nranges):
    core = write_core(tmp_path / "core.elf", nranges)
    head = core.read_bytes()[:64 + 56 * (nranges + 1) + 64]
    got = read_program_headers(str(core))
    assert got == phdrs_of(head)
    assert got == pyelftools_phdrs(core)
    assert [h["p_type"] for h in got] == [4] + [1] * nranges
    assert got[-1]["p_paddr"] == 2 * PAGE * (nranges - 1)


def test_the_real_vmcore_reads_as_struct_parses_it():
    """The kernel's /proc/vmcore of the fixture: every program header and note as struct sees them."""
    core = unpack_fixture("kdump-1g", "proc-vmcore.elf")
    with open(core, "rb") as f:
        head = f.read(1 << 20)
    phdrs = read_program_headers(str(core))
    assert phdrs == phdrs_of(head)
    notes = read_elf_notes(str(core))
    ph = next(p for p in phdrs if p["p_type"] == 4)
    with open(core, "rb") as f:
        f.seek(ph["p_offset"])
        payload = f.read(ph["p_filesz"])
    expect = [(name, ntype, whole) for name, ntype, whole in raw_notes(payload) if whole[:12] != bytes(12)]
    assert [(n.name, n.type) for n in notes] == [(name, ntype) for name, ntype, _w in expect]
    for n, (_name, _t, whole) in zip(notes, expect):
        namesz, descsz = struct.unpack_from(">II", whole)
        assert n.desc == whole[12 + -(-namesz // 4) * 4:][:descsz]
    assert any(n.name == b"VMCOREINFO" for n in notes)


def test_notes_of_odd_name_and_descriptor_sizes():
    """Sizes not a multiple of 4 are padded to 4 (gABI); names lose their NUL; offsets are kept."""
    pieces = [note(b"", 7, b""), note(b"CORE", 1, b"x"), note(b"LINUX", 0x301, b"abc"),
              note(b"VMCOREINFO", 0, b"OSRELEASE=6.1\n"), note(b"ODDNAME", 0x1234, bytes(range(5)))]
    payload = b"".join(pieces) + bytes(12) + bytes(8)  # the empty note that ends them, padding
    notes = parse_notes(payload, 0x1000, "test")
    offsets = [0x1000 + sum(map(len, pieces[:i])) for i in range(len(pieces))]
    assert [(n.name, n.type, n.desc, n.offset) for n in notes] == [
        (b"", 7, b"", offsets[0]), (b"CORE", 1, b"x", offsets[1]), (b"LINUX", 0x301, b"abc", offsets[2]),
        (b"VMCOREINFO", 0, b"OSRELEASE=6.1\n", offsets[3]), (b"ODDNAME", 0x1234, bytes(range(5)), offsets[4])]
    # the last descriptor's padding may be missing at the segment's end
    assert parse_notes(pieces[2][:-1])[0].desc == b"abc"


def one_line_error(fn, *needles: str) -> str:
    with pytest.raises(InputError) as exc:
        fn()
    message = str(exc.value)
    assert "\n" not in message and all(n in message for n in needles), message
    return message


@pytest.mark.parametrize("payload,needle", [
    (note(b"CORE", 1, bytes(16))[:-4], "truncated note at 0x100 (name 5 and descriptor 16 bytes run beyond"),
    (struct.pack(">III", 5, 0xFFFFFFFF, 1) + b"CORE\0\0\0\0", "descriptor 4294967295 bytes run beyond"),
    (struct.pack(">III", 0xFFFFFFF0, 4, 1) + b"CORE", "name 4294967280 and descriptor 4 bytes"),
    (note(b"CORE", 1, b"abcd") + b"\1\2\3", "truncated note header at 0x118"),
    (bytes(12) + note(b"CORE", 1, b"abcd"), "an empty note at 0x100 is followed by more data"),
    (struct.pack(">III", 4, 4, 1) + b"CORE" + b"abcd", "the note at 0x100 cannot be read (its name has no "
                                                         "terminating NUL)"),
])
def test_damaged_notes_are_one_line_errors(payload, needle):
    one_line_error(lambda: parse_notes(payload, 0x100, "core"), "core: ", needle)


def patched(core: Path, at: int, fmt: str, value: int) -> Path:
    data = bytearray(core.read_bytes())
    struct.pack_into(">" + fmt, data, at, value)
    core.write_bytes(bytes(data))
    return core


def test_a_truncated_program_header_table_is_an_error(tmp_path):
    core = write_core(tmp_path / "core.elf", 4)
    with open(core, "r+b") as f:
        f.truncate(64 + 56 * 3 + 20)  # in the third PT_LOAD
    one_line_error(lambda: read_program_headers(str(core)), "truncated: the program headers at 0x40+0x118")


def test_a_note_running_past_its_segment_is_an_error(tmp_path):
    core = write_core(tmp_path / "core.elf", 4)
    filesz = phdrs_of(core.read_bytes()[:4096])[0]["p_filesz"]
    patched(core, 64 + 0x20, "Q", filesz - 8)  # PT_NOTE p_filesz: the VMCOREINFO note runs past it
    one_line_error(lambda: read_elf_notes(str(core)), "truncated note at", f"the {filesz - 8:#x}-byte segment")


@pytest.mark.parametrize("case,needle", [
    ("no-section-header", "e_phnum is PN_XNUM but there is no section header"),
    ("section-header-beyond-the-file", "truncated: section header 0 at 0x10000000+0x40"),
    ("count-beyond-the-table", "truncated: the program headers at 0x40+0xd59f80"),
])
def test_extended_numbering_damaged(tmp_path, case, needle):
    core = write_core(tmp_path / "core.elf", 4)
    patched(core, 0x38, "H", 0xFFFF)  # e_phnum = PN_XNUM
    if case == "section-header-beyond-the-file":
        patched(core, 0x28, "Q", 0x10000000)
    elif case == "count-beyond-the-table":
        patched(core, 0x28, "Q", 0x800)  # e_shoff: zeros after the notes, sh_info (0x82C) set below
        patched(core, 0x800 + 0x2C, "I", 250_000)
    one_line_error(lambda: read_program_headers(str(core)), needle)


@pytest.mark.parametrize("shstrndx", [0, 5, 0xFEFF])
def test_extended_numbering_through_section_zero(tmp_path, shstrndx):
    """
    A core below 65,535 headers written with PN_XNUM anyway reads the same (the count from
    sh_info), whatever e_shstrndx says (pyelftools' num_segments() would look the name up there).
    """
    core = write_core(tmp_path / "core.elf", 4)
    before = read_program_headers(str(core))
    patched(core, 0x38, "H", 0xFFFF)
    patched(core, 0x28, "Q", 0x800)
    patched(core, 0x3A, "H", 64)
    patched(core, 0x3E, "H", shstrndx)
    patched(core, 0x800 + 0x2C, "I", 5)
    assert read_program_headers(str(core)) == before


@pytest.mark.parametrize("data,needle", [
    (b"", "is not an ELF file"),
    (b"\x7fELF\x02\x02\x01" + bytes(40), "truncated: the ELF header has 47 of 64 bytes"),
    (b"\x7fELF\x03\x02\x01" + bytes(100), "is not an s390x ELF core (Invalid EI_CLASS"),
    (b"\x7fELF\x01\x02\x01" + bytes(100), "is not an s390x ELF core (not a big-endian 64-bit ELF file)"),
])
def test_a_bad_elf_header_is_an_error(tmp_path, data, needle):
    core = tmp_path / "bad.elf"
    core.write_bytes(data)
    one_line_error(lambda: read_program_headers(str(core)), needle)
