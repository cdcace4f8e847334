# SPDX-License-Identifier: MIT
"""
The man page
------------

The ``vmcorefs.manpage`` module writes ``vmcorefs(1)`` in roff from the
same sources as ``--help`` and the README: the commands, options and
examples come from the argparse parser (:func:`vmcorefs.cli.build_parser`),
the prose (what vmcorefs is, the mounted tree, machine descriptions,
security, limits) from sections of ``README.rst``. Nothing is written twice::

    python -m vmcorefs.manpage > doc/vmcorefs.1      # or: -o doc/vmcorefs.1
    man -l doc/vmcorefs.1

Only the reStructuredText that README.rst uses is understood: paragraphs,
literal blocks (``::``), definition lists, bullet lists, simple tables and
inline literals; anything else is kept as plain text.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys

from . import __version__

__all__ = ("build", "main", "rst_to_roff")

README_SECTIONS = [  # (README title, man page section)
    ("The mounted tree", "THE MOUNTED TREE"),
    ("How the files map to the kernel", "HOW THE FILES MAP TO THE KERNEL"),
    ("Machine descriptions", "MACHINE DESCRIPTIONS"),
    ("Saving a dump", "SAVING A DUMP"),
    ("Mounting with mount(8) and fstab", "MOUNTING WITH MOUNT(8) AND FSTAB"),
    ("A dump environment", "A DUMP ENVIRONMENT"),
    ("Security", "SECURITY"),
    ("Limits", "LIMITS"),
]

SEE_ALSO = ["mount(8)", "mount.fuse3(8)", "fusermount3(1)", "fstab(5)", "crash(8)", "makedumpfile(8)",
            "zgetdump(8)", "readelf(1)", "gdb(1)", "drgn(1)"]


def _default_readme() -> str | None:
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.rst")
    return path if os.path.exists(path) else None


# --------------------------------------------------------------------------
# roff


def esc(text: str) -> str:
    """Escape text for roff (backslashes, hyphens of options, a leading dot or quote)."""
    text = text.replace("\\", "\\e")
    text = re.sub(r"(?<![\w])-(?=[\w-])", r"\\-", text)  # -o, --help, and the minus of -1
    return text


def _line(text: str) -> str:
    """One roff text line: no request character at its start."""
    return "\\&" + text if text.startswith((".", "'")) else text


def inline(text: str) -> str:
    """Escape *text* and turn RST inline markup into fonts."""
    out = []
    pos = 0
    for m in re.finditer(r"``(.+?)``|(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])|`([^`<]+?)\s*<([^>]+)>`_+|`([^`]+)`_*",
                         text):
        out.append(esc(text[pos:m.start()]))
        if m.group(1) is not None:
            out.append("\\fB" + esc(m.group(1)) + "\\fR")
        elif m.group(2) is not None:
            out.append("\\fI" + esc(m.group(2)) + "\\fR")
        elif m.group(3) is not None:
            out.append(esc(m.group(3)) + " (" + esc(m.group(4)) + ")")
        else:
            out.append(esc(m.group(5)))
        pos = m.end()
    out.append(esc(text[pos:]))
    return "".join(out)


def _literal(lines: list[str]) -> list[str]:
    body = [ln for ln in lines]
    while body and not body[-1].strip():
        body.pop()
    indent = min((len(ln) - len(ln.lstrip()) for ln in body if ln.strip()), default=0)
    out = [".RS 4", ".nf"]
    for ln in body:
        out.append(_line(esc(ln[indent:].rstrip())) if ln.strip() else "")
    out += [".fi", ".RE"]
    return out


def _table(lines: list[str]) -> list[str]:
    """A simple RST table: the first column becomes a tag, the others its text."""
    border = next(ln for ln in lines if re.fullmatch(r"[= ]+", ln.strip()))
    starts = [m.start() for m in re.finditer(r"=+", border)]
    rows: list[list[str]] = []
    for ln in lines:
        if re.fullmatch(r"[= ]*", ln.strip()):
            continue
        cells = []
        for i, s in enumerate(starts):
            e = starts[i + 1] if i + 1 < len(starts) else len(ln)
            cells.append(ln[s:e].strip())
        if rows and not cells[0]:  # continuation line
            rows[-1] = [(a + " " + b).strip() for a, b in zip(rows[-1], cells)]
        else:
            rows.append(cells)
    out = []
    for cells in rows:
        out += [".TP", _line(inline(cells[0])), _line(inline(" ".join(c for c in cells[1:] if c)))]
    return out


def rst_to_roff(text: str) -> list[str]:
    """Return roff lines for a piece of README.rst (see the module docs for what is understood)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    n = len(lines)

    def block(start: int) -> int:
        """Index after the paragraph starting at *start* (up to a blank line)."""
        j = start
        while j < n and lines[j].strip():
            j += 1
        return j

    def indented(start: int, minimum: int) -> int:
        """Index after the indented block starting at *start* (blank lines inside allowed)."""
        j = start
        while j < n and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) >= minimum):
            j += 1
        return j

    while i < n:
        ln = lines[i]
        if not ln.strip():
            i += 1
            continue
        # sub-section title
        if i + 1 < n and lines[i + 1].strip() and re.fullmatch(r"([-~^=])\1+", lines[i + 1].strip()) \
                and len(lines[i + 1].strip()) >= len(ln.strip()):
            out.append(".SS " + '"' + inline(ln.strip()).replace('"', "'") + '"')
            i += 2
            continue
        # simple table
        if re.fullmatch(r"=+( +=+)+", ln.strip()):
            j = i + 1
            borders = 1
            while j < n and borders < 3:
                if re.fullmatch(r"=+( +=+)+", lines[j].strip()):
                    borders += 1
                j += 1
            out += _table(lines[i:j])
            i = j
            continue
        # bullet list item
        if re.match(r"[-*] ", ln):
            j = i + 1
            while j < n and lines[j].strip() and lines[j].startswith("  "):
                j += 1
            out += [".IP \\(bu 2", _line(inline(" ".join(x.strip() for x in [ln[2:]] + lines[i + 1:j])))]
            i = j
            continue
        # definition list: a term, its text indented below
        if not ln.startswith(" ") and i + 1 < n and lines[i + 1].startswith(" ") and lines[i + 1].strip():
            j = indented(i + 1, 2)
            out += [".TP", _line(inline(ln.strip()))]
            out += rst_to_roff("\n".join(x[4:] if x.startswith("    ") else x.strip() for x in lines[i + 1:j])) \
                or []
            i = j
            continue
        # paragraph, maybe introducing a literal block
        j = block(i)
        para = " ".join(x.strip() for x in lines[i:j])
        literal = para.endswith("::")
        if literal:
            para = para[:-2].rstrip()
            para = para + ":" if para and not para.endswith(":") else para
        if para:
            out += [".PP", _line(inline(para))]
        i = j
        if literal:
            while i < n and not lines[i].strip():
                i += 1
            k = indented(i, 1)
            out += _literal(lines[i:k])
            i = k
    # a .TP body that starts with .PP would reset the indent: drop those
    cleaned = []
    for k, ln in enumerate(out):
        if ln == ".PP" and k >= 2 and out[k - 2] == ".TP":
            continue
        cleaned.append(ln)
    return cleaned


def readme_sections(path: str | None) -> dict[str, str]:
    """Return README.rst's top-level sections by title ("" is the text before the first one)."""
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    sections: dict[str, list[str]] = {"": []}
    current = ""
    i = 0
    while i < len(lines):
        ln = lines[i]
        if i + 1 < len(lines) and ln.strip() and re.fullmatch(r"=+", lines[i + 1].strip() or "x") \
                and len(lines[i + 1].strip()) >= len(ln.strip()) and not (i > 0 and re.fullmatch(r"=+", lines[i - 1])):
            current = ln.strip()
            sections.setdefault(current, [])
            i += 2
            continue
        if re.fullmatch(r"=+", ln) and i + 2 < len(lines) and re.fullmatch(r"=+", lines[i + 2]):
            i += 3  # the document title
            continue
        sections[current].append(ln)
        i += 1
    return {k: "\n".join(v).strip("\n") for k, v in sections.items()}


# --------------------------------------------------------------------------
# the page


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser, str]]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    seen: set[int] = set()
    out = []
    helps = {ca.dest: ca.help for ca in action._choices_actions}  # noqa: SLF001
    for name, sp in action.choices.items():
        if id(sp) in seen:
            continue
        seen.add(id(sp))
        out.append((name, sp, helps.get(name) or ""))
    return out


COMMON = {"-h", "--help", "-v", "--verbose", "--debug"}


def _synopsis(name: str, sp: argparse.ArgumentParser) -> str:
    """``vmcorefs NAME [OPTIONS] ARGS`` in roff, required options spelled out."""
    parts = [f"\\fBvmcorefs {esc(name)}\\fR"]
    if any(a.option_strings and not a.required for a in sp._actions  # noqa: SLF001
           if a.help != argparse.SUPPRESS and not COMMON & set(a.option_strings)):
        parts.append("[\\fIOPTIONS\\fR]")
    for a in sp._actions:  # noqa: SLF001
        if a.option_strings and a.required:
            parts.append(f"\\fB{esc(a.option_strings[0])}\\fR \\fI{esc(a.metavar or a.dest.upper())}\\fR")
    for a in sp._actions:  # noqa: SLF001
        if not a.option_strings:
            parts.append(f"\\fI{esc(a.metavar or a.dest.upper())}\\fR")
    return " ".join(parts)


def _options(sp: argparse.ArgumentParser, skip: set[str] = COMMON) -> list[str]:
    out = []
    for a in sp._actions:  # noqa: SLF001
        if a.help == argparse.SUPPRESS or skip & set(a.option_strings):
            continue
        if a.option_strings:
            names = ", ".join(a.option_strings)
            if a.nargs != 0:
                metavar = a.metavar or (a.dest.upper() if not a.choices else "{" + ",".join(a.choices) + "}")
                names += " [" + metavar + "]" if a.nargs == "?" else " " + metavar
            tag = "\\fB" + names.replace("\\", "\\e").replace("-", "\\-") + "\\fR"
        else:
            tag = "\\fI" + esc(a.metavar or a.dest.upper()) + "\\fR"
        out += [".TP", tag, _line(esc(a.help or ""))]
    return out


def _epilog(text: str | None) -> list[str]:
    if not text:
        return []
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    for ln in lines:
        if re.match(r"examples?:", ln):
            out += [".PP", "\\fBExample" + ("s" if ln.startswith("examples") else "") + ":\\fR", ".RS 4", ".nf"]
            para = None  # type: ignore[assignment]
            continue
        if para is None:
            if ln.strip():
                out.append(_line(esc(ln.strip() if ln.startswith("  ") else ln)))
            else:
                out += [".fi", ".RE"]
                para = []
        elif ln.strip():
            para.append(ln.strip())
        elif para:
            out += [".PP", _line(esc(" ".join(para)))]
            para = []
    if para is None:
        out += [".fi", ".RE"]
    elif para:
        out += [".PP", _line(esc(" ".join(para)))]
    return out


def build(readme: str | None = None, date: str | None = None) -> str:
    """Return the man page vmcorefs(1)."""
    from .cli import EPILOG, build_parser

    parser = build_parser()
    sections = readme_sections(readme if readme is not None else _default_readme())
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch else \
            datetime.datetime.now(datetime.timezone.utc)
        date = when.strftime("%Y-%m-%d")
    out = [
        '.\\" Generated by "python -m vmcorefs.manpage" from the argparse parser and README.rst;',
        '.\\" edit those, not this file.',
        f'.TH VMCOREFS 1 "{date}" "vmcorefs {__version__}" "User Commands"',
        ".SH NAME",
        "vmcorefs \\- a crashed s390x machine's memory as /vmcore, /meminfo and /zcore (FUSE)",
        ".SH SYNOPSIS",
    ]
    subs = _subcommands(parser)
    for i, (name, sp, _help) in enumerate(subs):
        if i:
            out.append(".br")
        out.append(_synopsis(name, sp))
    out += [".br", "\\fBvmcorefs\\fR \\fISOURCE MOUNTPOINT\\fR [\\fB\\-o\\fR \\fIOPTIONS\\fR]",
            ".br", "\\fBvmcorefs\\fR \\fB\\-\\-version\\fR | \\fB\\-\\-help\\fR", ".SH DESCRIPTION"]
    if sections.get(""):
        out += rst_to_roff(sections[""])
    else:
        out.append(_line(esc(parser.description or "")))
    out.append(".PP")
    out.append("Every command takes \\fB\\-h\\fR, \\fB\\-\\-help\\fR (its options and examples), "
               "\\fB\\-v\\fR, \\fB\\-\\-verbose\\fR (log what is done) and \\fB\\-\\-debug\\fR "
               "(log everything, show tracebacks). Errors are one line starting with \\(lqvmcorefs:\\(rq "
               "that says what to do next.")
    out.append(".SH COMMANDS")
    for name, sp, help_text in subs:
        out.append(f'.SS "vmcorefs {esc(name)}"')
        out.append(_line(esc(sp.description or help_text)))
        out += _options(sp)
        out += _epilog(sp.epilog)
    for title, section in README_SECTIONS:
        if sections.get(title):
            out.append(f'.SH "{section}"')
            out += rst_to_roff(sections[title])
    out += [".SH EXAMPLES"] + _epilog(EPILOG)
    out += [
        '.SH "EXIT STATUS"',
        ".TP", "0", "success; \\fBcheck\\fR: a valid kdump setup exists",
        ".TP", "1", "failure (the message says what to do next); \\fBcheck\\fR: stand-alone dump only",
        ".TP", "2", "\\fBcheck\\fR: unusable input; a usage error",
        ".TP", "3, 130, 143", "\\fBsave\\fR stopped (\\-\\-stop\\-after, SIGINT, SIGTERM): run it again to resume",
        ".SH FILES",
        ".TP", "\\fIOUT\\fB.vmcorefs\\-partial\\fR",
        "the resume state of an interrupted \\fBvmcorefs save\\fR",
        ".TP", "\\fIOUT\\fB.sha256\\fR", "the SHA\\-256 of a saved dump, for \\fBsha256sum \\-c\\fR",
        ".TP", "\\fBcontrib/mount.vmcorefs\\fR",
        "the mount(8) helper (install as /sbin/mount.vmcorefs and /sbin/mount.fuse.vmcorefs)",
        ".TP", "\\fBcontrib/vmcorefs\\-dump.sh\\fR, \\fBcontrib/vmcorefs\\-dump.service\\fR",
        "the dump step of a dump environment, and its systemd unit",
        ".TP", "\\fBcontrib/completion/vmcorefs.bash\\fR", "bash completion",
        '.SH "SEE ALSO"',
        ", ".join("\\fB" + esc(s.split("(")[0]) + "\\fR(" + s.split("(")[1] for s in SEE_ALSO),
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vmcorefs.manpage",
                                description="Write the man page vmcorefs(1) (roff) to stdout or a file.",
                                epilog="example:\n"
                                       "  python -m vmcorefs.manpage -o doc/vmcorefs.1 && man -l doc/vmcorefs.1",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", help="write here instead of stdout")
    p.add_argument("--readme", help="README.rst to take the prose from (default: the checkout's)")
    p.add_argument("--date", help="the page's date (default: $SOURCE_DATE_EPOCH or today)")
    args = p.parse_args(argv)
    text = build(args.readme, args.date)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
