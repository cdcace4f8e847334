# SPDX-License-Identifier: MIT
"""
The command line
----------------

The ``vmcorefs.cli`` module is the ``vmcorefs`` command. It uses the
standard library's :mod:`argparse` (sub-commands, help with examples, no
dependency to install in a minimal dump environment). Every error the user
can cause is printed as one line starting with ``vmcorefs:`` and a non-zero
exit status; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from . import __version__
from .errors import InputError, VmcorefsError

__all__ = ("main",)

log = logging.getLogger("vmcorefs")

EPILOG = """\
examples:
  vmcorefs demo /mnt/dump                    mount the built-in demo machine
  vmcorefs emulate mem.raw --cpus-json cpus.json -o machine.toml
  vmcorefs mount machine.toml /mnt/dump      mount a machine description
  cp /mnt/dump/vmcore dump.elf               save the ELF dump
  cat /mnt/dump/meminfo/summary              what the crashed kernel left
  vmcorefs check machine.toml                kdump or stand-alone? (exit 0/1/2)
  vmcorefs umount /mnt/dump
"""


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
    opts: dict = {"fuse": []}
    for value in values or []:
        for item in filter(None, value.split(",")):
            if item == "allow_other":
                opts["allow_other"] = True
            elif item in ("ro", "rw", "defaults", "nodev", "nosuid", "noexec", "noatime", "_netdev", "auto", "noauto"):
                continue  # fstab words; vmcorefs is always read-only
            elif item in ("allow_root",) or item.startswith(("max_read=", "fsname=")):
                opts["fuse"].append(item)
            else:
                raise InputError(f"unknown mount option {item!r} (known: allow_other, allow_root, max_read=N)")
    return opts


def cmd_mount(args) -> int:
    from .mount import mount
    return mount(args.source, args.mountpoint, mode=args.mode, foreground=args.foreground,
                 options=_mount_options(args.options), log_file=args.log, debug=args.debug)


def cmd_demo(args) -> int:
    args.source = "demo"
    return cmd_mount(args)


def cmd_umount(args) -> int:
    from .mount import unmount
    return unmount(args.mountpoint, lazy=args.lazy)


async def _open_dump(source: str, mode: str):
    from .dump import Dump
    from .mount import open_source
    machine = open_source(source)
    return await Dump.open(machine, mode)


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
    print(f"decision: stand-alone dump ({dump.why})")
    return 1


def cmd_info(args) -> int:
    import trio

    from .views.meminfo import summary_text
    dump = trio.run(_open_dump, args.source, args.mode)
    sys.stdout.write(summary_text(dump))
    return 0


def cmd_emulate(args) -> int:
    from .emulate import emulate
    return emulate(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmcorefs",
        description="A FUSE filesystem that presents a crashed s390x machine's memory as "
                    "/vmcore (ELF, like /proc/vmcore), /meminfo and /zcore.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"vmcorefs {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    common.add_argument("--debug", action="store_true", help="log everything; show tracebacks")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def mount_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("mountpoint", help="an existing directory")
        sp.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground (Ctrl-C unmounts)")
        sp.add_argument("--mode", choices=("auto", "kdump", "standalone"), default="auto",
                        help="auto: kdump if a valid kdump setup exists, else stand-alone (default)")
        sp.add_argument("-o", dest="options", action="append", metavar="OPTIONS",
                        help="comma-separated: allow_other (let every user read the dump), allow_root")
        sp.add_argument("--log", metavar="FILE", help="daemon log file (default: syslog)")

    sp = sub.add_parser("mount", parents=[common], help="mount a machine",
                        description="Mount SOURCE (a machine description, or 'demo') on MOUNTPOINT. "
                                    "Returns once the files are ready; the daemon serves until "
                                    "'vmcorefs umount'.",
                        epilog="example:\n  vmcorefs mount machine.toml /mnt/dump && cp /mnt/dump/vmcore dump.elf",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("source", help="machine description (.toml) or 'demo'")
    mount_args(sp)
    sp.set_defaults(func=cmd_mount)

    sp = sub.add_parser("demo", parents=[common], help="mount the built-in demo machine",
                        description="Mount the embedded demo machine (512 MiB, 4 CPUs, stand-alone dump).",
                        epilog="example:\n  vmcorefs demo /mnt/dump && readelf -lW /mnt/dump/vmcore",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    mount_args(sp)
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("umount", parents=[common], help="unmount", aliases=["unmount"],
                        description="Unmount a vmcorefs mount (also a stale one whose daemon died).")
    sp.add_argument("mountpoint")
    sp.add_argument("-z", "--lazy", action="store_true", help="detach even if files are open")
    sp.set_defaults(func=cmd_umount)

    sp = sub.add_parser("check", parents=[common], help="kdump or stand-alone? exit 0/1/2",
                        description="Check what the crashed kernel left (os_info, checksums, crashkernel) and "
                                    "print the decision: exit 0 = a valid kdump setup exists, 1 = stand-alone "
                                    "dump only, 2 = unusable input.")
    sp.add_argument("source")
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("info", parents=[common], help="describe a machine",
                        description="Print memory ranges, CPUs, mode, crashkernel and kernel release.")
    sp.add_argument("source")
    sp.add_argument("--mode", choices=("auto", "kdump", "standalone"), default="auto")
    sp.set_defaults(func=cmd_info)

    sp = sub.add_parser(
        "emulate", parents=[common], help="write a machine description from a memory image",
        description="Describe an emulated machine from a raw physical memory image (file offset = "
                    "absolute address) and CPU states, for 'vmcorefs mount'.",
        epilog="examples:\n"
               "  # stand-alone dump of a memory image, CPUs from a JSON file:\n"
               "  vmcorefs emulate precrash.raw --cpus-json cpus.json -o sa.toml\n"
               "  # kdump: image taken while the capture kernel ran; boot CPU from old lowcore,\n"
               "  # the other CPU's state from its prefix page in old memory:\n"
               "  vmcorefs emulate kdump.raw --environment kdump --cpu-prefix 0xd64000 -o kd.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sp.add_argument("image", help="raw physical memory image")
    sp.add_argument("-o", "--output", required=True, help="machine description to write (.toml)")
    sp.add_argument("--environment", choices=("standalone", "kdump"), default="standalone",
                    help="standalone: the image is the crashed system's memory, dumped through an HSA; "
                         "kdump: the image was taken while the capture kernel ran (crashkernel swapped)")
    sp.add_argument("--memory", type=parse_range, action="append", metavar="START:SIZE",
                    help="a detected memory range (repeat; default: the whole image)")
    sp.add_argument("--hsa-size", type=parse_size, default=32 << 20, help="HSA size (default 32M)")
    sp.add_argument("--sclp-latency-us", type=int, default=0, help="emulated SCLP latency per request")
    sp.add_argument("--cpus-json", metavar="FILE", help="CPU states as JSON (the fixtures' cpu-state format)")
    sp.add_argument("--save-areas", metavar="FILE", help="512-byte save areas, boot CPU first")
    sp.add_argument("--cpu-prefix", type=parse_size, action="append", metavar="ADDR",
                    help="a non-boot CPU whose status is at ADDR+0x1200 of old memory (repeat)")
    sp.add_argument("--vector", action="store_true", help="the machine has the vector facility")
    sp.add_argument("--crashkernel", type=parse_range, metavar="BASE:SIZE",
                    help="kdump: the crashkernel (default: from the capture kernel's parmarea)")
    sp.set_defaults(func=cmd_emulate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="vmcorefs: %(levelname)s: %(message)s")
    try:
        return args.func(args)
    except VmcorefsError as exc:
        if args.debug:
            raise
        print(f"vmcorefs: {exc}", file=sys.stderr)
        return 2 if args.command == "check" else 1
    except KeyboardInterrupt:
        return 130


def run() -> None:
    sys.exit(main())
