# SPDX-License-Identifier: MIT
"""
Reading ELF inputs
------------------

The ``vmcorefs.sources.elfread`` module reads the ELF files vmcorefs takes
as input (kernel vmcores, QEMU's ``dump-guest-memory`` output, makedumpfile
``-E`` output, vmcorefs' own ``/vmcore``) with pyelftools: the ELF header
and what it says (:class:`elftools.elf.elffile.ELFFile`), section header 0
with ELF extended numbering (pyelftools' ``Elf_Shdr``: the count of program
headers), the notes (:func:`elftools.elf.notes.iter_notes`, also for the
notes a kdump-compressed file keeps). The byte layouts vmcorefs
writes are in :mod:`vmcorefs.layouts`, and only there.

Around pyelftools, for damaged files (pyelftools reads what a file says,
wherever that is, and raises ``ELFError`` or construct's errors):

- everything a header points at is checked against the file's size first;
  a note against its segment's (each segment is read alone, so a note
  cannot reach past it, however large its sizes say it is);
- ``e_phnum`` = PN_XNUM with no section header: pyelftools would read the
  ELF header as section header 0 (``e_shoff`` 0), so it is refused here;
- whatever pyelftools still raises is an :class:`~vmcorefs.errors.InputError`
  of one line.

The program header table is read in one piece and unpacked in bulk by one
``struct.Struct`` made of pyelftools' own ``Elf_Phdr`` fields (their order,
sizes and byte order): pyelftools parses one header at a time (construct),
12 to 24 us each, 1.2 to 2.4 s for the 100,001 headers of a 100,000-range
core, which makes the open of such a core 4x as long; unpacked in bulk they
take 1 to 2 us each (``bench/run.py elf``; the numbers in README).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import struct

from elftools.common.exceptions import ELFError
from elftools.construct import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_CORE_NOTE_N_TYPE
from elftools.elf.notes import iter_notes
from elftools.elf.structs import ELFStructs

from ..errors import InputError
from ..files import open_input
from ..layouts import ELFMAG, PN_XNUM, PT

__all__ = ("ElfNote", "parse_notes", "read_elf_notes", "read_program_headers")

MAX_NOTES_SIZE = 64 << 20  # a PT_NOTE segment larger than this is not a core's notes
MAX_PHNUM = 1 << 20
# what pyelftools raises on bytes it cannot parse (struct.error: from construct's FormatField)
PARSE_ERRORS = (ELFError, ConstructError, struct.error)


@dataclasses.dataclass(frozen=True)
class ElfNote:
    """One ELF note: name (without NUL), type, descriptor, and its file offset."""

    name: bytes
    type: int
    desc: bytes
    offset: int


@functools.cache
def _s390x_core_structs() -> ELFStructs:
    """pyelftools' structures of a big-endian 64-bit s390x core, the only ELF vmcorefs reads."""
    structs = ELFStructs(little_endian=False, elfclass=64)
    structs.create_basic_structs()
    structs.create_advanced_structs("ET_CORE", "EM_S390", "ELFOSABI_SYSV")
    return structs


@functools.cache
def _nhdr_size() -> int:
    return _s390x_core_structs().Elf_Nhdr.sizeof()  # construct computes it at every call


@functools.cache
def _phdr_table() -> tuple[tuple[str, ...], struct.Struct]:
    """
    Return the field names of pyelftools' ``Elf_Phdr`` (of an s390x core)
    and one C struct of them all, to unpack a whole table at once (see the
    module docs).
    """
    structs = _s390x_core_structs()
    names, order, codes = [], "", ""
    for field in structs.Elf_Phdr.subcons:
        fmt = (field.packer if hasattr(field, "packer") else field.subcon.packer).format  # Enum wraps p_type
        names.append(field.name)
        order, codes = fmt[0], codes + fmt[1:]
    packer = struct.Struct(order + codes)
    if packer.size != structs.Elf_Phdr.sizeof():  # pyelftools' layout changed: unpacking would go wrong
        raise RuntimeError(f"pyelftools' Elf_Phdr is not a row of integers ({packer.format!r})")
    return tuple(names), packer


class _Segment:
    """
    What :func:`elftools.elf.notes.iter_notes` reads notes from (instead of
    an ELFFile): the structures of an s390x core, and one segment's bytes
    alone, with room after them for pyelftools' own decoding of a short last
    descriptor (NT_PRPSINFO); where a note ends is checked against the
    segment's size, never the stream's.
    """

    def __init__(self, data: bytes) -> None:
        self.structs = _s390x_core_structs()
        self.elfclass = 64
        self.stream = io.BytesIO(bytes(data) + bytes(4096))


def _note_type(value: int | str) -> int:
    """The number of a note type pyelftools gives by its name (NT_PRSTATUS) or as a number."""
    return value if isinstance(value, int) else ENUM_CORE_NOTE_N_TYPE[value]


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _check_note(data: bytes, off: int, base: int, where: str, hdr=None):
    """
    Return the header of the note at *off* of *data* (pyelftools' ``Elf_Nhdr``,
    parsed here unless given); raise InputError if the note runs beyond *data*.
    """
    nhdr_size = _nhdr_size()
    if hdr is None:
        if len(data) - off < nhdr_size:
            raise InputError(f"{where}: truncated note header at {base + off:#x}")
        hdr = _s390x_core_structs().Elf_Nhdr.parse(data[off:off + nhdr_size])
    namesz, descsz = hdr["n_namesz"], hdr["n_descsz"]
    if off + nhdr_size + _pad4(namesz) + descsz > len(data):
        raise InputError(f"{where}: truncated note at {base + off:#x} (name {namesz} and descriptor "
                         f"{descsz} bytes run beyond the {len(data):#x}-byte segment)")
    return hdr


def parse_notes(data: bytes, base: int = 0, where: str = "notes") -> list[ElfNote]:
    """
    Return the notes of a PT_NOTE payload of an s390x core (big-endian
    ELF64 notes; names and descriptors 4-byte aligned), read by pyelftools.
    An empty note (all zero) ends them; only zeros may follow it.

    :param base: file offset of *data*, for messages
    :raises InputError: a note runs beyond the payload, or cannot be read
    """
    notes: list[ElfNote] = []
    pos = 0  # where the next note starts
    try:
        for n in iter_notes(_Segment(data), 0, len(data)):
            pos = n["n_offset"]
            ntype = _note_type(n["n_type"])
            if n["n_namesz"] == n["n_descsz"] == ntype == 0:
                if any(data[pos:]):
                    raise InputError(f"{where}: an empty note at {base + pos:#x} is followed by more data")
                return notes
            _check_note(data, pos, base, where, n)
            name = (n["n_name"] or "").encode("latin-1")  # pyelftools decodes names as latin-1
            notes.append(ElfNote(name, ntype, bytes(n["n_descdata"]), base + pos))
            pos += n["n_size"]
    except PARSE_ERRORS as exc:
        if not any(data[pos:]):  # zero padding, which an older pyelftools may read as a note
            return notes
        hdr = _check_note(data, pos, base, where)
        name_at = pos + _nhdr_size()
        name = data[name_at:name_at + hdr["n_namesz"]]
        why = f"pyelftools: {exc.args[0] if exc.args else exc}"
        if hdr["n_namesz"] and b"\0" not in name:
            why = "its name has no terminating NUL"
        raise InputError(f"{where}: the note at {base + pos:#x} cannot be read ({why})") from None
    # pyelftools stops where less than a header and one byte are left: a bare header, or padding
    if pos < len(data) and any(data[pos:]):
        hdr = _check_note(data, pos, base, where)  # no name, no descriptor: a note of its type alone
        notes.append(ElfNote(b"", _note_type(hdr["n_type"]), b"", base + pos))
    return notes


def _read_at(f, path: str, offset: int, length: int, what: str) -> bytes:
    if offset + length > os.fstat(f.fileno()).st_size:  # also offsets beyond what pread takes (2^63)
        raise InputError(f"{path}: truncated: {what} at {offset:#x}+{length:#x} ends beyond the end of the file")
    data = os.pread(f.fileno(), length, offset)
    if len(data) != length:
        raise InputError(f"{path}: truncated: {what} at {offset:#x}+{length:#x} ends beyond the end of the file")
    return data


def _open_core(f, path: str) -> ELFFile:
    """Return pyelftools' ELFFile of the open file *f*, checked to be an s390x core."""
    ehdr_size = _s390x_core_structs().Elf_Ehdr.sizeof()
    try:
        elf = ELFFile(f)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except PARSE_ERRORS as exc:
        size = os.fstat(f.fileno()).st_size
        if os.pread(f.fileno(), len(ELFMAG), 0) != ELFMAG:
            raise InputError(f"{path} is not an ELF file") from None
        if size < ehdr_size:
            raise InputError(f"{path}: truncated: the ELF header has {size} of {ehdr_size} bytes") from None
        raise InputError(f"{path} is not an s390x ELF core ({exc})") from None
    if elf.elfclass != 64 or elf.little_endian:
        raise InputError(f"{path} is not an s390x ELF core (not a big-endian 64-bit ELF file)")
    if elf["e_machine"] != "EM_S390":
        raise InputError(f"{path} is an ELF file for machine {elf['e_machine']}, not s390x (EM_S390)")
    if elf["e_type"] != "ET_CORE":
        raise InputError(f"{path} is not an ELF core file (e_type {elf['e_type']}, not ET_CORE)")
    return elf


def _phnum(elf: ELFFile, f, path: str) -> int:
    """The number of program headers, with ELF extended numbering from section header 0."""
    if elf["e_phnum"] != PN_XNUM:
        return elf["e_phnum"]
    # pyelftools' num_segments() takes the count from section header 0 too, but where there is no
    # section header table (e_shoff 0) it takes the ELF header for one, and it goes through
    # get_section(0), which also looks up the section's name (e_shstrndx) and fails where that is
    # damaged: the count alone is wanted, from section header 0 parsed with pyelftools' Elf_Shdr
    if not elf["e_shoff"]:
        raise InputError(f"{path}: e_phnum is PN_XNUM but there is no section header")
    shdr = elf.structs.Elf_Shdr
    raw = _read_at(f, path, elf["e_shoff"], shdr.sizeof(), "section header 0")
    try:
        return shdr.parse(raw)["sh_info"]
    except PARSE_ERRORS as exc:
        raise InputError(f"{path}: e_phnum is PN_XNUM but section header 0 cannot be read ({exc})") from None


def read_program_headers(path: str) -> list[dict]:
    """
    Return the program headers of the s390x ELF core *path*, each a dict of
    pyelftools' ``Elf_Phdr`` fields, ``p_type`` a number.

    :raises InputError: not a big-endian 64-bit s390x ELF core, or truncated
    """
    with os.fdopen(open_input(path, "ELF core"), "rb") as f:
        elf = _open_core(f, path)
        phnum = _phnum(elf, f, path)
        names, packer = _phdr_table()
        if not phnum or elf["e_phentsize"] != packer.size or phnum > MAX_PHNUM:
            raise InputError(f"{path}: no usable program headers (e_phnum {phnum}, "
                             f"e_phentsize {elf['e_phentsize']})")
        table = _read_at(f, path, elf["e_phoff"], phnum * packer.size, "the program headers")
    return [dict(zip(names, values)) for values in packer.iter_unpack(table)]


def read_elf_notes(path: str, phdrs: list[dict] | None = None) -> list[ElfNote]:
    """
    Return every note of the PT_NOTE segments of the s390x ELF core *path*.

    :param phdrs: its program headers, if already read
    :raises InputError: not a big-endian 64-bit s390x ELF core, no PT_NOTE,
        or truncated
    """
    if phdrs is None:
        phdrs = read_program_headers(path)
    notes: list[ElfNote] = []
    found = False
    with os.fdopen(open_input(path, "ELF core"), "rb") as f:
        for ph in phdrs:
            if ph["p_type"] != PT.NOTE:
                continue
            found = True
            if ph["p_filesz"] > MAX_NOTES_SIZE:
                raise InputError(f"{path}: PT_NOTE segment of {ph['p_filesz']:#x} bytes is implausibly large")
            data = _read_at(f, path, ph["p_offset"], ph["p_filesz"], "the PT_NOTE segment")
            notes += parse_notes(data, ph["p_offset"], path)
    if not found:
        raise InputError(f"{path} has no PT_NOTE segment: no CPU registers")
    return notes
