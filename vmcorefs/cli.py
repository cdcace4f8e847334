# SPDX-License-Identifier: MIT
"""
The command line
----------------

The ``vmcorefs.cli`` module is the ``vmcorefs`` command: ``mount``,
``demo``, ``umount``, ``info``, ``check``, ``save`` and ``emulate``, and
mount(8)'s helper convention ``vmcorefs SOURCE MOUNTPOINT -o OPTIONS`` (what
``mount.fuse3`` runs for ``mount -t fuse.vmcorefs``).

It uses the standard library's :mod:`argparse` on purpose: a dump
environment (a zfcpdump or kdump initramfs) should carry as little as
possible, and argparse gives everything needed here (sub-commands,
``--help`` with an example for every command, typed options) without a
dependency; click or typer would add one for no gain, and shell completion
comes as a static script (``contrib/completion/``) rather than argcomplete.
The same parser feeds the man page (``contrib/manpage.py`` writes ``doc/vmcorefs.1``).

Every error the user can cause is printed as one line starting with
``vmcorefs:`` that says what to do next, with a non-zero exit status;
tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from . import __version__
from .errors import InputError, VmcorefsError
from .layouts import DEFAULT_HSA_SIZE

__all__ = ("main",)

log = logging.getLogger("vmcorefs")

# dump.MODES: importing vmcorefs.dump (and trio) costs most of a second, too much for every --help;
# tests/test_t7_cli.py checks that the two are the same
MODES = ("auto", "kdump", "standalone")

EPILOG = """\
examples:
  vmcorefs demo /mnt/dump                    mount the built-in demo machine
  vmcorefs info demo                         memory, CPUs, mode, kernel release
  vmcorefs save /mnt/dump dump.elf           save /vmcore: sparse, SHA-256, resumable
  vmcorefs umount /mnt/dump
  vmcorefs emulate mem.raw --cpus-json cpus.json -o machine.toml
  vmcorefs mount machine.toml /mnt/dump      mount a machine description
  cat /mnt/dump/meminfo/summary              what the crashed kernel left
  vmcorefs check machine.toml                kdump or stand-alone? (exit 0/1/2)
  vmcorefs save machine.toml dump.elf        save without mounting
  mount -t fuse.vmcorefs machine.toml /mnt/dump -o allow_other   (as root, see mount.vmcorefs)

'vmcorefs COMMAND --help' shows each command's options and examples.
"""

# mount(8) and fstab words that mean nothing to a read-only FUSE file system
# of regular files, or that libfuse's mount.fuse3 adds ("dev", "suid")
IGNORED_MOUNT_OPTIONS = frozenset({
    "ro", "rw", "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "nofail",
    "_netdev", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime",
    "norelatime", "strictatime", "nostrictatime", "diratime", "nodiratime", "lazytime", "nolazytime",
    "sync", "async", "dirsync", "silent", "loud", "default_permissions",
})


def parse_size(text: str) -> int:
    """Parse ``4096``, ``0x1000``, ``32M``, ``1G``, ``2T``."""
    m = re.fullmatch(r"\s*(0[xX][0-9a-fA-F]+|\d+)\s*([kKmMgGtT]?)(i?[bB]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use e.g. 4096, 0x1000, 32M, 1G)")
    value = int(m.group(1), 0)
    shift = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}[m.group(2).lower()]
    return value << shift


def parse_range(text: str) -> tuple[int, int]:
    """Parse ``START:SIZE``."""
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"not a range: {text!r} (use START:SIZE, e.g. 0:256M)")
    a, b = text.split(":", 1)
    return parse_size(a), parse_size(b)


def _mount_options(values: list[str] | None) -> dict:
    """
    Parse ``-o`` values: vmcorefs' own options (``allow_other``,
    ``allow_root``, ``max_read=N``, ``fsname=``, ``mode=``, ``log=``,
    ``live``, ``direct_io``), and
    the words mount(8), fstab and mount.fuse3 pass, which are ignored.
    """
    opts: dict = {"fuse": []}
    for value in values or []:
        for item in filter(None, value.split(",")):
            key, _, arg = item.partition("=")
            if item == "allow_other":
                opts["allow_other"] = True
            elif item in IGNORED_MOUNT_OPTIONS or item.startswith(("x-", "comment=", "context=")):
                continue  # vmcorefs is always read-only; x-systemd.* and comments are for others
            elif item == "allow_root" or key in ("max_read", "fsname"):
                opts["fuse"].append(item)
            elif key == "mode" and arg in MODES:
                opts["mode"] = arg
            elif key == "log" and arg:
                opts["log"] = arg
            elif item in ("live", "direct_io"):
                opts[item] = True
            else:
                raise InputError(f"unknown mount option {item!r} (vmcorefs knows allow_other, allow_root, "
                                 "max_read=N, mode=auto|kdump|standalone, log=FILE, live, direct_io)")
    return opts


def cmd_mount(args) -> int:
    from .mount import mount
    options = _mount_options(args.options)
    mode = options.pop("mode", None) or args.mode
    log_file = options.pop("log", None) or args.log
    if getattr(args, "live", False):
        options["live"] = True
    return mount(args.source, args.mountpoint, mode=mode, foreground=args.foreground,
                 options=options, log_file=log_file, debug=args.debug)


def cmd_demo(args) -> int:
    args.source = "demo"
    return cmd_mount(args)


def cmd_umount(args) -> int:
    from .mount import unmount
    return unmount(args.mountpoint, lazy=args.lazy)


async def _open_dump(source: str, mode: str):
    from .dump import Dump
    from .sources import open_source
    if os.path.isdir(source):
        hint = (f"; for the dump mounted there read {source}/meminfo/summary" if os.path.ismount(source)
                else "")
        raise InputError(f"{source} is a directory: give a machine description, 'demo' or a dump file{hint}")
    machine = open_source(source)
    try:
        return await Dump.open(machine, mode)
    except BaseException:
        machine.close()
        raise


def cmd_check(args) -> int:
    import trio
    try:
        dump = trio.run(_open_dump, args.source, "auto")
    except InputError as exc:
        print(f"vmcorefs: {exc}", file=sys.stderr)
        print("decision: unusable input")
        return 2
    rep = dump.report
    for c in rep.checks:
        print(c.line())
    print(f"vmcoreinfo: {rep.vmcoreinfo_source}")
    if dump.mode == "kdump":
        print(f"decision: kdump ({dump.why})")
        return 0
    if dump.machine.is_live:
        print(f"decision: live system, dumped as it is ({dump.why})")
        return 1
    print(f"decision: stand-alone dump ({dump.why})")
    return 1


def cmd_info(args) -> int:
    import trio

    from .report import info_text
    from .views.vmcore import build_vmcore

    async def run():
        dump = await _open_dump(args.source, args.mode)
        try:
            vmcore = build_vmcore(dump)
            return info_text(dump, vmcore.size, args.source)
        finally:
            dump.machine.close()
    sys.stdout.write(trio.run(run))
    return 0


def cmd_save(args) -> int:
    from .save import save
    if args.progress is None and args.quiet:
        args.progress = False
    sha_file = args.sha256_file
    if sha_file is True:
        if args.out == "-":
            raise InputError("--sha256-file needs a name when the dump goes to standard output")
        sha_file = args.out + ".sha256"
    return save(args.source, args.out, mode=args.mode, progress=args.progress, sha256_file=sha_file,
                restart=args.restart, force=args.force, state_path=args.state, chunk=args.chunk_size,
                sparse=not args.no_sparse, sync=args.sync, verify=args.verify,
                stop_after=args.stop_after, checksum=not args.no_sha256)


def cmd_emulate(args) -> int:
    from .emulate import emulate
    return emulate(args)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wrap descriptions to the terminal; keep example blocks (indented lines) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        import textwrap
        out = []
        for para in text.split("\n\n"):
            lines = para.splitlines()
            if any(ln.startswith("  ") for ln in lines) or any(ln.rstrip().endswith(":") for ln in lines[:1]):
                out.append("\n".join(indent + ln for ln in lines))
            else:
                out.append(textwrap.fill(" ".join(lines), width, initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(out)


def _examples(*lines: str) -> str:
    return "example" + ("s" if sum(not ln.startswith(("#", " ")) for ln in lines) > 1 else "") + ":\n" + \
        "".join(f"  {ln}\n" for ln in lines)


SOURCE_HELP = ("a machine description (.toml, see 'vmcorefs emulate'), 'demo' (the built-in demo "
               "machine), an s390 dump-format file, an s390x ELF core (a vmcore, QEMU dump-guest-memory "
               "output), a kdump-compressed dump (makedumpfile; flattened or split), a raw s390x memory image, "
               "/dev/mem (a live s390x system) or qmp:PATH (the QMP socket of a running QEMU s390x guest "
               "whose RAM is in a shared memory-backend-file: read in place, the guest stopped meanwhile)")


SAVE_EXIT_STATUS = """\
exit status: 0 saved; 1 an error (the message says what to do next); 3
stopped by --stop-after, 128+N stopped by signal N (130 SIGINT, 143 SIGTERM):
run the same command again to resume; 4 the partial OUT cannot be resumed
(its state file is damaged, it is of another dump, or the source changed):
nothing was written, --restart starts over.

"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmcorefs",
        description="A FUSE filesystem that presents a crashed s390x machine's memory as "
                    "/vmcore (ELF, like /proc/vmcore), /meminfo and /zcore.",
        epilog=EPILOG, formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"vmcorefs {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    common.add_argument("--debug", action="store_true", help="log everything; show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    raw = HelpFormatter

    def mount_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory")
        sp.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (Ctrl-C unmounts)")
        sp.add_argument("--mode", choices=MODES, default="auto",
                        help="auto: kdump if a valid kdump setup exists, else stand-alone (default)")
        sp.add_argument("-o", dest="options", action="append", metavar="OPTIONS",
                        help="comma-separated: allow_other (let every user read the dump), allow_root, "
                             "max_read=N, mode=MODE (as --mode), log=FILE (as --log), live (as --live), direct_io "
                             "(no page cache: every read reaches the daemon; faster one-pass copies where "
                             "filling the page cache is dear, slower re-reads); "
                             "mount(8) and fstab words (ro, noauto, nofail, ...) are accepted and ignored")
        sp.add_argument("--log", metavar="FILE", help="daemon log file (default: syslog)")
        sp.add_argument("--live", action="store_true",
                        help="SOURCE qmp:PATH: do not stop the guest while mounted (every file is read from "
                             "its changing memory; /meminfo/summary says so); as -o live")

    sp = sub.add_parser("mount", parents=[common], help="mount a machine",
                        description="Mount SOURCE on MOUNTPOINT: /vmcore, /meminfo and /zcore. Returns once "
                                    "the files are ready; the daemon serves until 'vmcorefs umount'. "
                                    "'vmcorefs SOURCE MOUNTPOINT -o OPTIONS' (the form mount.fuse3 uses for "
                                    "'mount -t fuse.vmcorefs') is the same command.",
                        epilog=_examples("vmcorefs mount machine.toml /mnt/dump && cp /mnt/dump/vmcore dump.elf",
                                         "vmcorefs mount machine.toml /mnt/dump -o allow_other --mode standalone",
                                         "vmcorefs mount -f --log /dev/stderr -v dump.s390 /mnt/dump"),
                        formatter_class=raw)
    sp.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    mount_args(sp)
    sp.set_defaults(func=cmd_mount)

    sp = sub.add_parser("demo", parents=[common], help="mount the built-in demo machine",
                        description="Mount the embedded demo machine (512 MiB, 4 CPUs, stand-alone dump).",
                        epilog=_examples("vmcorefs demo /mnt/dump && readelf -lW /mnt/dump/vmcore"),
                        formatter_class=raw)
    mount_args(sp)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("umount", parents=[common], help="unmount", aliases=["unmount"],
                        description="Unmount a vmcorefs mount (also a stale one whose daemon died).",
                        epilog=_examples("vmcorefs umount /mnt/dump",
                                         "vmcorefs umount --lazy /mnt/dump    # even while files are open"),
                        formatter_class=raw)
    sp.add_argument("mountpoint", metavar="MOUNTPOINT", help="where vmcorefs is mounted")
    sp.add_argument("-z", "--lazy", action="store_true", help="detach even if files are open")
    sp.set_defaults(func=cmd_umount)

    sp = sub.add_parser("check", parents=[common], help="kdump or stand-alone? exit 0/1/2",
                        description="Check what the crashed kernel left (os_info, checksums, crashkernel) and "
                                    "print the decision: exit 0 = a valid kdump setup exists, 1 = stand-alone "
                                    "dump only, 2 = unusable input.",
                        epilog=_examples("vmcorefs check machine.toml",
                                         "vmcorefs check machine.toml >/dev/null && echo kdump"),
                        formatter_class=raw)
    sp.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("info", parents=[common], help="describe a machine: a table",
                        description="Print a table of what a dump of SOURCE holds: kernel release, crash time, "
                                    "mode and why, memory ranges (and which are in /vmcore), crashkernel, "
                                    "CPUs with prefix and PSW.",
                        epilog=_examples("vmcorefs info demo", "vmcorefs info machine.toml --mode standalone"),
                        formatter_class=raw)
    sp.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    sp.add_argument("--mode", choices=MODES, default="auto",
                    help="the dump to describe (default auto: kdump if a valid kdump setup exists)")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser(
        "save", parents=[common], help="write the dump (/vmcore) to a file or device",
        description="Write the ELF dump to OUT: a file (sparse: all-zero 4 KiB pages become holes), a block "
                    "device, or - (standard output). SOURCE is a vmcorefs mount point or /proc/vmcore "
                    "(copied as they are), or anything 'mount' takes (then /vmcore is built here, "
                    "without FUSE). Prints the SHA-256 (sha256sum format) at the "
                    "end. An interrupted save (Ctrl-C, kill, a full disk) leaves OUT.vmcorefs-partial: "
                    "the same command resumes it after verifying what was written; a partial file that "
                    "does not verify is never continued.",
        epilog=SAVE_EXIT_STATUS + _examples("vmcorefs save /mnt/dump /var/crash/dump.elf --sha256-file",
                         "vmcorefs save machine.toml dump.elf          # no mount needed",
                         "vmcorefs save /proc/vmcore /dev/sdb --force  # a whole device",
                         "vmcorefs save demo - | ssh host 'cat > dump.elf'",
                         "cd /var/crash && sha256sum -c dump.elf.sha256   # names OUT as in its folder"),
        formatter_class=raw)
    sp.add_argument("source", metavar="SOURCE", help="a vmcorefs mount point, /proc/vmcore, or " + SOURCE_HELP)
    sp.add_argument("out", metavar="OUT", help="the file or block device to write, or - for standard output")
    sp.add_argument("--progress", action="store_true", default=None,
                    help="show progress (bytes, throughput, ETA) on stderr even when it is not a terminal")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress, even on a terminal")
    sp.add_argument("--sha256-file", nargs="?", const=True, metavar="FILE",
                    help="also write the SHA-256 in sha256sum format to FILE (default OUT.sha256)")
    sp.add_argument("--force", action="store_true", help="overwrite an existing OUT (needed for a block device)")
    sp.add_argument("--restart", action="store_true",
                    help="discard the partial save of OUT and start over")
    sp.add_argument("--state", metavar="FILE",
                    help="resume state file (default OUT.vmcorefs-partial; give one to resume a block device)")
    sp.add_argument("--mode", choices=MODES, default=None,
                    help="for a machine SOURCE: which dump to save (default auto)")
    sp.add_argument("--verify", action="store_true", help="read OUT back at the end and compare the SHA-256")
    sp.add_argument("--no-sparse", action="store_true", help="write zero pages too (no holes)")
    sp.add_argument("--sync", action="store_true",
                    help="fsync OUT before reporting success (as a dump environment that reboots next should)")
    sp.add_argument("--no-sha256", action="store_true",
                    help="no SHA-256: faster (a raw image's data is copied in the kernel with copy_file_range, "
                         "its holes skipped), but nothing to check the dump against")
    sp.add_argument("--chunk-size", type=parse_size, default=8 << 20, metavar="SIZE",
                    help="bytes per read (default 8M)")
    sp.add_argument("--stop-after", type=parse_size, default=None, help=argparse.SUPPRESS)  # tests
    sp.set_defaults(func=cmd_save)

    sp = sub.add_parser(
        "emulate", parents=[common], help="write a machine description from a memory image",
        description="Describe an emulated machine from a raw physical memory image (file offset = "
                    "absolute address) and CPU states, for 'vmcorefs mount'.",
        epilog="examples:\n"
               "  # stand-alone dump of a memory image, CPUs from a JSON file:\n"
               "  vmcorefs emulate precrash.raw --cpus-json cpus.json -o sa.toml\n"
               "  # kdump: image taken while the capture kernel ran; boot CPU from old lowcore,\n"
               "  # the other CPU's state from its prefix page in old memory:\n"
               "  vmcorefs emulate kdump.raw --environment kdump --cpu-prefix 0xd64000 -o kd.toml\n"
               "  # the same, CPU states from the vmcore the capture kernel wrote (or QEMU's dump):\n"
               "  vmcorefs emulate kdump.raw --environment kdump --cpus-from-elf vmcore.elf -o kd.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("image", help="raw physical memory image")
    sp.add_argument("-o", "--output", required=True, help="machine description to write (.toml)")
    sp.add_argument("--environment", choices=("standalone", "kdump"), default="standalone",
                    help="standalone: the image is the machine's memory, dumped through an HSA (the "
                         "crashed system's, or the capture kernel's if one was running: the swap is then "
                         "undone on mount); kdump: the image was taken while the capture kernel ran and the "
                         "capture kernel dumps it (crashkernel swapped)")
    sp.add_argument("--memory", type=parse_range, action="append", metavar="START:SIZE",
                    help="a detected memory range (repeat; default: the whole image)")
    sp.add_argument("--memory-map", metavar="FILE",
                    help="detected memory ranges from a file as /zcore/memmap writes it (START SIZE in hex, "
                         "a record a line). With more than 1000 ranges the description names such a file "
                         "(memory_map, written next to it as NAME.memmap) instead of listing them")
    sp.add_argument("--hsa-size", type=parse_size, default=DEFAULT_HSA_SIZE, help="HSA size (default 32M)")
    sp.add_argument("--sclp-latency-us", type=int, default=0, help="emulated SCLP latency per request")
    sp.add_argument("--cpus-json", metavar="FILE", help="CPU states as JSON (the fixtures' cpu-state format)")
    sp.add_argument("--save-areas", metavar="FILE", help="512-byte save areas, boot CPU first")
    sp.add_argument("--cpus-from-elf", metavar="CORE",
                    help="CPU states from the register notes of an s390x ELF core: a kernel vmcore "
                         "(/proc/vmcore) or QEMU dump-guest-memory output")
    sp.add_argument("--cpu-prefix", type=parse_size, action="append", metavar="ADDR",
                    help="a non-boot CPU whose status is at ADDR+0x1200 of old memory (repeat)")
    sp.add_argument("--vector", action="store_true", help="the machine has the vector facility")
    sp.add_argument("--crashkernel", type=parse_range, metavar="BASE:SIZE",
                    help="kdump: the crashkernel (default: from the capture kernel's parmarea)")
    sp.set_defaults(func=cmd_emulate)
    for action in p._subparsers._group_actions:  # noqa: SLF001 - one formatter for every command
        for sub_parser in action.choices.values():
            sub_parser.formatter_class = HelpFormatter
    return p


def _helper_convention(argv: list[str], commands: set[str]) -> list[str]:
    """
    Turn mount(8)'s helper call ``vmcorefs SOURCE MOUNTPOINT [-o OPTIONS]``
    (what mount.fuse3 runs for ``mount -t fuse.vmcorefs``) into ``mount``.
    """
    if len(argv) >= 2 and argv[0] not in commands and not argv[0].startswith("-"):
        return ["mount"] + argv
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = set()
    for action in parser._subparsers._group_actions:  # noqa: SLF001 - the sub-command names
        commands |= set(action.choices)
    args = parser.parse_args(_helper_convention(argv, commands))
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="vmcorefs: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except VmcorefsError as exc:
        if args.debug:
            raise
        print(f"vmcorefs: {exc}", file=sys.stderr)
        return 2 if args.command == "check" else exc.exit_status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (vmcorefs info | head): not an error worth a traceback
        try:
            sys.stdout = None
        finally:
            return 141
    except Exception as exc:  # a bug: still one line, the traceback with --debug
        if args.debug:
            raise
        print(f"vmcorefs: internal error: {type(exc).__name__}: {exc} (run again with --debug for the "
              "traceback, and please report it)", file=sys.stderr)
        return 70


def run() -> None:
    sys.exit(main())
