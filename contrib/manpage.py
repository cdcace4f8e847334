#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
Write the man page vmcorefs(1), ``doc/vmcorefs.1``, from the same sources as
``--help`` and the README, so nothing is written twice::

    .venv/bin/python contrib/manpage.py -o doc/vmcorefs.1
    man -l doc/vmcorefs.1

The script assembles one reStructuredText document: the commands, options
and examples from the argparse parser (``vmcorefs.cli.build_parser``), the
prose (what vmcorefs is, the mounted tree, machine descriptions, security,
limits) from sections of ``README.rst``; docutils' manpage writer turns it
into roff (``--rst`` shows the document). It is a build tool of the
checkout, not part of the installed package: it imports the ``vmcorefs``
beside it and reads the ``README.rst`` beside it. docutils comes with the
``test`` extra (``pip install -e .[test]``).

The page is reproducible: its date is ``--date``, else ``$SOURCE_DATE_EPOCH``,
else the day of the last commit of its sources (README.rst, vmcorefs/, this
script), or today while they have uncommitted changes. A comment in the page
records the SHA-256 of the document (without the date), so a test can tell a
stale page from one another docutils version wrote.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's vmcorefs, the one beside README.rst

README = REPO / "README.rst"
SOURCES = ["README.rst", "vmcorefs", "contrib/manpage.py"]  # what the page is made from (for its date)

README_SECTIONS = [  # README.rst's sections on the page, in this order, under the same titles
    "The mounted tree",
    "How the files map to the kernel",
    "Machine descriptions",
    "Saving a dump",
    "Mounting with mount(8) and fstab",
    "A dump environment",
    "Security",
    "Limits",
]

SEE_ALSO = ["mount(8)", "mount.fuse3(8)", "fusermount3(1)", "fstab(5)", "crash(8)", "makedumpfile(8)",
            "zgetdump(8)", "readelf(1)", "gdb(1)", "drgn(1)"]

COMMON = {"-h", "--help", "-v", "--verbose", "--debug"}  # described once, under Description

DIGEST = re.compile(r"^\.\\\" reStructuredText SHA-256: ([0-9a-f]{64})$", re.M)


# --------------------------------------------------------------------------
# reStructuredText


def text(s: str) -> str:
    """*s* as plain reStructuredText text: no markup, references or lists in it."""
    s = re.sub(r"([\\*`|])", r"\\\1", s)
    s = re.sub(r"_(?!\w)", r"\\_", s)  # a trailing _ would make a reference
    if re.match(r"([-+*]|#\.|\d+[.)]|\.\.)(\s|$)", s):
        s = "\\" + s  # not a list item or a comment
    return s


def heading(title: str, char: str, over: bool = False) -> str:
    line = char * len(title)
    return f"{line}\n{title}\n{line}\n" if over else f"{title}\n{line}\n"


def definitions(items: list[tuple[str, str]]) -> str:
    """A definition list: (term in reStructuredText, text in reStructuredText)."""
    return "".join(f"{term}\n    {body}\n" for term, body in items)


def literal(lines: list[str]) -> str:
    return "::\n\n" + "".join(f"    {ln}\n" if ln.strip() else "\n" for ln in lines)


def readme_sections(path: Path) -> dict[str, str]:
    """README.rst's top-level sections (``=`` underlined) by title; "" is the text before the first."""
    sections: dict[str, list[str]] = {"": []}
    current = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        if re.fullmatch(r"=+", lines[i]) and i + 2 < len(lines) and lines[i + 2] == lines[i]:
            i += 3  # the document title, over- and underlined
            continue
        if lines[i].strip() and i + 1 < len(lines) and re.fullmatch(r"=+", lines[i + 1]) \
                and len(lines[i + 1]) >= len(lines[i]):
            current = lines[i]
            sections[current] = []
            i += 2
            continue
        sections[current].append(lines[i])
        i += 1
    return {title: "\n".join(body).strip("\n") for title, body in sections.items()}


def _unresolved_references(body: str, titles: set[str]) -> str:
    """`Title`_ of a README section that is not on the page: the title in italics instead."""
    norm = lambda t: " ".join(t.lower().split())  # noqa: E731 (docutils' reference names)
    known = {norm(t) for t in titles}
    return re.sub(r"`([^`<]+)`_(?!_)", lambda m: m.group(0) if norm(m.group(1)) in known else f"*{m.group(1)}*",
                  body)


# --------------------------------------------------------------------------
# the parser


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, list[str]]]:
    """(name, parser, aliases) of every command, in the parser's order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    out: list[tuple[str, argparse.ArgumentParser, list[str]]] = []
    for name, sp in action.choices.items():
        for entry in out:
            if entry[1] is sp:
                entry[2].append(name)
                break
        else:
            out.append((name, sp, []))
    return out


def _metavar(a: argparse.Action) -> str:
    if a.metavar:
        return a.metavar
    if a.choices and a.option_strings:
        return "{" + ",".join(a.choices) + "}"
    return a.dest.upper()


def _synopsis(name: str, sp: argparse.ArgumentParser) -> str:
    """``vmcorefs NAME [OPTIONS] ARGS``, required options spelled out."""
    parts = [f"**vmcorefs {name}**"]
    if any(a.option_strings and not a.required for a in sp._actions  # noqa: SLF001
           if a.help != argparse.SUPPRESS and not COMMON & set(a.option_strings)):
        parts.append("[*OPTIONS*]")
    for a in sp._actions:  # noqa: SLF001
        if a.option_strings and a.required:
            parts.append(f"**{text(a.option_strings[0])}** *{text(_metavar(a))}*")
    for a in sp._actions:  # noqa: SLF001
        if not a.option_strings:
            parts.append(f"*{text(_metavar(a))}*")
    return " ".join(parts)


def _options(sp: argparse.ArgumentParser) -> str:
    items = []
    for a in sp._actions:  # noqa: SLF001
        if a.help == argparse.SUPPRESS or COMMON & set(a.option_strings):
            continue
        if a.option_strings:
            term = ", ".join(f"**{text(o)}**" for o in a.option_strings)
            if a.nargs != 0:
                term += f" [*{text(_metavar(a))}*]" if a.nargs == "?" else f" *{text(_metavar(a))}*"
        else:
            term = f"*{text(_metavar(a))}*"
        items.append((term, text(a.help or "")))
    return definitions(items)


def _epilog(epilog: str | None, label: bool = True) -> str:
    """An epilog: its paragraphs, and its ``examples:`` (under that *label*) as a literal block."""
    out: list[str] = []
    para: list[str] = []
    example: list[str] | None = None
    for ln in (epilog or "").splitlines() + [""]:
        if example is not None:
            if ln.strip():
                example.append(ln[2:] if ln.startswith("  ") else ln)
                continue
            out.append(literal(example))
            example = None
        elif re.fullmatch(r"examples?:", ln):
            if label:
                out.append(f"**{ln[0].upper()}{ln[1:]}**\n")
            example = []
        elif ln.strip():
            para.append(ln.strip())
        elif para:
            out.append(text(" ".join(para)) + "\n")
            para = []
    return "\n".join(out)


# --------------------------------------------------------------------------
# the page


def rst(date: str) -> str:
    """Return vmcorefs(1) as one reStructuredText document."""
    from vmcorefs import __version__
    from vmcorefs.cli import EPILOG, build_parser

    parser = build_parser()
    readme = readme_sections(README)
    missing = [t for t in README_SECTIONS if t not in readme]
    if missing:
        raise SystemExit(f"contrib/manpage.py: README.rst has no section {missing[0]!r}: update README_SECTIONS")
    subs = _subcommands(parser)
    parts = [
        heading("vmcorefs", "=", over=True),
        heading("a crashed s390x machine's memory as /vmcore, /meminfo and /zcore (FUSE)", "-", over=True),
        f":Manual section: 1\n:Manual group: User Commands\n:Version: vmcorefs {__version__}\n:Date: {date}\n",
        heading("Synopsis", "="),
        "".join(f"| {_synopsis(name, sp)}\n" for name, sp, _ in subs)
        + "| **vmcorefs** *SOURCE* *MOUNTPOINT* [**-o** *OPTIONS*]\n"
        + "| **vmcorefs** **--version** \\| **--help**\n",
        heading("Description", "="),
        readme[""] + "\n",
        "Every command takes **-h**, **--help** (its options and examples), **-v**, **--verbose** (log what is "
        "done) and **--debug** (log everything, show tracebacks). Errors are one line starting with "
        "``vmcorefs:`` that says what to do next.\n",
        heading("Commands", "="),
    ]
    for name, sp, aliases in subs:
        parts.append(heading(f"vmcorefs {name}", "-"))
        also = "".join(f" (Also spelled ``vmcorefs {a}``.)" for a in aliases)
        parts.append(text(sp.description or "") + also + "\n")
        parts.append(_options(sp))
        if sp.epilog:
            parts.append(_epilog(sp.epilog))
    titles = set(README_SECTIONS)
    for title in README_SECTIONS:
        parts += [heading(title, "="), _unresolved_references(readme[title], titles) + "\n"]
    parts += [
        heading("Examples", "="),
        _epilog(EPILOG, label=False),
        heading("Exit status", "="),
        definitions([
            ("0", "success; **check**: a valid kdump setup exists"),
            ("1", "failure (the message says what to do next); **check**: stand-alone dump only"),
            ("2", "**check**: unusable input; a usage error"),
            ("3, 130, 143", "**save** stopped (--stop-after, SIGINT, SIGTERM): run it again to resume"),
            ("4", "**save**: the partial *OUT* cannot be resumed (damaged, of another dump, or the source "
                  "changed); nothing was written: **--restart** starts over"),
        ]),
        heading("Files", "="),
        definitions([
            ("*OUT*\\ **.vmcorefs-partial**", "the resume state of an interrupted **vmcorefs save**"),
            ("*OUT*\\ **.sha256**", "the SHA-256 of a saved dump, for **sha256sum -c**"),
            ("**contrib/mount.vmcorefs**",
             "the mount(8) helper (install as /sbin/mount.vmcorefs and /sbin/mount.fuse.vmcorefs)"),
            ("**contrib/vmcorefs-dump.sh**, **contrib/vmcorefs-dump.service**",
             "the dump step of a dump environment, and its systemd unit"),
            ("**contrib/completion/vmcorefs.bash**", "bash completion"),
        ]),
        heading("See also", "="),
        ", ".join("**{}**\\ ({}".format(*s.split("(")) for s in SEE_ALSO) + "\n",
    ]
    return "\n".join(parts)


def digest(document: str) -> str:
    """SHA-256 of the document without its date."""
    return hashlib.sha256(re.sub(r"^:Date: .*$", "", document, flags=re.M).encode()).hexdigest()


def _tables_as_lists(doctree) -> None:
    """
    Make each two-column table without a header (README's "The mounted tree")
    a definition list: the writer's tbl box squeezes both columns into 80
    characters, a list gives the text the width of the page.
    """
    from docutils import nodes

    for table in list(doctree.findall(nodes.table)):
        if table.next_node(nodes.tgroup)["cols"] != 2 or table.next_node(nodes.thead):
            continue
        items = []
        for row in table.findall(nodes.row):
            name, what = row.children
            term = nodes.term("", "", *(name[0].children if name.children else []))
            items.append(nodes.definition_list_item("", term, nodes.definition("", *what.children)))
        table.replace_self(nodes.definition_list("", *items))


def build(date: str | None = None) -> str:
    """Return the man page vmcorefs(1) in roff."""
    from docutils.core import publish_doctree, publish_from_doctree
    from docutils.writers import manpage

    document = rst(date or page_date())
    header = (".. Generated by contrib/manpage.py from the argparse parser (vmcorefs/cli.py) and README.rst;\n"
              "   edit those, not this file.\n\n"
              f".. reStructuredText SHA-256: {digest(document)}\n\n")
    settings = {
        "_disable_config": True,  # no docutils.conf of the user: the same page everywhere
        "halt_level": 2,  # a warning (an unknown reference, a broken table) stops the build
        "report_level": 2,
        "input_encoding": "utf-8",
        "output_encoding": "utf-8",
        "file_insertion_enabled": False,
        "raw_enabled": False,
    }
    doctree = publish_doctree(header + document, settings_overrides=settings)
    _tables_as_lists(doctree)
    return publish_from_doctree(doctree, writer=manpage.Writer(), settings_overrides=settings).decode("utf-8")


def page_date() -> str:
    """$SOURCE_DATE_EPOCH, else the last commit of the sources (today if they have changes)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime("%Y-%m-%d")
    git = ["git", "-C", str(REPO)]
    env = dict(os.environ, TZ="UTC")
    try:
        dirty = subprocess.run(git + ["status", "--porcelain", "--", *SOURCES], capture_output=True, text=True,
                               check=True).stdout.strip()
        last = subprocess.run(git + ["log", "-1", "--format=%cd", "--date=format-local:%Y-%m-%d", "--", *SOURCES],
                              capture_output=True, text=True, check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        dirty, last = "", ""  # not a git checkout
    if last and not dirty:
        return last
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="contrib/manpage.py",
        description="Write the man page vmcorefs(1) (roff) to stdout or a file.",
        epilog="example:\n  .venv/bin/python contrib/manpage.py -o doc/vmcorefs.1 && man -l doc/vmcorefs.1",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--date", help="the page's date, YYYY-MM-DD (default: $SOURCE_DATE_EPOCH, else the day of "
                                  "the last commit of its sources, today if they have changes)")
    p.add_argument("--rst", action="store_true", help="write the reStructuredText document instead of roff")
    args = p.parse_args(argv)
    from docutils.utils import SystemMessage
    try:
        page = rst(args.date or page_date()) if args.rst else build(args.date)
    except SystemMessage as e:  # the line is the document's: see it with --rst
        raise SystemExit(f"contrib/manpage.py: {e} (the document: contrib/manpage.py --rst)") from None
    if args.output:
        Path(args.output).write_text(page, encoding="utf-8")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
