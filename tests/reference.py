# SPDX-License-Identifier: MIT
"""
A deliberately simple reference builder of /proc/vmcore, written from the
reference document (section 7) with nothing but :mod:`struct` and no code
from vmcorefs, so the tests compare vmcorefs against an independent
expectation.
"""

from __future__ import annotations

import random
import struct

PAGE = 4096


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    """Return one ELF note: header, NUL-terminated name and descriptor, each padded to 4."""
    return struct.pack(">III", len(name) + 1, len(desc), ntype) + _pad4(name + b"\0") + _pad4(desc)


def raw_notes(blob: bytes) -> list[tuple[bytes, int, bytes]]:
    """Split a PT_NOTE payload into (name, type, whole note bytes)."""
    out, off = [], 0
    while off + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from(">III", blob, off)
        end = off + 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
        out.append((blob[off + 12:off + 11 + namesz], ntype, blob[off:end]))
        off = end
    return out


def note_desc(whole: bytes) -> bytes:
    """The descriptor of one whole note (as :func:`raw_notes` gives it)."""
    namesz, descsz, _ntype = struct.unpack_from(">III", whole, 0)
    start = 12 + (namesz + 3) // 4 * 4
    return whole[start:start + descsz]


def cksm(data: bytes) -> int:
    """Return the s390 CKSM (reference section 4): big-endian words summed with end-around carry."""
    data = bytes(data) + bytes(-len(data) % 4)
    total = sum(struct.unpack(f">{len(data) // 4}I", data))
    while total >> 32:
        total = (total & 0xFFFFFFFF) + (total >> 32)
    return total


def decode_save_area(sa: bytes) -> dict:
    """Decode a 512-byte store-status save area (offsets relative to 0x1200)."""
    return {
        "fprs": struct.unpack_from(">16Q", sa, 0x00),
        "gprs": struct.unpack_from(">16Q", sa, 0x80),
        "psw": struct.unpack_from(">2Q", sa, 0x100),
        "prefix": struct.unpack_from(">I", sa, 0x118)[0],
        "fpc": struct.unpack_from(">I", sa, 0x11C)[0],
        "todpreg": sa[0x124:0x128],
        "timer": sa[0x128:0x130],
        "todcmp": sa[0x130:0x138],
        "acrs": struct.unpack_from(">16I", sa, 0x140),
        "ctrs": sa[0x180:0x200],
    }


def reference_notes(save_areas: list[bytes], vectors: list[bytes] | None, vmcoreinfo: bytes | None) -> bytes:
    out = []
    prpsinfo = bytearray(136)
    prpsinfo[1] = ord("R")
    prpsinfo[40:47] = b"vmlinux"
    out.append(note(b"CORE", 3, bytes(prpsinfo)))
    n = 0
    for i, sa in enumerate(save_areas):
        r = decode_save_area(sa)
        if r["prefix"] == 0:
            continue
        n += 1
        prs = bytearray(336)
        struct.pack_into(">i", prs, 32, n)
        struct.pack_into(">2Q", prs, 112, *r["psw"])
        struct.pack_into(">16Q", prs, 128, *r["gprs"])
        struct.pack_into(">16I", prs, 256, *r["acrs"])
        out.append(note(b"CORE", 1, bytes(prs)))
        out.append(note(b"CORE", 2, struct.pack(">II16Q", r["fpc"], 0, *r["fprs"])))
        out.append(note(b"LINUX", 0x301, r["timer"]))
        out.append(note(b"LINUX", 0x302, r["todcmp"]))
        out.append(note(b"LINUX", 0x303, r["todpreg"]))
        out.append(note(b"LINUX", 0x304, r["ctrs"]))
        out.append(note(b"LINUX", 0x305, struct.pack(">I", r["prefix"])))
        if vectors is not None:
            vx = vectors[i]
            out.append(note(b"LINUX", 0x30A, vx[256:]))
            out.append(note(b"LINUX", 0x309, b"".join(vx[k * 16 + 8:k * 16 + 16] for k in range(16))))
    if vmcoreinfo is not None:
        out.append(note(b"VMCOREINFO", 0, vmcoreinfo))
    return b"".join(out)


def reference_header(ranges: list[tuple[int, int]], notes_size: int) -> bytes:
    """
    Return the page-padded ELF header block of a vmcore of *ranges* (page
    aligned, sorted) whose notes have *notes_size* bytes: the ELF header,
    PT_NOTE, one PT_LOAD per range, and with 0xffff (PN_XNUM) program
    headers or more, ELF extended numbering as the gABI says and Linux's
    fill_extnum_info writes it: e_phnum 0xffff, one SHT_NULL section header
    after the program headers with the count in sh_info, e_shnum 1,
    e_shentsize 64, e_shstrndx 0, sh_size 1 (= e_shnum).
    """
    phnum = 1 + len(ranges)
    if phnum >= 0xFFFF:
        shoff = 64 + 56 * phnum
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
        tail = struct.pack(">IIQQQQIIQQ", 0, 0, 0, 0, 0, 1, 0, phnum, 0, 0)
        e_phnum, e_shentsize, e_shnum = 0xFFFF, 64, 1
    else:
        shoff, tail, e_phnum, e_shentsize, e_shnum = 0, b"", phnum, 0, 0
    hdr_size = -(-(64 + 56 * phnum + len(tail)) // PAGE) * PAGE
    notes_block = -(-notes_size // PAGE) * PAGE
    ehdr = b"\x7fELF\x02\x02\x01" + b"\0" * 9 + struct.pack(">HHIQQQIHHHHHH", 4, 22, 1, 0, 64, shoff, 0, 64, 56,
                                                             e_phnum, e_shentsize, e_shnum, 0)
    phdrs = [struct.pack(">IIQQQQQQ", 4, 0, hdr_size, 0, 0, notes_size, notes_size, 0)]
    off = hdr_size + notes_block
    for start, end in ranges:
        phdrs.append(struct.pack(">IIQQQQQQ", 1, 7, off, start, start, end - start, end - start, PAGE))
        off += end - start
    head = ehdr + b"".join(phdrs) + tail
    return head + b"\0" * (hdr_size - len(head))


def reference_vmcore(path: str, read_old, ranges: list[tuple[int, int]], save_areas: list[bytes],
                     vectors: list[bytes] | None, vmcoreinfo: bytes | None) -> None:
    """
    Write the vmcore the kernel would produce to *path*.

    :param read_old: ``read_old(address, length) -> bytes`` of old memory
    :param ranges: exported ``(start, end)`` ranges, page aligned, sorted
    """
    notes = reference_notes(save_areas, vectors, vmcoreinfo)
    head = reference_header(ranges, len(notes))
    with open(path, "wb") as f:
        f.write(head)
        f.write(notes + b"\0" * (-len(notes) % PAGE))
        for start, end in ranges:
            pos = start
            while pos < end:
                n = min(end - pos, 1 << 24)
                f.write(read_old(pos, n))
                pos += n


# --------------------------------------------------------------------------
# small machines and s390 dump headers, packed from the reference document
# (sections 3 and 8) with struct alone


MIB = 1 << 20


def parse_header(data: bytes) -> dict:
    """Parse struct df_s390_hdr as the reference's table gives it (big-endian, packed)."""
    assert len(data) >= 0x1000
    fields = [
        (0x00, "magic", "Q"), (0x08, "version", "I"), (0x0C, "header_size", "I"), (0x10, "dump_level", "I"),
        (0x14, "page_size", "I"), (0x18, "mem_size", "Q"), (0x20, "mem_start", "Q"), (0x28, "mem_end", "Q"),
        (0x30, "num_pages", "I"), (0x34, "pad", "I"), (0x38, "tod", "Q"), (0x40, "cpu_id", "Q"),
        (0x48, "arch", "I"), (0x4C, "volnr", "I"), (0x50, "build_arch", "I"), (0x54, "mem_size_real", "Q"),
        (0x5C, "mvdump", "B"), (0x5D, "cpu_cnt", "H"), (0x5F, "real_cpu_cnt", "H"),
    ]
    h = {name: struct.unpack_from(">" + fmt, data, off)[0] for off, name, fmt in fields}
    h["lc_vec"] = list(struct.unpack_from(">512I", data, 0x800))
    return h


def pack_save_area(r: dict) -> bytes:
    """Pack a 512-byte store-status save area (reference section 3, offsets from 0x1200)."""
    sa = bytearray(512)
    struct.pack_into(">16Q", sa, 0x000, *r["fprs"])
    struct.pack_into(">16Q", sa, 0x080, *r["gprs"])
    struct.pack_into(">2Q", sa, 0x100, *r["psw"])
    struct.pack_into(">I", sa, 0x118, r["prefix"])
    struct.pack_into(">I", sa, 0x11C, r["fpc"])
    struct.pack_into(">I", sa, 0x124, r["todpreg"])
    struct.pack_into(">Q", sa, 0x128, r["timer"])
    sa[0x130:0x138] = r["todcmp"]
    struct.pack_into(">16I", sa, 0x140, *r["acrs"])
    struct.pack_into(">16Q", sa, 0x180, *r["ctrs"])
    return bytes(sa)


def regs(i: int, prefix: int) -> dict:
    """Distinct made-up registers of CPU *i*."""
    return dict(psw=(0x0705000180000000, 0x200000 + i * 0x10), gprs=[0x1111 * i + r for r in range(16)],
                acrs=[i << 16 | r for r in range(16)], ctrs=[0xC0 << 56 | i << 8 | r for r in range(16)],
                fprs=[0x3FF0000000000000 | i << 8 | r for r in range(16)], fpc=0x100 + i, prefix=prefix,
                timer=0x7FFF000000000000 | i, todcmp=bytes([0, 0xE3, 0xA0, 0, 0, 0, 0, i]), todpreg=0xAB00 + i)


def lay_save_areas(buf: bytearray, base: int, areas: list[tuple[int, bytes]]) -> None:
    """Lay each ``(prefix, save area)`` over *buf* (memory from *base*) at prefix + 0x1200."""
    for prefix, sa in areas:
        start = prefix + 0x1200 - base
        lo, hi = max(start, 0), min(start + 512, len(buf))
        if lo < hi:
            buf[lo:hi] = sa[lo - start:hi - start]


RT_SIZE = 64 * MIB
RT_HSA = 16 * MIB
RT_PREFIXES = [0x30000, RT_HSA + 0x800000, RT_SIZE - 0x2000]  # in the HSA, above it, the last page
NOTE_ADDR, REIPL_ADDR = 0x7000, 0x9000


def make_image(tmp_path, seed: int = 1) -> tuple[bytearray, bytes, bytes]:
    """Return a 64 MiB image with a VMCOREINFO note and a re-IPL block, its VMCOREINFO and re-IPL block."""
    img = bytearray(random.Random(seed).randbytes(RT_SIZE))
    vmcoreinfo = b"OSRELEASE=6.1.0-zcore-test\nPAGESIZE=4096\nSYMBOL(_stext)=100000\n"
    n = note(b"VMCOREINFO", 0, vmcoreinfo)
    img[NOTE_ADDR:NOTE_ADDR + len(n)] = n
    reipl = bytearray(0x40)
    struct.pack_into(">I", reipl, 0, 0x40)
    reipl[7] = 1
    img[REIPL_ADDR:REIPL_ADDR + 0x40] = reipl
    img[0xA3] = 1
    struct.pack_into(">QIQ", img, 0xE00, REIPL_ADDR, cksm(bytes(reipl)), NOTE_ADDR)
    struct.pack_into(">Q", img, 0xE18, 0)  # no os_info
    return img, vmcoreinfo, bytes(reipl)


def write_description(path, image_name: str, environment: str, cpus: list[dict], extra: str = "",
                      memory: list[tuple[int, int]] | None = None) -> None:
    """Write a machine description; *memory*: ``(start, size)`` ranges, by default ``[0, RT_SIZE)``."""
    ranges = ", ".join(f"{{ start = {s:#x}, size = {n:#x} }}" for s, n in memory or [(0, RT_SIZE)])
    lines = ["format = 1", f'name = "{path.stem}"', f'environment = "{environment}"', "vector = false",
             f"memory = [{ranges}]", "", "[store]", 'type = "raw"',
             f'path = "{image_name}"', extra]
    for c in cpus:
        lines += ["", "[[cpu]]", f"address = {c['address']}"]
        if c.get("save_area") is not None:
            lines.append(f'save_area = "{c["save_area"].hex()}"')
    path.write_text("\n".join(lines) + "\n")


HDR = 0x1000
MAGIC = 0xA8190173618F23FD
TOD_EPOCH = 0x7D91048BCA000000  # TOD = TOD_EPOCH + (unix microseconds << 12)


def small_dump(version: int = 5, magic: int = MAGIC, mem_size: int = 4 * MIB, prefixes=(0x10000,),
               **fields) -> bytearray:
    hdr = bytearray(HDR)
    struct.pack_into(">QIIIIQQQI", hdr, 0, magic, version, fields.get("header_size", 0x1000), 4,
                     fields.get("page_size", 4096), mem_size, 0, mem_size, mem_size // 4096)
    struct.pack_into(">Q", hdr, 0x38, TOD_EPOCH + (1_700_000_000_000_000 << 12))
    struct.pack_into(">I", hdr, 0x48, fields.get("arch", 2))
    struct.pack_into(">HH", hdr, 0x5D, len(prefixes), len(prefixes))
    struct.pack_into(f">{len(prefixes)}I", hdr, 0x800, *prefixes)
    mem = bytearray(mem_size)
    for i, p in enumerate(prefixes):
        lay_save_areas(mem, 0, [(p, pack_save_area(regs(i, p)))])
    lay_save_areas(mem, 0, [(0, pack_save_area(regs(5, 0x3000)))])  # absolute 0x1200
    return hdr + mem


def phdrs(path) -> list[dict]:
    """The program headers of an ELF64 big-endian core, read with struct alone."""
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


NT_S390_VXRS_LOW, NT_S390_VXRS_HIGH = 0x309, 0x30A


def vxrs_notes(path) -> list[dict[int, bytes]]:
    """
    Return, per CPU (an NT_PRSTATUS starts one) in note order, its
    NT_S390_VXRS_LOW/HIGH descriptors ``{type: bytes}``, read with pyelftools.
    """
    from elftools.elf.elffile import ELFFile
    names = {"NT_S390_VXRS_LOW": NT_S390_VXRS_LOW, "NT_S390_VXRS_HIGH": NT_S390_VXRS_HIGH}
    cpus: list[dict[int, bytes]] = []
    with open(path, "rb") as f:
        for seg in ELFFile(f).iter_segments():
            if seg["p_type"] != "PT_NOTE":
                continue
            for n in seg.iter_notes():
                ntype = names.get(n["n_type"], n["n_type"])
                if n["n_type"] == "NT_PRSTATUS":
                    cpus.append({})
                elif n["n_name"] == "LINUX" and ntype in (NT_S390_VXRS_LOW, NT_S390_VXRS_HIGH) and cpus:
                    desc = n["n_desc"] if isinstance(n["n_desc"], bytes) else bytes(n["n_desc"], "latin-1")
                    cpus[-1][ntype] = desc
    return cpus
