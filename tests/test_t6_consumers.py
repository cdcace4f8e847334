# SPDX-License-Identifier: MIT
"""
Real consumers on the mounted real fixture: "mount, cp /mnt/vmcore, point
crash or makedumpfile at it", with the real tools.

The kdump-1g fixture is mounted once for the module and every tool reads the
mounted /vmcore: readelf, eu-readelf, gdb-multiarch, vmcore-dmesg (kexec-tools),
drgn (PyPI), libkdumpfile (Debian's python3-libkdumpfile, for /usr/bin/python3)
natively, and Debian's s390x builds of makedumpfile, crash and zgetdump under
qemu-user (sysroot from contrib/s390x-sysroot.sh). Every expectation comes from the
fixture's own files: regs.txt (CPU registers the real capture kernel wrote),
drgn-output.txt (what drgn reported on the real /proc/vmcore), console.log
(the crashed kernel's console) and readelf-n.txt (its VMCOREINFO note).

In CI (CI set) a missing tool fails the test; elsewhere it skips with the
command that installs it (``bash contrib/setup.sh test``).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from pathlib import Path

import pytest

from conftest import (FIXTURES, Mount, describe_kdump_fixture, missing_tool, require_fuse, require_s390x, require_tool,
                      run, unpack_fixture)

pytestmark = [pytest.mark.fuse, pytest.mark.fixture]

FIX = FIXTURES / "kdump-1g"
# --- what the fixture files say ----------------------------------------------

class Expected:
    """Reference values parsed from the fixture's files (never from vmcorefs)."""

    def __init__(self) -> None:
        self.cpus = self._regs((FIX / "regs.txt").read_text())
        self._drgn((FIX / "drgn-output.txt").read_text())
        self.console_kernel = self._console((FIX / "console.log").read_text())
        self.vmcoreinfo = self._vmcoreinfo((FIX / "readelf-n.txt").read_text())
        # the Call Trace printed by panic(): [(address, function)], from the
        # frame below panic on (those return addresses are still on the stack)
        trace = [(int(m.group(1), 16), m.group(2)) for m in
                 (re.search(r"\[<([0-9a-f]+)>\] (\w+)\+", line) for line in self.dmesg_tail) if m]
        names = [f for _, f in trace]
        self.call_trace = trace[names.index("panic") + 1:]
        self.banner = self.console_kernel[0]
        self.crashtime = int(self.vmcoreinfo["CRASHTIME"])

    @staticmethod
    def _regs(text: str) -> list[dict]:
        """regs.txt section 1: the CPU notes as the real capture kernel wrote them."""
        section = text.split("## 1.", 1)[1].split("## 2.", 1)[0]
        cpus = []
        for block in re.split(r"\n(?=cpu note #)", section)[1:]:
            head = re.match(r"cpu note #(\d+): pr_pid=(\d+) prefix=0x([0-9a-f]+)", block)
            psw = re.search(r"PSW\s+mask=([0-9a-f]+) addr=([0-9a-f]+)\s+\((\w+)\+", block)
            regs = {k: int(v, 16) for k, v in re.findall(r"\b([RAF]\d\d|FPC)=([0-9a-f]+)", block)}
            cpus.append({
                "note": int(head.group(1)), "pid": int(head.group(2)), "prefix": int(head.group(3), 16),
                "pswm": int(psw.group(1), 16), "pswa": int(psw.group(2), 16), "function": psw.group(3),
                "gprs": [regs[f"R{i:02d}"] for i in range(16)],
                "acrs": [regs[f"A{i:02d}"] for i in range(16)],
                "fprs": [regs[f"F{i:02d}"] for i in range(16)],
                "fpc": regs["FPC"],
            })
        assert [c["note"] for c in cpus] == list(range(len(cpus))) and cpus
        return cpus

    def _drgn(self, text: str) -> None:
        lines = text.splitlines()
        self.drgn_lines = lines
        self.release = re.search(r"^UTS release: (\S+)$", text, re.M).group(1)
        self.platform_arch = re.search(r"Architecture\.(\w+)", text).group(1).lower()
        m = re.search(r"^dmesg: (\d+) lines; last (\d+):$", text, re.M)
        self.dmesg_count, n = int(m.group(1)), int(m.group(2))
        i = lines.index(m.group(0))
        self.dmesg_tail = lines[i + 1:i + 1 + n]
        m = re.search(r"^tasks: (\d+): (.*)$", text, re.M)
        self.tasks = [(int(p), c) for p, c in (t.split(":", 1) for t in m.group(2).split(", "))]
        assert len(self.tasks) == int(m.group(1))
        self.crashed_tid = int(re.search(r"^crashed thread: tid (\d+)$", text, re.M).group(1))
        i = lines.index(f"crashed thread: tid {self.crashed_tid}")
        self.stack_lines = [l for l in lines[i + 1:] if l.startswith("#")]
        self.stack_functions = [m.group(1) for m in
                                (re.match(r"#\d+\s+([A-Za-z_]\w*) \(", l) for l in self.stack_lines) if m]
        self.stack_user_pc = int(re.match(r"#\d+\s+(0x[0-9a-f]+)$", self.stack_lines[-1]).group(1), 16)

    @staticmethod
    def _console(text: str) -> list[str]:
        """The crashed (first) kernel's own messages on the console, up to init's first output."""
        out = []
        for line in text.splitlines():
            if line.startswith("VMCOREFS-"):
                break
            out.append(line)
        assert out[0].startswith("Linux version ")
        return out

    @staticmethod
    def _vmcoreinfo(text: str) -> dict[str, str]:
        """The VMCOREINFO note of the real /proc/vmcore (hex in readelf-n.txt), as key=value."""
        line = next(l for l in text.splitlines() if l.lstrip().startswith("VMCOREINFO"))
        raw = bytes.fromhex(line.split("description data:", 1)[1].replace(" ", ""))
        return dict(l.split("=", 1) for l in raw.decode().splitlines() if "=" in l)


def is_subsequence(small, big) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


# --- module fixtures -------------------------------------------------------------

@pytest.fixture(scope="module")
def expected() -> Expected:
    if not (FIX / "regs.txt").exists():
        pytest.skip(f"fixture {FIX} is not available (the shared/ folder is missing)")
    return Expected()


@pytest.fixture(scope="module")
def vmlinux() -> Path:
    return unpack_fixture("kdump-1g", "vmlinux")


@pytest.fixture(scope="module")
def vmcore(tmp_path_factory):
    """The real fixture, described with one ``vmcorefs emulate`` and mounted once: /mnt/vmcore."""
    require_fuse()
    d = tmp_path_factory.mktemp("consumers")
    describe_kdump_fixture(d)
    (d / "mnt").mkdir()
    m = Mount(str(d / "kdump.toml"), d / "mnt")
    try:
        yield m.path("vmcore")
        m.unmount()  # every consumer has let go; the daemon exits cleanly
    finally:
        m.cleanup()


@pytest.fixture(scope="module")
def vmcore_dmesg_output(vmcore) -> str:
    return run([require_tool("vmcore-dmesg", "kexec-tools"), vmcore]).stdout


@pytest.fixture(scope="module")
def compressed_dump(vmcore, tmp_path_factory):
    """``makedumpfile -d 31 -c /mnt/vmcore out`` (s390x build under qemu-user)."""
    mdf = require_s390x("makedumpfile")
    out = tmp_path_factory.mktemp("makedumpfile") / "dump.kdump"
    res = run(mdf + ["-d", "31", "-c", vmcore, out], timeout=600)
    return out, res


# --- the consumers ---------------------------------------------------------------

def test_readelf_and_eu_readelf(vmcore, expected):
    readelf = require_tool("readelf", "binutils")
    for flag, name in (("-h", "readelf-h.txt"), ("-l", "readelf-l.txt"), ("-n", "readelf-n.txt")):
        out = run([readelf, flag + "W", vmcore]).stdout
        assert out.strip() == (FIX / name).read_text().strip(), name

    # eu-readelf decodes NT_PRSTATUS (it needs the 336-byte s390x layout)
    out = run([require_tool("eu-readelf", "elfutils"), "-n", vmcore]).stdout
    blocks = re.findall(r"CORE\s+336\s+PRSTATUS\n(.*?)\n\s+CORE\s+136\s+FPREGSET", out, re.S)
    assert len(blocks) == len(expected.cpus), out[:2000]
    for cpu, block in zip(expected.cpus, blocks):
        vals = dict(re.findall(r"\b(pid|pswm|pswa|r\d+|a\d+):\s+(0x[0-9a-f]+|\d+)", block))
        num = {k: int(v, 0) for k, v in vals.items()}
        assert num["pid"] == cpu["pid"]
        assert (num["pswm"], num["pswa"]) == (cpu["pswm"], cpu["pswa"]), f"cpu note #{cpu['note']}"
        assert [num[f"r{i}"] for i in range(16)] == cpu["gprs"], f"cpu note #{cpu['note']}"
        assert [num[f"a{i}"] for i in range(16)] == cpu["acrs"], f"cpu note #{cpu['note']}"
    # (eu-readelf 0.188 prints the FPREGSET values misaligned; gdb checks the FPRs below)
    assert [c["pswa"] for c in expected.cpus] == [0x110358, 0x112A26]  # fixture README
    # eu-readelf also decodes the VMCOREINFO note: the real one, line for line
    info = dict(re.findall(r"^\s+([A-Z][\w()._-]*)=(\S*)$", out, re.M))
    assert info == expected.vmcoreinfo


GDB_MARK = "===vmcorefs-{}==="


def gdb_sections(out: str) -> dict[str, str]:
    parts = re.split(r"^===vmcorefs-(\S+)===$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def gdb_registers(text: str) -> dict[str, int]:
    regs = {k: int(v, 16) for k, v in re.findall(r"^(\w+)\s+(0x[0-9a-f]+)\s", text, re.M)}
    regs.update({k: int(v, 16) for k, v in re.findall(r"^(f\d+)\s+.*\(raw (0x[0-9a-f]+)\)$", text, re.M)})
    return regs


def gdb_frames(text: str) -> list[tuple[int | None, str]]:
    """``bt`` as [(pc or None for an inlined frame, function)]."""
    return [(int(m.group(1), 16) if m.group(1) else None, m.group(2)) for m in
            re.finditer(r"^#\d+\s+(?:(0x[0-9a-f]+) in )?(\w+) \(", text, re.M)]


def test_gdb_multiarch(vmcore, vmlinux, expected):
    gdb = require_tool("gdb-multiarch", "gdb-multiarch")
    cmds = ["set architecture s390:64-bit", "set width 0", "set pagination off",
            "set debuginfod enabled off", f"file {vmlinux}", f"core-file {vmcore}",
            f"echo {GDB_MARK.format('threads')}\\n", "info threads"]
    for t in range(1, len(expected.cpus) + 1):
        cmds += [f"echo {GDB_MARK.format(f'switch{t}')}\\n", f"thread {t}",
                 f"echo {GDB_MARK.format(f'regs{t}')}\\n", "info all-registers", "info registers pc",
                 f"echo {GDB_MARK.format(f'bt{t}')}\\n", "bt"]
    res = run([gdb, "-batch", "-nx"] + [a for c in cmds for a in ("-ex", c)], ok=False)
    # the only complaints: the kernel sources are not here ("45\tarch/...c: No
    # such file or directory.") and each bt ends at the bottom of the kernel
    # stack ("PC not saved", which also makes gdb -batch exit 1); gdb also
    # warns when vmlinux's mtime is later than the core's (the mount time):
    # true whenever the fixture cache was unpacked after the mount, as in a
    # fresh CI run, and about timestamps only, not about the contents
    benign = {"PC not saved", "warning: exec file is newer than core file."}
    errors = [l for l in res.stderr.splitlines() if l.strip() and l.strip() not in benign
              and not re.fullmatch(r"\d+\t\S+: No such file or directory\.", l)]
    assert res.returncode in (0, 1) and not errors, res.stderr
    sec = gdb_sections(res.stdout)
    assert set(sec) >= {"threads", *(f"bt{t}" for t in range(1, len(expected.cpus) + 1))}, res.stdout

    # one thread per PRSTATUS note, LWP = pr_pid, stopped in the function regs.txt names
    threads = re.findall(r"^\*?\s+(\d+)\s+LWP (\d+)\s+(\w+) \(", sec["threads"], re.M)
    assert [(int(i), int(lwp)) for i, lwp, _ in threads] == \
        [(n + 1, c["pid"]) for n, c in enumerate(expected.cpus)], sec["threads"]
    assert [f for _, _, f in threads] == [c["function"] for c in expected.cpus]

    for t, cpu in enumerate(expected.cpus, 1):
        regs = gdb_registers(sec[f"regs{t}"])
        assert (regs["pswm"], regs["pswa"], regs["pc"]) == (cpu["pswm"], cpu["pswa"], cpu["pswa"])
        assert [regs[f"r{i}"] for i in range(16)] == cpu["gprs"], f"thread {t}"
        assert [regs[f"acr{i}"] for i in range(16)] == cpu["acrs"], f"thread {t}"
        assert [regs[f"f{i}"] for i in range(16)] == cpu["fprs"], f"thread {t}"
        assert regs["fpc"] == cpu["fpc"]
        assert gdb_frames(sec[f"bt{t}"])[0][1] == cpu["function"]

    # the crashed CPU (the one drgn's crashed thread ran on, CPU 1 = thread 2):
    # pcpu_delegate <- smp_call_ipl_cpu <- machine_kexec <- __crash_kexec <- panic <- sysrq ...
    # drgn's frames in order; gdb shows one more, machine_kexec, a virtual
    # frame it makes from DWARF call-site data for the tail call
    # "jg smp_call_ipl_cpu" that ends machine_kexec (drgn and crash skip it)
    crashed = next(t for t, c in enumerate(expected.cpus, 1) if c["function"] == expected.stack_functions[0])
    frames = gdb_frames(sec[f"bt{crashed}"])
    names = [f for _, f in frames]
    assert is_subsequence(expected.stack_functions, names), (names, expected.stack_functions)
    assert names[-1] == expected.stack_functions[-1] == "system_call"
    # gdb unwinds to the same return addresses panic()'s Call Trace printed
    # (an inlined frame shares the pc of the frame above it)
    groups: list[tuple[int, list[str]]] = []
    for pc, name in frames:
        if pc is None and groups:
            groups[-1][1].append(name)
        else:
            groups.append((pc, [name]))
    for addr, func in expected.call_trace:
        assert any(pc == addr and func in fs for pc, fs in groups), (hex(addr), func, groups)


def test_zgetdump_info_equals_the_kernels_vmcore(vmcore, expected):
    """
    s390-tools' zgetdump (s390x build under qemu-user) describes /mnt/vmcore
    exactly as it describes the real /proc/vmcore: format, CPU count, memory
    map, and the kernel release it reads from memory through VMCOREINFO's
    init_uts_ns.
    """
    zgetdump = require_s390x("zgetdump")
    env = dict(os.environ, TZ="UTC")
    ours = run(zgetdump + ["-i", vmcore], env=env)
    kernel = run(zgetdump + ["-i", unpack_fixture("kdump-1g", "proc-vmcore.elf")], env=env)
    assert ours.stdout + ours.stderr == kernel.stdout + kernel.stderr
    info = ours.stdout + ours.stderr
    assert "Dump format........: elf" in info
    assert f"CPU count (online).: {len(expected.cpus)}" in info
    assert f"UTS kernel release.: {expected.release}" in info


def test_vmcore_dmesg(vmcore_dmesg_output, expected):
    lines = vmcore_dmesg_output.splitlines()
    assert len(lines) == expected.dmesg_count
    # the tail drgn read from the real /proc/vmcore, timestamps included: the
    # sysrq crash message, the panic and its Call Trace
    assert lines[-len(expected.dmesg_tail):] == expected.dmesg_tail
    text = [re.sub(r"^\[\s*\d+\.\d+\] ", "", l) for l in lines]
    assert "sysrq: Trigger a crash" in text
    assert "Kernel panic - not syncing: sysrq triggered crash" in text
    # every message the crashed kernel put on its console, in order (the log
    # also has the lower-level lines that did not reach the console)
    assert text[0] == expected.banner
    assert is_subsequence(expected.console_kernel, text), \
        [l for l in expected.console_kernel if l not in text]


DRGN_SCRIPT = r"""
import json, sys, drgn
from drgn.helpers.linux.pid import for_each_task
from drgn.helpers.linux.printk import get_dmesg
prog = drgn.Program()
prog.set_core_dump(sys.argv[1])
prog.load_debug_info([sys.argv[2]])
dmesg = get_dmesg(prog).decode().splitlines()
tasks = sorted((t.pid.value_(), t.comm.string_().decode()) for t in for_each_task(prog))
thread = prog.crashed_thread()
print(json.dumps({
    "version": drgn.__version__,
    "arch": prog.platform.arch.name,
    "release": prog["UTS_RELEASE"].string_().decode(),
    "dmesg": dmesg,
    "tasks": tasks,
    "crashed_tid": thread.tid,
    "stack": str(thread.stack_trace()).splitlines(),
    "libkdumpfile": drgn._with_libkdumpfile,
}))
"""


def drgn_report(core, vmlinux) -> dict:
    try:
        import drgn  # noqa: F401
    except ImportError:
        missing_tool("drgn is not installed in this Python (PyPI drgn, the test extra)")
    return json.loads(run([sys.executable, "-c", DRGN_SCRIPT, core, vmlinux], timeout=300).stdout)


def check_drgn_report(rep: dict, expected: Expected) -> None:
    assert rep["arch"].lower() == expected.platform_arch == "s390x"
    assert rep["release"] == expected.release
    assert len(rep["dmesg"]) == expected.dmesg_count
    assert rep["dmesg"][-len(expected.dmesg_tail):] == expected.dmesg_tail
    assert [tuple(t) for t in rep["tasks"]] == expected.tasks
    assert rep["crashed_tid"] == expected.crashed_tid
    assert rep["stack"] == expected.stack_lines


def test_drgn(vmcore, vmlinux, expected):
    check_drgn_report(drgn_report(vmcore, vmlinux), expected)


def test_makedumpfile(vmcore, compressed_dump, vmcore_dmesg_output, vmlinux, expected, tmp_path):
    mdf = require_s390x("makedumpfile")
    out, res = compressed_dump
    assert "makedumpfile Completed." in res.stdout + res.stderr
    with open(out, "rb") as f:
        assert f.read(8) == b"KDUMP   "  # kdump-compressed format
    # -d 31 dropped zero, cache, user and free pages: far smaller than /vmcore
    assert 0 < out.stat().st_size < os.stat(vmcore).st_size // 20

    # --dump-dmesg of /mnt/vmcore gives the same log as vmcore-dmesg
    run(mdf + ["--dump-dmesg", vmcore, tmp_path / "dmesg.txt"])
    assert (tmp_path / "dmesg.txt").read_text() == vmcore_dmesg_output
    # ... and so does the compressed dump
    run(mdf + ["--dump-dmesg", out, tmp_path / "dmesg2.txt"])
    assert (tmp_path / "dmesg2.txt").read_text() == vmcore_dmesg_output

    # drgn opens the kdump-compressed file (its wheel links libkdumpfile) and
    # sees what it sees in the real /proc/vmcore
    rep = drgn_report(out, vmlinux)
    assert rep["libkdumpfile"]
    check_drgn_report(rep, expected)


def crash_version(crash: list[str]) -> tuple[int, ...]:
    out = run(crash + ["--version"]).stdout
    return tuple(int(x) for x in re.search(r"crash (\d+)\.(\d+)\.(\d+)", out).groups())


def test_crash(vmcore, vmlinux, vmcore_dmesg_output, expected, tmp_path):
    crash = require_s390x("crash")
    cmds = {"sys": "sys", "bt": "bt", "log": "log", "ps": "ps",
            "tasks": "list task_struct.tasks -s task_struct.pid,comm -h init_task"}
    script = tmp_path / "crash.cmds"
    script.write_text("".join(f"{c} > {tmp_path / name}\n" for name, c in cmds.items()) + "quit\n")
    res = run(crash + ["-s", "-i", script, vmlinux, vmcore], timeout=900, cwd=tmp_path,
              env=dict(os.environ, TZ="UTC"))
    got = {name: (tmp_path / name).read_text() for name in cmds}

    # sys: the crashed kernel, its CPUs, memory (console.log: 1024MB), panic
    # message and crash time (VMCOREINFO CRASHTIME)
    sys_ = dict(re.findall(r"^\s*([A-Z][A-Z ]*): (.*)$", got["sys"], re.M))
    assert sys_["RELEASE"] == expected.release
    assert expected.banner.endswith(sys_["VERSION"])
    assert sys_["MACHINE"].split()[0] == expected.platform_arch
    assert int(sys_["CPUS"]) == len(expected.cpus)
    assert "maximum memory size is 1024MB" in "\n".join(expected.console_kernel)
    assert sys_["MEMORY"] == "1 GB"
    panic = next(re.sub(r"^\[\s*\d+\.\d+\] ", "", l) for l in expected.dmesg_tail if "Kernel panic" in l)
    assert sys_["PANIC"] == f'"{panic}"'
    date = datetime.datetime.strptime(sys_["DATE"], "%a %b %d %H:%M:%S UTC %Y")
    assert date.replace(tzinfo=datetime.timezone.utc).timestamp() == expected.crashtime

    # bt: the panic task on the crashed CPU, its lowcore registers, and the
    # frames with panic()'s Call Trace addresses
    bt = got["bt"]
    cpu = next(c for c in expected.cpus if c["function"] == expected.stack_functions[0])
    head = re.search(r'PID: (\d+)\s+TASK: \w+\s+CPU: (\d+)\s+COMMAND: "([^"]+)"', bt)
    assert int(head.group(1)) == expected.crashed_tid
    assert (int(head.group(1)), head.group(3)) in expected.tasks
    assert int(head.group(2)) == cpu["note"]  # the crashed CPU (console: "CPU: 1 PID: 1 Comm: init")
    psw = re.search(r"-psw\s+: 0x([0-9a-f]+) 0x([0-9a-f]+)", bt)
    assert (int(psw.group(1), 16), int(psw.group(2), 16)) == (cpu["pswm"], cpu["pswa"])
    assert re.search(r"-function : (\w+) at", bt).group(1) == cpu["function"]
    gprs = re.search(r"-general registers:\n(.*?)\n\s+-access", bt, re.S).group(1)
    assert [int(x, 16) for x in gprs.split()] == cpu["gprs"]
    frames = [(f, int(a, 16)) for f, a in re.findall(r"^\s*#\d+ \[[0-9a-f]+\] (\w+) at ([0-9a-f]+)$", bt, re.M)]
    assert is_subsequence([f for f, _ in frames], expected.stack_functions), frames
    for addr, func in expected.call_trace:
        assert (func, addr) in frames, (func, hex(addr), frames)
    user = re.search(r"PSW:\s+[0-9a-f]+ ([0-9a-f]+) \(user space\)", bt)
    assert int(user.group(1), 16) == expected.stack_user_pc

    # log: the same kernel log as vmcore-dmesg
    assert got["log"] == vmcore_dmesg_output

    # ps: the tasks running when the kernel crashed, marked ">", init on CPU 1
    rows = re.findall(r"^([> ])\s+(\d+)\s+(\d+)\s+(\d+)\s+[0-9a-f]+\s+\w+.*\s(\S+)$", got["ps"], re.M)
    assert rows, got["ps"]
    active = {(int(pid), comm.strip("[]"), int(cpu_)) for mark, pid, _, cpu_, comm in rows if mark == ">"}
    assert (expected.crashed_tid, dict(expected.tasks)[expected.crashed_tid], cpu["note"]) in active
    ps_tasks = {(int(pid), comm) for _, pid, _, _, comm in rows if int(pid) != 0}
    assert ps_tasks <= set(expected.tasks)
    if crash_version(crash) >= (8, 0, 4):
        assert ps_tasks == set(expected.tasks)
    # crash < 8.0.4 (Debian 12 has 8.0.2) reads struct pid without its
    # numbers[] flexible array (crash commit 8858006, "Fix failure of gathering
    # task table on Linux 6.5-rc1 and later"; the 6.1.y stable kernel has that
    # change too): its PID table holds only the active tasks, and it says
    # "active task ... not found in PID hash". The task list itself is intact:
    tasks = re.findall(r"^\s+pid = (\d+),\n\s+comm = \"([^\"\\]*)", got["tasks"], re.M)
    assert [(int(p), c) for p, c in tasks] == [(0, "swapper/0")] + expected.tasks
    assert "crash: " not in res.stdout + res.stderr, res.stdout + res.stderr


LIBKDUMPFILE_SCRIPT = r"""
import json, sys, kdumpfile
k = kdumpfile.kdumpfile(sys.argv[1])
rep = {"format": k.attr["file.format"], "arch": k.attr["arch.name"],
       "release_from_vmcoreinfo": k.attr["linux.uts.release"], "cpus": []}
for i in range(k.attr["cpu.number"]):
    regs = k.attr["cpu.%d.reg" % i]
    rep["cpus"].append({"pid": k.attr["cpu.%d.pid" % i], **{r: regs[r] for r in regs.keys()}})
rep["vmcoreinfo"] = bytes(k.attr["linux.vmcoreinfo.raw"]).decode()
# the OS: Linux; this runs libkdumpfile's s390x lowcore probe and reads
# init_uts_ns through its s390x page-table translation
k.attr["addrxlat.ostype"] = "linux"
rep["ostype"] = k.attr["addrxlat.ostype"]
rep["uts"] = {key: k.attr["linux.uts"][key] for key in k.attr["linux.uts"].keys()}
print(json.dumps(rep))
"""


def libkdumpfile_report(core) -> dict:
    python = "/usr/bin/python3"
    if run([python, "-c", "import kdumpfile"], ok=False).returncode != 0:
        missing_tool("python3-libkdumpfile is missing for /usr/bin/python3")
    return json.loads(run([python, "-c", LIBKDUMPFILE_SCRIPT, core]).stdout)


@pytest.mark.parametrize("which", ["vmcore", "makedumpfile"])
def test_libkdumpfile(which, request, expected):
    if which == "vmcore":
        core, fmt = request.getfixturevalue("vmcore"), "elf"
    else:
        core, fmt = request.getfixturevalue("compressed_dump")[0], "diskdump"
    rep = libkdumpfile_report(core)
    assert rep["format"] == fmt
    assert rep["arch"] == expected.platform_arch == "s390x"
    assert rep["ostype"] == "linux"
    assert rep["uts"]["sysname"] == "Linux"
    assert rep["uts"]["release"] == rep["release_from_vmcoreinfo"] == expected.release
    assert rep["uts"]["machine"] == "s390x"
    assert expected.banner.endswith(rep["uts"]["version"])
    assert dict(l.split("=", 1) for l in rep["vmcoreinfo"].splitlines()) == expected.vmcoreinfo
    assert len(rep["cpus"]) == len(expected.cpus)
    for got, cpu in zip(rep["cpus"], expected.cpus):
        assert got["pid"] == cpu["pid"]
        assert (got["pswm"], got["pswa"]) == (cpu["pswm"], cpu["pswa"])
        assert [got[f"r{i}"] for i in range(16)] == cpu["gprs"]
        assert [got[f"a{i}"] for i in range(16)] == cpu["acrs"]


def test_makedumpfile_on_an_unreadable_page(tmp_path):
    """
    makedumpfile maps /vmcore (as /proc/vmcore) by default: a page the mount
    cannot read (a store I/O error) stops it with SIGBUS, never with zeros in
    the dump; with --non-mmap it reads with read(), gets EIO and says so.
    """
    mdf = require_s390x("makedumpfile")
    require_fuse()
    desc = describe_kdump_fixture(tmp_path)
    # old 0x100000 (the kernel's text, kept by every dump level) lies at
    # 0x34100000 in the image: the crashkernel swap
    (tmp_path / "faults.toml").write_text("[[fault]]\naddress = 0x34100000\nsize = 4096\n")
    desc.write_text(desc.read_text().replace("[store]\n", '[store]\nfaults_file = "faults.toml"\n'))
    (tmp_path / "mnt").mkdir()
    m = Mount(str(desc), tmp_path / "mnt")
    try:
        vmcore = m.path("vmcore")
        res = run(mdf + ["-d", "31", "-c", vmcore, tmp_path / "mmap.kdump"], ok=False, timeout=600)
        assert "makedumpfile Completed." not in res.stdout + res.stderr
        assert res.returncode in (-7, 128 + 7), (res.returncode, res.stderr[-2000:])  # SIGBUS (7 on x86 and s390x)
        res = run(mdf + ["--non-mmap", "-d", "31", "-c", vmcore, tmp_path / "read.kdump"], ok=False, timeout=600)
        out = res.stdout + res.stderr
        assert res.returncode == 1 and "makedumpfile Failed." in out, (res.returncode, out[-2000:])
        assert "Can't read the dump memory" in out and "Input/output error" in out, out[-2000:]
        m.unmount()
    finally:
        m.cleanup()
