# SPDX-License-Identifier: MIT
"""Byte layouts and the checksum against the reference document."""

import pytest

from vmcorefs.layouts import (DF_S390_HDR, ELF64_EHDR, ELF64_PHDR, ELF_FPREGSET, ELF_PRPSINFO, ELF_PRSTATUS,
                              OS_INFO, OS_INFO_ENTRY, SAVE_AREA, Layout, cksm, note)


@pytest.mark.parametrize("data,expected", [
    ("", 0), ("00000001", 1), ("ffffffff00000001", 1), ("01", 0x01000000),
    ("123456789abcdef0", 0xACF13568),
])
def test_cksm_reference_examples(data, expected):
    assert cksm(bytes.fromhex(data)) == expected


def test_cksm_end_around_carry_matches_sequential_definition():
    import random
    rng = random.Random(1)
    for n in (3, 4, 5, 4096, 10001):
        data = rng.randbytes(n)
        padded = data + bytes(-n % 4)
        s = 0
        for i in range(0, len(padded), 4):
            s += int.from_bytes(padded[i:i + 4], "big")
            if s >> 32:
                s = (s & 0xFFFFFFFF) + 1
        assert cksm(data) == s


@pytest.mark.parametrize("layout,size,fields", [
    (SAVE_AREA, 512, {"fprs": 0x0, "gprs": 0x80, "psw": 0x100, "prefix": 0x118, "fpc": 0x11C, "todpreg": 0x124,
                      "timer": 0x128, "todcmp": 0x130, "acrs": 0x140, "ctrs": 0x180}),
    (OS_INFO, 0x20, {"magic": 0, "csum": 8, "version_major": 0xC, "version_minor": 0xE,
                     "crashkernel_addr": 0x10, "crashkernel_size": 0x18}),
    (OS_INFO_ENTRY, 20, {"addr": 0, "size": 8, "csum": 16}),
    (ELF64_EHDR, 64, {"e_phoff": 0x20, "e_phnum": 0x38}),
    (ELF64_PHDR, 56, {"p_offset": 8, "p_filesz": 0x20, "p_align": 0x30}),
    (ELF_PRSTATUS, 336, {"pr_pid": 32, "psw": 112, "gprs": 128, "acrs": 256, "orig_gpr2": 320}),
    (ELF_PRPSINFO, 136, {"pr_sname": 1, "pr_fname": 40, "pr_psargs": 56}),
    (ELF_FPREGSET, 136, {"fpc": 0, "fprs": 8}),
    (DF_S390_HDR, 4096, {"magic": 0, "version": 8, "mem_size": 0x18, "tod": 0x38, "arch": 0x48,
                         "mem_size_real": 0x54, "cpu_cnt": 0x5D, "real_cpu_cnt": 0x5F, "lc_vec": 0x800}),
])
def test_layout_sizes_and_offsets(layout, size, fields):
    assert layout.size == size
    for name, off in fields.items():
        assert layout.offset(name) == off, name


def test_layout_round_trip_and_overlap_detection():
    data = SAVE_AREA.pack(prefix=0x1234000, psw=(1, 2), todcmp=b"\x00\x01\x02\x03\x04\x05\x06\x07")
    assert data[0x118:0x11C] == bytes.fromhex("01234000")
    back = SAVE_AREA.unpack(data)
    assert back["prefix"] == 0x1234000 and back["psw"] == (1, 2) and back["gprs"] == (0,) * 16
    with pytest.raises(ValueError):
        Layout("bad", 8, [(0, "a", "Q"), (4, "b", "I")])


def test_note_padding():
    n = note(b"VMCOREINFO", 0, b"abcde")
    assert n[:12] == bytes.fromhex("0000000b 00000005 00000000")
    assert n[12:24] == b"VMCOREINFO\0\0" and n[24:] == b"abcde\0\0\0"


def test_vmcoreinfo_numbers_in_the_base_the_kernel_wrote():
    from vmcorefs.osinfo import parse_vmcoreinfo, vmcoreinfo_number
    info = parse_vmcoreinfo(b"OSRELEASE=6.1.0\nKERNELOFFSET=3fe0000\nSYMBOL(lowcore_ptr)=5d8210\n"
                            b"LENGTH(lowcore_ptr)=16\nOFFSET(page.flags)=0\nno equals sign\nCRASHTIME=1795422295\n")
    assert info["OSRELEASE"] == "6.1.0"
    assert vmcoreinfo_number(info, "KERNELOFFSET") == 0x3FE0000
    assert vmcoreinfo_number(info, "SYMBOL(lowcore_ptr)") == 0x5D8210
    assert vmcoreinfo_number(info, "LENGTH(lowcore_ptr)") == 16
    assert vmcoreinfo_number(info, "CRASHTIME") == 1795422295
    assert vmcoreinfo_number(info, "SIZE(page)") is None


def test_fuse_options_user_options_replace_defaults():
    from vmcorefs.mount import _fuse_options
    opts = _fuse_options(False, ["fsname=/dev/dasdb1", "allow_root"])
    assert "fsname=/dev/dasdb1" in opts and "fsname=vmcorefs" not in opts
    assert {"ro", "allow_root", "subtype=vmcorefs", "default_permissions"} <= opts
    assert "ro" not in _fuse_options(False, [], writable=True)


def test_packer_packs_what_pack_packs():
    """Layout.packer (positional, for tables of 100,000 entries) gives pack's bytes, gaps as zeros."""
    import random

    from vmcorefs.layouts import ELF64_SHDR
    rng = random.Random(1)
    ph = {name: rng.randrange(1 << (8 * st.size)) for name, (_off, st) in ELF64_PHDR.fields.items()}
    assert ELF64_PHDR.packer(*ph).pack(*ph.values()) == ELF64_PHDR.pack(**ph)
    assert ELF64_PHDR.packer(*ph).unpack(ELF64_PHDR.pack(**ph)) == tuple(ph.values())
    # a subset with gaps between the fields, the rest zero
    st = SAVE_AREA.packer("prefix", "timer")
    assert st.size == 512 and st.pack(0x2000, 7) == SAVE_AREA.pack(prefix=0x2000, timer=7)
    assert ELF64_SHDR.packer("sh_info").pack(70002)[0x2C:0x30] == (70002).to_bytes(4, "big")
    with pytest.raises(ValueError):
        SAVE_AREA.packer("timer", "prefix")


def test_layouts_all_lists_every_name_the_tree_imports_from_it():
    """vmcorefs.layouts is a package of one module a subject; its __all__ is the union of theirs, each of
    those lists its module's public names, and every name the tree imports from the package is in it."""
    import ast
    import importlib
    from pathlib import Path

    import vmcorefs.layouts as layouts
    subjects = sorted(p.stem for p in Path(layouts.__file__).parent.glob("*.py") if p.stem != "__init__")
    union: set[str] = set()
    for name in subjects:
        mod = importlib.import_module(f"vmcorefs.layouts.{name}")
        tree = ast.parse(Path(mod.__file__).read_text())
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        defined |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets for target in (t.elts if isinstance(t, ast.Tuple) else [t])}
        assert set(mod.__all__) == {n for n in defined if not n.startswith("_") and n != "__all__"}, name
        union |= set(mod.__all__)
    assert set(layouts.__all__) == union and len(layouts.__all__) == len(union)
    assert all(getattr(layouts, n) is not None for n in layouts.__all__)
    repo = Path(__file__).resolve().parent.parent
    imported: dict[str, str] = {}
    for path in [*repo.glob("vmcorefs/**/*.py"), *repo.glob("tests/*.py"), *repo.glob("bench/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and (
                    node.module.split(".")[-1] == "layouts" or ".layouts." in f".{node.module}"):
                imported.update((alias.name, str(path.relative_to(repo))) for alias in node.names)
    assert len(imported) > 40  # the scan found the tree's imports
    missing = {n: where for n, where in imported.items() if n not in layouts.__all__}
    assert not missing, f"imported from vmcorefs.layouts but not in its __all__: {missing}"
