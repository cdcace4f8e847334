# SPDX-License-Identifier: MIT
"""
The command line as a new user meets it: ``--help`` with examples, one-line
errors that say what to do next, the helper calling convention, ``vmcorefs
info``'s table. (Saving: test_t7_save; mount(8), fstab and the dump
environment: test_t7_dump_environment; README, completion and the man page:
test_t7_docs.)
"""

from __future__ import annotations

import os
import re


from conftest import (describe_kdump_fixture, one_line_error, require_fuse, run_vmcorefs,
                      small_machine)

MIB = 1 << 20
PAGE = 4096


COMMANDS = ["mount", "demo", "umount", "check", "info", "save", "emulate"]


# --------------------------------------------------------------------------
# --help, errors, the helper calling convention


def test_every_help_shows_examples():
    res = run_vmcorefs("--help")
    assert "examples:" in res.stdout
    for cmd in COMMANDS:
        assert re.search(rf"^  vmcorefs {cmd}\b", res.stdout, re.M) or cmd == "umount" and "umount" in res.stdout
        sub = run_vmcorefs(cmd, "--help").stdout
        assert re.search(r"^examples?:", sub, re.M), f"vmcorefs {cmd} --help has no example"
        assert f"vmcorefs {cmd}" in sub.split("example", 1)[1], cmd
    assert run_vmcorefs("--version").stdout.startswith("vmcorefs ")


def test_errors_are_one_line_and_say_what_to_do(tmp_path):
    one_line_error(run_vmcorefs("info", tmp_path / "missing.toml", check=False), "no such file")
    (tmp_path / "out.elf").write_bytes(b"x")
    one_line_error(run_vmcorefs("save", "demo", tmp_path / "out.elf", check=False), "--force")
    one_line_error(run_vmcorefs("save", "demo", tmp_path, check=False), "give the dump's file name")
    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(run_vmcorefs("save", empty, tmp_path / "o.elf", check=False), "mount point")
    one_line_error(run_vmcorefs("mount", "demo", tmp_path / "mnt", "-o", "bogus", check=False),
                   "unknown mount option", "allow_other")
    one_line_error(run_vmcorefs("demo", tmp_path / "nodir", check=False), "does not exist",
                   f"mkdir -p {tmp_path / 'nodir'}")
    res = run_vmcorefs("save", check=False)
    assert res.returncode == 2 and "usage:" in res.stderr


def test_helper_convention_and_mount_words():
    from vmcorefs.cli import _helper_convention, _mount_options
    cmds = set(COMMANDS) | {"unmount"}
    assert _helper_convention(["m.toml", "/mnt", "-o", "rw,dev,suid"], cmds) == \
        ["mount", "m.toml", "/mnt", "-o", "rw,dev,suid"]
    assert _helper_convention(["demo", "/mnt", "-o", "rw"], cmds) == ["demo", "/mnt", "-o", "rw"]
    assert _helper_convention(["info", "demo"], cmds) == ["info", "demo"]
    assert _helper_convention(["--help"], cmds) == ["--help"]
    opts = _mount_options(["rw,dev,suid,nosuid,nodev,noatime,noauto,nofail,_netdev,x-systemd.automount",
                           "allow_other,mode=kdump,log=/tmp/l,max_read=131072"])
    assert opts == {"fuse": ["max_read=131072"], "allow_other": True, "mode": "kdump", "log": "/tmp/l"}


def test_the_mount_helper_form_mounts(tmp_path):
    """What mount.fuse3 runs for 'mount -t fuse.vmcorefs': vmcorefs SOURCE MOUNTPOINT -o OPTIONS."""
    require_fuse()
    desc = small_machine(tmp_path)
    mp = tmp_path / "mnt"
    mp.mkdir()
    run_vmcorefs(desc, mp, "-o", "rw,dev,suid,noatime,allow_other,mode=standalone")
    try:
        assert os.path.ismount(mp)
        assert "mode: standalone" in (mp / "meminfo/summary").read_text()
        assert (mp / "vmcore").stat().st_mode & 0o444 == 0o444  # allow_other
    finally:
        run_vmcorefs("umount", mp)
    assert not os.path.ismount(mp)


# --------------------------------------------------------------------------
# info


def test_info_is_a_table():
    out = run_vmcorefs("info", "demo").stdout
    fields = dict(re.findall(r"^(\S+) +(.*)$", out.split("\n\n")[0], re.M))
    assert fields["kernel"] == "6.1.0-vmcorefs-demo"
    assert fields["mode"].startswith("standalone - no valid kdump setup")
    assert fields["crashkernel"] == "none"
    assert fields["/vmcore"].startswith("536883200 bytes")
    assert fields["cpus"].startswith("4 (4 dumped), vector registers: yes")
    assert "UTC" in fields["crashed"]
    memory = out.split("\nMemory\n")[1].split("\n\n")[0].splitlines()
    assert memory[0].split() == ["START", "END", "SIZE", "IN", "/vmcore"]
    assert memory[1].split()[:4] == ["0x0000000000000000", "0x0000000001ffffff", "32", "MiB"]
    assert "HSA" in memory[1]
    assert memory[3].split()[:2] == ["0x0000000018000000", "0x0000000027ffffff"]
    cpus = out.split("\nCPUs\n")[1].splitlines()
    assert cpus[0].split()[:3] == ["ADDRESS", "ROLE", "PREFIX"]
    assert cpus[1].split() == ["0", "boot", "0x00020000", "0704c00180000000", "0000000000100024", "#1"]
    assert [row.split()[-1] for row in cpus[1:5]] == ["#1", "#2", "#3", "#4"]


def test_info_of_the_kdump_fixture(tmp_path):
    describe_kdump_fixture(tmp_path)
    out = run_vmcorefs("info", tmp_path / "kdump.toml").stdout
    assert re.search(r"^kernel +6\.1\.192-vmcorefs$", out, re.M)
    assert re.search(r"^crashkernel +0x34000000-0x3fffffff \(192 MiB\)$", out, re.M)
    assert re.search(r"^/vmcore +872427520 bytes", out, re.M)
    assert re.search(r"0x0000000000000000  0x000000000bffffff  192 MiB  yes, read at 0x34000000", out)
    assert re.search(r"0x0000000034000000  0x000000003fffffff  192 MiB  no: crashkernel", out)
    assert re.search(r"^  0 +boot +0x00d62000 +0400c00180000000 0000000000110358 +#1$", out, re.M)
    assert re.search(r"^  1 +0x00d64000 +0400c00180000000 0000000000112a26 +#2$", out, re.M)


def test_the_command_knows_the_modes_the_dump_decides_between():
    """cli spells dump.MODES once, for a --help that imports no trio: the same names, in the same order."""
    from vmcorefs import cli, dump
    assert cli.MODES == dump.MODES
    assert "--mode {auto,kdump,standalone}" in run_vmcorefs("info", "--help").stdout
