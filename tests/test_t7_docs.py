# SPDX-License-Identifier: MIT
"""
What the documentation promises: every vmcorefs command README.rst shows
runs (outputs compared where they are shown), the two set-up commands stay,
bash completion knows every command and option, the man page is current and
renders, the fixture scripts are well formed.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import (FIXTURES, REPO, VMCOREFS, require_fuse, sha256_file, sha_line, unpack_fixture)

MIB = 1 << 20
PAGE = 4096


COMMANDS = ["mount", "demo", "umount", "check", "info", "save", "emulate"]


# --------------------------------------------------------------------------
# the README's own commands


def readme_commands(text: str) -> list[tuple[str, list[str]]]:
    """
    Return ``(command, shown output lines)`` for every ``vmcorefs`` command in
    README.rst's literal blocks: in a block with ``$`` prompts the prompted
    lines (and what follows them up to the next prompt), elsewhere every line.
    """
    lines = text.splitlines()
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        if lines[i].rstrip().endswith("::"):
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min((len(ln) - len(ln.lstrip()) for ln in block if ln.strip()), default=0)
            block = [ln[indent:] for ln in block]
            prompted = any(ln.startswith("$ ") for ln in block)
            j = 0
            while j < len(block):
                ln = block[j]
                j += 1
                if prompted and not ln.startswith("$ "):
                    continue
                cmd = ln[2:] if prompted else ln
                while cmd.endswith("\\") and j < len(block):
                    cmd = cmd[:-1] + " " + block[j].strip()
                    j += 1
                shown = []
                if prompted:
                    while j < len(block) and not block[j].startswith("$ "):
                        shown.append(block[j])
                        j += 1
                cmd = cmd.split("  #")[0].strip()
                if cmd.startswith(("vmcorefs ", ".venv/bin/vmcorefs ")):
                    out.append((cmd, shown))
        else:
            i += 1
    return out


def test_readme_commands_work_as_shown(tmp_path):
    """Every vmcorefs command README.rst shows runs, with temporary paths; shown tables match."""
    require_fuse()
    text = (REPO / "README.rst").read_text()
    commands = readme_commands(text)
    names = {shlex.split(c)[1] for c, _ in commands}
    assert {"demo", "info", "save", "umount", "emulate"} <= names, names
    work = tmp_path / "work"
    work.mkdir()
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    paths = {"/mnt/dump": str(mnt), "/tmp/dump.elf": str(tmp_path / "dump.elf"),
             "/var/crash/dump.elf": str(tmp_path / "crash.elf")}
    fixture = FIXTURES / "kdump-1g" / "kdump-kdump.pmem.raw.zst"
    if fixture.exists():
        os.symlink(unpack_fixture("kdump-1g", "kdump-kdump.pmem.raw"), work / "kdump-kdump.pmem.raw")
        os.symlink(FIXTURES / "kdump-1g" / "cpu-state-kdump.json", work / "cpu-state-kdump.json")
    # descriptions first: later commands use what they write
    commands.sort(key=lambda c: shlex.split(c[0])[1] != "emulate")
    ran, skipped = [], []
    try:
        for cmd, shown in commands:
            argv = [paths.get(t, t) for t in shlex.split(cmd)[1:]]
            missing = [t for t in argv if re.search(r"/|\.(toml|raw|json|elf|s390)$", t) and t not in paths.values()
                       and not (work / t).exists() and not os.path.exists(t)
                       and not (argv[0] == "emulate" and t == argv[argv.index("-o") + 1] if "-o" in argv else False)]
            if missing or "|" in argv:
                skipped.append((cmd, missing))
                continue
            if argv[0] == "save":
                out = argv[2]
                for p in (out, out + ".sha256", out + ".vmcorefs-partial"):
                    if os.path.exists(p):
                        os.unlink(p)
            res = subprocess.run(VMCOREFS + argv, capture_output=True, text=True, cwd=work, timeout=600)
            ok = (0, 1) if argv[0] == "check" else (0,)
            assert res.returncode in ok, f"README command failed: {cmd}\n{res.stderr}"
            ran.append(cmd)
            if argv[0] == "info" and shown:
                got = [ln.rstrip() for ln in res.stdout.rstrip("\n").splitlines()]
                assert got == [ln.rstrip() for ln in shown], f"README shows other output for: {cmd}"
            if argv[0] == "save":
                digest = sha_line(res.stdout)[0]
                assert digest == sha256_file(argv[2])
                shown_digest = [ln.split()[0] for ln in shown if re.match(r"[0-9a-f]{64}  ", ln)]
                assert shown_digest in ([], [digest]), f"README shows another SHA-256 for: {cmd}"
    finally:
        if os.path.ismount(mnt):
            subprocess.run(VMCOREFS + ["umount", str(mnt)], capture_output=True)
    assert len(ran) >= 5, (ran, skipped)
    assert {shlex.split(c)[1] for c in ran} >= {"demo", "info", "save", "umount"}


def test_readme_keeps_the_two_commands():
    text = (REPO / "README.rst").read_text()
    assert "\n    bash contrib/run-demo.sh\n" in text
    assert "\n    bash contrib/run-tests.sh\n" in text
    assert "python bench/run.py" in text




# --------------------------------------------------------------------------
# completion, man page, fixture scripts


def test_bash_completion_knows_every_command_and_option():
    from vmcorefs.cli import build_parser
    script = (REPO / "contrib" / "completion" / "vmcorefs.bash").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sp in sub.choices.items():
        assert re.search(rf"\b{name}\b", script), name
        for action in sp._actions:
            if action.help == "==SUPPRESS==":
                continue
            for opt in action.option_strings:
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", script), f"{name} {opt}"
    if shutil.which("bash"):
        res = subprocess.run(["bash", "-c", f"source {REPO}/contrib/completion/vmcorefs.bash; "
                              "COMP_WORDS=(vmcorefs sa); COMP_CWORD=1; _vmcorefs; echo ${COMPREPLY[@]}; "
                              "COMP_WORDS=(vmcorefs save demo out --re); COMP_CWORD=4; _vmcorefs; "
                              "echo ${COMPREPLY[@]}; COMP_WORDS=(vmcorefs info --mode k); COMP_CWORD=3; "
                              "_vmcorefs; echo ${COMPREPLY[@]}"], capture_output=True, text=True)
        assert res.stdout.splitlines() == ["save", "--restart", "kdump"], res.stdout + res.stderr


def manpage_tool():
    """contrib/manpage.py, the man page's generator (a build tool of the checkout, not in the package)."""
    spec = importlib.util.spec_from_file_location("vmcorefs_contrib_manpage", REPO / "contrib" / "manpage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_man_page_is_current_and_renders(tmp_path):
    manpage = manpage_tool()
    shipped = (REPO / "doc" / "vmcorefs.1").read_text()
    stale = "doc/vmcorefs.1 is stale: run '.venv/bin/python contrib/manpage.py -o doc/vmcorefs.1'"
    # the document the page is written from, whatever docutils writes it...
    recorded = manpage.DIGEST.search(shipped)
    assert recorded and recorded.group(1) == manpage.digest(manpage.rst("2000-01-01")), stale
    # ...and, with the docutils that wrote the shipped page, the page itself (but its date)
    page = manpage.build()
    writer = lambda t: re.search(r"by the Docutils (\S+) manpage writer", t).group(1)  # noqa: E731
    if writer(page) == writer(shipped):
        strip_date = lambda t: re.sub(r'^\.TH .*$', "", t, flags=re.M)  # noqa: E731
        assert strip_date(shipped) == strip_date(page), stale
    # every command and option, README's sections
    from vmcorefs.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(COMMANDS) <= set(sub.choices)
    for name, sp in sub.choices.items():
        assert f"\n.SS vmcorefs {name}\n" in shipped or f"\\fBvmcorefs {name}\\fP" in shipped, name
        for action in sp._actions:
            if action.help == "==SUPPRESS==":
                continue
            for opt in action.option_strings:
                assert "\\fB" + opt.replace("-", "\\-") + "\\fP" in shipped, f"{name} {opt}"
    for title in manpage.README_SECTIONS:
        assert f"\n.SH {title}\n" in shipped, title
    # the command, and the page through man and groff
    res = subprocess.run([sys.executable, str(REPO / "contrib" / "manpage.py"), "-o", str(tmp_path / "v.1")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    if shutil.which("groff"):
        res = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(tmp_path / "v.1")], capture_output=True,
                             text=True)
        assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    res = subprocess.run(["man", "--warnings", "-l", str(tmp_path / "v.1")], capture_output=True, text=True,
                         env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"))
    assert res.returncode == 0 and not res.stderr.strip(), res.stderr
    assert "vmcorefs save" in res.stdout and "Exit status" in res.stdout and "Saving a dump" in res.stdout


def test_fixture_scripts_are_well_formed(tmp_path):
    d = REPO / "contrib" / "fixtures"
    for name in ("build-kernel.sh", "build-initrd.sh", "make-fixture.sh"):
        subprocess.run(["bash", "-n", str(d / name)], check=True)
    for name in ("mount.vmcorefs", "vmcorefs-dump.sh"):
        subprocess.run(["sh", "-n", str(REPO / "contrib" / name)], check=True)
    for name in ("run-qemu.py", "postprocess.py"):
        compile((d / name).read_text(), name, "exec")
    assert "RECONSTRUCTED" in (d / "README.md").read_text()
    cc = shutil.which("s390x-linux-gnu-gcc") or shutil.which("gcc")
    if cc:
        subprocess.run([cc, "-fsyntax-only", "-Wall", "-Werror", str(d / "init.c")], check=True)
