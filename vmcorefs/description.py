# SPDX-License-Identifier: MIT
"""
Machine descriptions
--------------------

The ``vmcorefs.description`` module reads and writes the machine
description: a TOML file that says what memory the emulated machine has,
where its contents are (the store), how it is being dumped (environment,
HSA, crashkernel) and what its CPUs hold. See README.rst for the format.

:func:`load` returns a ready :class:`~vmcorefs.machine.Machine`;
:func:`dump_toml` writes one from a plain dict. Every problem is an
:class:`~vmcorefs.errors.InputError` with a one-line message.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import re
import tomllib
from typing import Any

from .errors import InputError
from .files import read_small
from .layouts import DEFAULT_HSA_SIZE, SAVE_AREA, SAVE_AREA_OFFSET, VX_SAVE_AREA_SIZE, vector_from_notes
from .machine import Cpu, Machine, merge_ranges
from .sclp import SdiasDevice, dump_ipl, reader_defaults
from .stores import BytesStore, FaultyStore, OverlayStore, RawFileStore, Store, ZeroStore

__all__ = ("FORMAT", "MEMORY_MAP_THRESHOLD", "cpus_from_json", "dump_toml", "load", "machine_from_doc",
           "memory_map_text", "read_memory_map", "save_area_from_regs")

FORMAT = 1
STORE_TYPES = ("raw", "demo", "zero")

MEMORY_MAP_THRESHOLD = 1000  # 'vmcorefs emulate' writes a memory_map file for more ranges than this
MAX_MEMORY_MAP_FILE = 1 << 30  # 34 bytes a range as /zcore/memmap writes them: 30 million ranges
_HEX_NUMBER = re.compile(r"[0-9a-fA-F]{1,16}")
_HEX_DIGITS = b"0123456789abcdefABCDEF"

MAX_DELAY_US = 10_000_000  # emulated latencies and timeouts: at most 10 s (a read must end)
HSA_DEVICE_KEYS = {"latency_us", "max_blocks_per_request", "max_requests_in_flight", "faults_file", "size"}
HSA_READER_KEYS = {"reader_blocks_per_request", "reader_requests_in_flight", "reader_cache_pages",
                   "reader_busy_delay_us", "reader_timeout_ms"}


# The shape of a description: every key vmcorefs reads, with its type.
# validate() checks a whole document against it before anything is built,
# so the code that builds the machine can rely on the types; ranges and
# relations (sizes, alignment, which environment takes which table) are
# checked where the values are used, with _int.
INT, STR, BOOL = "an integer", "a string", "true or false"
SCHEMA: dict = {
    "format": INT, "name": STR, "environment": STR, "vector": BOOL,
    "memory": [{"start": INT, "size": INT}], "memory_map": STR,
    "store": {"type": STR, "path": STR, "seed": INT, "faults_file": STR,
              "patch": [{"address": INT, "data": STR}]},
    "hsa": {**{key: INT for key in (HSA_DEVICE_KEYS | HSA_READER_KEYS) - {"faults_file"}}, "faults_file": STR},
    "kdump": {"crashkernel_base": INT, "crashkernel_size": INT},
    "cpu": [{"address": INT, "save_area": STR, "vector": STR}],
}
_KINDS = {INT: int, STR: str, BOOL: bool}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def validate(doc: dict, where: str, spec: Any = None, path: str = "") -> None:
    """
    Raise InputError unless *doc* has the types *spec* (default: the whole
    description, :data:`SCHEMA`) gives: a dict is a TOML table of those
    keys (others are not looked at), a one-item list an array of such
    items, a string the name of a scalar type (a bool is no integer).
    Messages name the file (*where*) and the key (``store.patch[0].address``).
    """
    if spec is None:
        spec = SCHEMA
    if isinstance(spec, dict):
        if not isinstance(doc, dict):
            raise InputError(f"{where}: {path} must be a table, not {_shown(doc)}")
        for key, sub in spec.items():
            if key in doc:
                validate(doc[key], where, sub, f"{path}.{key}" if path else key)
    elif isinstance(spec, list):
        if not isinstance(doc, list):
            raise InputError(f"{where}: {path} must be an array of tables, not {_shown(doc)}")
        for i, item in enumerate(doc):
            validate(item, where, spec[0], f"{path}[{i}]")
    elif type(doc) is not _KINDS[spec]:
        raise InputError(f"{where}: {path} must be {spec}, not {_shown(doc)}")


def _int(doc: dict, key: str, where: str, default: Any = None, minimum: int = 0, maximum: int | None = None) -> int:
    value = doc.get(key, default)
    if value is None:
        raise InputError(f"{where}: missing {key}")
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{where}: {key} must be an integer, not {value!r}")
    if value < minimum:
        raise InputError(f"{where}: {key} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise InputError(f"{where}: {key} must be at most {maximum}, not {value}")
    if value >= 1 << 64:
        raise InputError(f"{where}: {key} {value:#x} does not fit 64 bits")
    return value


def _hex(value: Any, where: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise InputError(f"{where} must be a hex string")
    text = re.sub(r"\s+", "", value)
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise InputError(f"{where} is not valid hex") from None
    if len(data) != size:
        raise InputError(f"{where} must hold {size} bytes, not {len(data)}")
    return data


def load(path: str) -> Machine:
    """Return the machine a description file describes."""
    raw = read_small(path, "machine description")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path} is not a vmcorefs machine description (TOML): {exc}") from exc
    except RecursionError:
        raise InputError(f"{path} is not a vmcorefs machine description: its arrays or tables are nested "
                         "too deeply") from None
    return machine_from_doc(doc, os.path.dirname(os.path.abspath(path)), os.path.basename(path))


def read_memory_map(path: str, where: str | None = None) -> list[tuple[int, int]]:
    """
    Return the memory ranges ``(start, end)`` of a memory map file, in the
    format /zcore/memmap writes: ``START SIZE`` records of hex numbers (16
    digits each there), separated by blanks; one record a line, or all on
    one line as zcore has them. Blank lines and ``#`` comments are skipped.
    The ranges are checked as inline ``memory`` ranges are (not empty, page
    aligned, sorted, no overlap), each problem an
    :class:`~vmcorefs.errors.InputError` naming the line. Linear in the
    number of ranges.

    :param where: how messages name the file (default: *path*)
    """
    where = where or path
    try:
        data = read_small(path, "memory map file", limit=MAX_MEMORY_MAP_FILE)
    except InputError as exc:
        raise InputError(f"{where}: cannot read it: {exc}") from None
    ranges = _memory_map_fast(data)
    if ranges is not None:
        return ranges
    # something is wrong (or there are comments): line by line, to say where
    ranges = []
    last_end = 0
    hex_number = _HEX_NUMBER.fullmatch
    for number, line in enumerate(data.split(b"\n"), start=1):
        tokens = line.split(b"#", 1)[0].split()
        if not tokens:
            continue
        if len(tokens) % 2:
            raise InputError(f"{where} line {number}: a record is START SIZE (two hex numbers), "
                             f"not {_show(line)}")
        values = []
        for token in tokens:
            text = token.decode("ascii", "replace")
            if not hex_number(text):
                raise InputError(f"{where} line {number}: {_show(token)} is not a hex number "
                                 "of at most 16 digits")
            values.append(int(text, 16))
        for i in range(0, len(values), 2):
            start, size = values[i], values[i + 1]
            end = start + size
            if start % 4096 or size % 4096:
                raise InputError(f"{where} line {number}: range {start:#x}+{size:#x} is not page aligned")
            if not size:
                raise InputError(f"{where} line {number}: range at {start:#x} is empty")
            if end >= 1 << 64:
                raise InputError(f"{where} line {number}: range {start:#x}+{size:#x} ends beyond 2^64")
            if start < last_end:
                raise InputError(f"{where} line {number}: range {start:#x}+{size:#x} begins below the end "
                                 f"{last_end:#x} of the one before: ranges must be sorted and not overlap")
            ranges.append((start, end))
            last_end = end
    if not ranges:
        raise InputError(f"{where}: no memory ranges in it")
    return ranges


def _memory_map_fast(data: bytes) -> list[tuple[int, int]] | None:
    """
    Return the ranges of a memory map file without comments that is
    right, in a few passes that run in C; None if it has comments or
    anything is wrong (then :func:`read_memory_map` finds the line).
    """
    tokens = data.split()
    if not tokens or len(tokens) % 2 or b"#" in data or max(map(len, tokens)) > 16 \
            or b"".join(tokens).translate(None, _HEX_DIGITS):
        return None
    values = list(map(int, tokens, itertools.repeat(16)))
    starts, sizes = values[0::2], values[1::2]
    ends = list(map(operator.add, starts, sizes))
    if any(map(0xFFF.__and__, values)) or 0 in sizes or ends[-1] >= 1 << 64 \
            or not all(map(operator.le, ends, starts[1:])):
        return None
    return list(zip(starts, ends))


def _show(raw: bytes) -> str:
    text = raw.decode("ascii", "replace").strip()
    return repr(text if len(text) <= 40 else text[:40] + "...")


def memory_map_text(ranges: list[tuple[int, int]]) -> str:
    """Return a memory map file of *ranges* ``(start, end)``: ``START SIZE`` (16 hex digits each) a line."""
    return "".join(f"{start:016x} {end - start:016x}\n" for start, end in ranges)


def machine_from_doc(doc: dict, base_dir: str = ".", name: str = "machine") -> Machine:
    """Return the machine of a parsed description; paths are relative to *base_dir*."""
    where = name
    if doc.get("format") != FORMAT or type(doc.get("format")) is not int:
        raise InputError(f"{where}: not a vmcorefs machine description (format = {FORMAT} missing)")
    validate(doc, where)  # from here on every value read has its type
    environment = doc.get("environment", "standalone")
    vector = doc.get("vector", False)

    memory = doc.get("memory")
    memory_map = doc.get("memory_map")
    if memory_map is not None:
        # the ranges in a file, as /zcore/memmap writes them: a big machine's
        # description stays a few lines, and reading it costs what the ranges cost
        if memory is not None:
            raise InputError(f"{where}: give memory or memory_map, not both")
        if not isinstance(memory_map, str) or not memory_map:
            raise InputError(f"{where}: memory_map must be a file name (relative to the description)")
        ranges = read_memory_map(os.path.join(base_dir, memory_map), f"{where}: memory_map {memory_map}")
    else:
        if not isinstance(memory, list) or not memory:
            raise InputError(f"{where}: memory must be a list of {{ start, size }} ranges "
                             "(or memory_map the name of a file of them)")
        ranges = []
        for i, r in enumerate(memory):
            if not isinstance(r, dict):
                raise InputError(f"{where}: memory[{i}] must be {{ start = ..., size = ... }}")
            start = _int(r, "start", f"{where}: memory[{i}]")
            size = _int(r, "size", f"{where}: memory[{i}]", minimum=1)
            if start + size >= 1 << 64:
                raise InputError(f"{where}: memory[{i}] ends beyond 2^64")
            ranges.append((start, start + size))
        ranges = merge_ranges(ranges, f"{where}: memory")
    end = ranges[-1][1]

    store_doc = doc.get("store")
    if store_doc is None:
        raise InputError(f"{where}: missing [store]")
    stype = store_doc.get("type")
    if stype == "raw":
        spath = store_doc.get("path")
        if spath is None:
            raise InputError(f"{where}: [store] needs path")
        spath = os.path.join(base_dir, spath)
        store: Store = RawFileStore(spath, size=max(end, 0))
    elif stype == "demo":
        from .demo import demo_store
        store = demo_store(end, seed=_int(store_doc, "seed", f"{where}: [store]", default=0))
    elif stype == "zero":
        store = ZeroStore(end)  # a sparse machine: zeros but for [[store.patch]]
    else:
        raise InputError(f"{where}: [store] type must be one of {', '.join(STORE_TYPES)}, not {stype!r}")
    try:
        if "faults_file" in store_doc:
            store = FaultyStore(store, os.path.join(base_dir, store_doc["faults_file"]))
        patches = store_doc.get("patch", [])
        if patches:
            # bytes laid over the store at real addresses (test corruption, fix-ups)
            items = []
            for i, p in enumerate(patches):
                pw = f"{where}: store.patch[{i}]"
                addr = _int(p, "address", pw)
                data = p.get("data")
                if data is None:
                    raise InputError(f"{pw}: missing data (a hex string)")
                try:
                    raw_patch = bytes.fromhex(re.sub(r"\s+", "", data))
                except ValueError:
                    raise InputError(f"{pw}: data is not valid hex") from None
                if addr + len(raw_patch) > store.size:
                    raise InputError(f"{pw} lies beyond the store ({store.size:#x} bytes)")
                items.append((addr, BytesStore(raw_patch, "patch")))
            try:
                store = OverlayStore(store, items)
            except ValueError as exc:
                raise InputError(f"{where}: store patches overlap: {exc}") from None

        cpus_doc = doc.get("cpu")
        if not cpus_doc:
            raise InputError(f"{where}: no [[cpu]] (the boot CPU comes first)")
        if len(cpus_doc) > 4096:
            raise InputError(f"{where}: {len(cpus_doc)} CPUs is more than an s390x machine has (at most 4096)")
        cpus = []
        for i, c in enumerate(cpus_doc):
            cw = f"{where}: cpu[{i}]"
            addr = _int(c, "address", cw, default=i)
            sa = _hex(c["save_area"], f"{cw} save_area", 512) if "save_area" in c else None
            vx = _hex(c["vector"], f"{cw} vector", VX_SAVE_AREA_SIZE) if "vector" in c else None
            cpus.append(Cpu(addr, sa, vx))

        sclp = None
        hsa_options: dict[str, Any] = {}
        if environment == "standalone":
            hsa_doc = doc.get("hsa", {})
            unknown = set(hsa_doc) - HSA_DEVICE_KEYS - HSA_READER_KEYS
            if unknown:
                raise InputError(f"{where}: [hsa] has unknown keys: {', '.join(sorted(unknown))}")
            hsa_size = _int(hsa_doc, "size", f"{where}: [hsa]", default=DEFAULT_HSA_SIZE, minimum=4096)
            if hsa_size % 4096:
                raise InputError(f"{where}: [hsa] size must be a multiple of 4096")
            hsa_size = min(hsa_size, end)
            if cpus[0].save_area is not None and hsa_size < SAVE_AREA_OFFSET + len(cpus[0].save_area):
                raise InputError(f"{where}: [hsa] size {hsa_size:#x} (or memory) ends before the boot CPU's "
                                 f"status at {SAVE_AREA_OFFSET:#x}, which the machine stored into the HSA: "
                                 "give at least 0x2000")
            real, hsa_store = dump_ipl(store, hsa_size, cpus[0].save_area)
            faults_file = os.path.join(base_dir, hsa_doc["faults_file"]) if "faults_file" in hsa_doc else None
            sclp = SdiasDevice(
                hsa_store,
                latency=_int(hsa_doc, "latency_us", f"{where}: [hsa]", default=0, maximum=MAX_DELAY_US) / 1e6,
                max_blocks=_int(hsa_doc, "max_blocks_per_request", f"{where}: [hsa]", default=1024, minimum=1),
                max_inflight=_int(hsa_doc, "max_requests_in_flight", f"{where}: [hsa]", default=16, minimum=1),
                faults_file=faults_file)
            defaults = reader_defaults(hsa_size)
            hsa_options = {
                "max_blocks": _int(hsa_doc, "reader_blocks_per_request", where, default=defaults["max_blocks"],
                                   minimum=1),
                "max_inflight": _int(hsa_doc, "reader_requests_in_flight", where, default=defaults["max_inflight"],
                                     minimum=1),
                "cache_pages": _int(hsa_doc, "reader_cache_pages", where, default=defaults["cache_pages"]),
                "busy_delay": _int(hsa_doc, "reader_busy_delay_us", where, default=1000, maximum=MAX_DELAY_US) / 1e6,
                "timeout": _int(hsa_doc, "reader_timeout_ms", where, default=2000, minimum=1,
                                maximum=MAX_DELAY_US // 1000) / 1e3,
            }
        elif environment == "kdump":
            if "hsa" in doc:
                raise InputError(f"{where}: a kdump environment has no [hsa]")
            real = store
        else:
            raise InputError(f"{where}: environment must be \"standalone\" or \"kdump\", not {environment!r}")

        oldmem = None
        kd = doc.get("kdump")
        if kd is not None:
            if environment != "kdump":
                raise InputError(f"{where}: [kdump] belongs to environment = \"kdump\"")
            if "crashkernel_base" in kd or "crashkernel_size" in kd:
                oldmem = (_int(kd, "crashkernel_base", f"{where}: [kdump]"),
                          _int(kd, "crashkernel_size", f"{where}: [kdump]", minimum=4096))
        return Machine(memory=ranges, real=real, environment=environment, cpus=cpus, vector=vector,
                       sclp=sclp, oldmem=oldmem, hsa_options=hsa_options, name=doc.get("name", name))
    except BaseException:
        store.close()  # nothing keeps the image open after a refused description
        raise


# --------------------------------------------------------------------------
# building descriptions


def save_area_from_regs(*, psw, gprs, acrs, ctrs, fprs, fpc, prefix, timer, todcmp: bytes, todpreg) -> bytes:
    """Return a 512-byte save area from register values (todcmp as stored, 8 raw bytes)."""
    return SAVE_AREA.pack(psw=psw, gprs=gprs, acrs=acrs, ctrs=ctrs, fprs=fprs, fpc=fpc, prefix=prefix,
                          timer=timer, todcmp=todcmp, todpreg=todpreg)


def cpus_from_json(path: str) -> tuple[list[dict], dict]:
    """
    Return CPU entries (``address``, ``save_area``, ``vector`` as bytes) from a
    CPU-state JSON file as the fixtures ship it (QEMU's view: raw clock
    comparator, which SIGP STORE STATUS stores shifted right by 8), and the
    file's other top-level values.
    """
    raw = read_small(path, "CPU-state file")
    try:
        doc = json.loads(raw)
        out = []
        for c in doc["cpus"]:
            h = lambda v: int(v, 16)  # noqa: E731
            regs = dict(
                psw=[h(v) for v in c["psw"]], gprs=[h(v) for v in c["gprs"]], acrs=[h(v) for v in c["acrs"]],
                ctrs=[h(v) for v in c["ctrs"]], fprs=[h(v) for v in c["fprs"]], fpc=h(c["fpc"]),
                prefix=h(c["prefix"]), timer=h(c["cpu_timer"]),
                todcmp=(h(c["clock_comparator"]) >> 8).to_bytes(8, "big"),
                todpreg=h(c["tod_programmable_register"]))
            vector = None
            if "vxrs_low" in c and "vxrs_high" in c:
                low = bytes.fromhex(c["vxrs_low"])
                high = bytes.fromhex(c["vxrs_high"])
                vector = vector_from_notes(regs["fprs"], low, high)
            out.append({"address": c.get("cpu_address", c.get("qemu_cpu_index", len(out))),
                        "save_area": save_area_from_regs(**regs), "vector": vector})
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise InputError(f"{path} is not a CPU-state JSON file: {exc}") from exc
    return out, {k: v for k, v in doc.items() if k != "cpus"}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:#x}" if value >= 10 else str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bytes):
        text = value.hex()
        lines = [text[i:i + 64] for i in range(0, len(text), 64)]
        return '"""\n' + "\n".join(lines) + '"""'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[\n" + "".join(f"  {_toml_value(v)},\n" for v in value) + "]"
    raise TypeError(value)


def dump_toml(doc: dict, comment: str = "") -> str:
    """Return a description dict as TOML (scalars, then tables, then [[cpu]])."""
    lines = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []
    tables = {k: v for k, v in doc.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in doc.items() if isinstance(v, list) and v and isinstance(v[0], dict) and k != "memory"}
    for k, v in doc.items():
        if k not in tables and k not in arrays and v is not None:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in tables.items():
        lines.append(f"\n[{k}]")
        lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None)
    for k, items in arrays.items():
        for item in items:
            lines.append(f"\n[[{k}]]")
            lines.extend(f"{kk} = {_toml_value(vv)}" for kk, vv in item.items() if vv is not None)
    return "\n".join(lines) + "\n"
