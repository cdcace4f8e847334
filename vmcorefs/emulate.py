# SPDX-License-Identifier: MIT
"""
``vmcorefs emulate``
--------------------

The ``vmcorefs.emulate`` module writes a machine description from a raw
physical memory image and CPU states (a JSON file, raw save areas, the
register notes of an ELF core (:mod:`vmcorefs.sources.elfnotes`), or the
prefix addresses of CPUs whose status the crashed kernel stored in old
memory). More than :data:`~vmcorefs.description.MEMORY_MAP_THRESHOLD`
memory ranges go to a memory map file next to the description
(``memory_map``).
"""

from __future__ import annotations

import logging
import os
import sys

from .description import FORMAT, MEMORY_MAP_THRESHOLD, cpus_from_json, dump_toml, memory_map_text, read_memory_map
from .errors import InputError
from .files import read_small
from .layouts import SAVE_AREA, SAVE_AREA_OFFSET
from .machine import Cpu, Machine, OldMemory
from .sources.raw import discover_cpus, find_oldmem, run_without_loop, vector_enabled
from .stores import RawFileStore

__all__ = ("emulate",)

log = logging.getLogger(__name__)


def _old_memory(image: RawFileStore, environment: str, crashkernel) -> OldMemory:
    """
    Return the crashed kernel's memory in the image: through the kdump swap,
    or as it is. A stand-alone dump may have caught a capture kernel running:
    then its parmarea names the swap, and the crashed kernel's CPUs are found
    behind it (what vmcorefs shows of such a dump).
    """
    size = image.size - image.size % 4096
    probe = Machine(memory=[(0, size)], real=image, environment="kdump", cpus=[Cpu(0)], oldmem=crashkernel)
    if environment == "kdump":
        swap = probe.find_oldmem()
        if swap is None:
            raise InputError("the image's parmarea names no crashkernel: give --crashkernel BASE:SIZE")
    else:
        swap = find_oldmem(image, size)
        if swap is not None:
            print(f"vmcorefs: a kdump capture kernel was running (crashkernel {swap[0]:#x}+{swap[1]:#x} "
                  "in its parmarea): the crashed kernel's CPUs are read behind its swap", file=sys.stderr)
    return OldMemory(probe, swap, None)


def _read_prefix_save_areas(old: OldMemory, prefixes) -> list[bytes]:
    async def read_all() -> list[bytes]:
        return [await old.read(p + SAVE_AREA_OFFSET, 512) for p in prefixes]
    return run_without_loop(read_all())


def _cr0_vector(cpus: list[dict]) -> bool:
    """Whether the first online CPU's control register 0 enables the vector facility."""
    online = [c for c in cpus if c["save_area"] is not None and SAVE_AREA.unpack(c["save_area"])["prefix"]]
    return bool(online) and vector_enabled(online[0]["save_area"])


def emulate(args) -> int:
    """Write the description *args* ask for (see ``vmcorefs emulate --help``)."""
    image_path = os.path.abspath(args.image)
    image = RawFileStore(image_path)
    try:
        memory = args.memory or [(0, image.size - image.size % 4096)]
        if getattr(args, "memory_map", None):
            if args.memory:
                raise InputError("give --memory or --memory-map, not both")
            memory = [(s, e - s) for s, e in read_memory_map(args.memory_map)]
        if not memory[0][1]:
            raise InputError(f"{args.image} is empty")
        cpus: list[dict] = []
        vector = args.vector
        if args.cpus_json:
            entries, _extra = cpus_from_json(args.cpus_json)
            for e in entries:
                cpus.append({"address": e["address"], "save_area": e["save_area"], "vector": e["vector"]})
            # QEMU's view: vector registers even without the facility; decide as the kernel does
            vector = vector or _cr0_vector(cpus)
        if getattr(args, "cpus_from_elf", None):
            if args.cpus_json or args.save_areas:
                raise InputError("--cpus-from-elf gives every CPU's state: do not combine it with "
                                 "--cpus-json or --save-areas")
            from .sources.elfnotes import cpus_from_elf
            elf_cpus, producer = cpus_from_elf(args.cpus_from_elf)
            log.info("%s: %d CPUs, written by %s", args.cpus_from_elf, len(elf_cpus), producer)
            for c in elf_cpus:
                cpus.append({"address": c.address, "save_area": c.save_area, "vector": c.vector})
            # a kernel writes vector notes exactly where the machine has the facility,
            # QEMU for every CPU: then decide as the kernel does
            vector = vector or (any(c.vector is not None for c in elf_cpus) if producer.startswith("kernel")
                                else _cr0_vector(cpus))
        if args.save_areas:
            data = read_small(args.save_areas, "save area file", limit=4096 * 512)
            if not data or len(data) % 512:
                raise InputError(f"{args.save_areas}: expected a multiple of 512 bytes, got {len(data)}")
            for i in range(0, len(data), 512):
                cpus.append({"address": len(cpus), "save_area": data[i:i + 512], "vector": None})
        if args.cpu_prefix:
            if not cpus:
                cpus.append({"address": 0, "save_area": None, "vector": None})  # boot CPU: old 0x1200
            areas = _read_prefix_save_areas(_old_memory(image, args.environment, args.crashkernel),
                                            args.cpu_prefix)
            for sa in areas:
                cpus.append({"address": max(c["address"] for c in cpus) + 1, "save_area": sa, "vector": None})
        if not cpus:
            # no states given: the boot CPU from old 0x1200, the others from the
            # crashed kernel's lowcore_ptr[] (through VMCOREINFO), as a raw SOURCE does
            old = _old_memory(image, args.environment, args.crashkernel)
            boot, others, how = run_without_loop(discover_cpus(old, old.machine.contains))
            print(f"vmcorefs: CPUs: {how}", file=sys.stderr)
            cpus.append({"address": 0, "save_area": None, "vector": None})
            cpus += [{"address": i + 1, "save_area": sa, "vector": None} for i, sa in enumerate(others)]
            vector = vector or vector_enabled(boot)
        if args.environment == "kdump" and (cpus[0]["save_area"] is not None or cpus[0]["vector"] is not None):
            print("vmcorefs: note: kdump: the boot CPU's registers are taken from old memory at 0x1200 (its vector "
                  "registers where its lowcore's mcesad points), not from the given state: it runs the capture "
                  "kernel", file=sys.stderr)
            cpus[0]["save_area"] = cpus[0]["vector"] = None
        if not vector:
            for c in cpus:
                c["vector"] = None

        memory_map = None
        out_dir = os.path.dirname(os.path.abspath(args.output))
        rel = os.path.relpath(image_path, out_dir)
        doc: dict = {
            "format": FORMAT,
            "name": os.path.basename(args.image),
            "environment": args.environment,
            "vector": vector,
            "memory": [{"start": s, "size": n} for s, n in memory],
            "store": {"type": "raw", "path": rel},
        }
        if len(memory) > MEMORY_MAP_THRESHOLD:
            # many ranges: in a file of their own, which costs a mount what the ranges cost, not TOML parsing
            memory_map = os.path.splitext(os.path.abspath(args.output))[0] + ".memmap"
            del doc["memory"]
            doc["memory_map"] = os.path.basename(memory_map)  # a scalar: dump_toml writes it before [store]
        if args.environment == "standalone":
            doc["hsa"] = {"size": args.hsa_size, "latency_us": args.sclp_latency_us}
        elif args.crashkernel:
            doc["kdump"] = {"crashkernel_base": args.crashkernel[0], "crashkernel_size": args.crashkernel[1]}
        doc["cpu"] = [{"address": c["address"],
                       "save_area": c["save_area"],
                       "vector": c["vector"]} for c in cpus]
        text = dump_toml(doc, "vmcorefs machine description, written by 'vmcorefs emulate'\n"
                              "format: see README.rst, section 'Machine descriptions'")
        # validate before writing: the description must load
        from .description import machine_from_doc
        import tomllib
        if memory_map is not None:
            with open(memory_map, "w") as f:
                f.write(memory_map_text([(s, s + n) for s, n in memory]))
        try:
            machine_from_doc(tomllib.loads(text), out_dir, args.output).close()
        except BaseException:
            if memory_map is not None:
                os.unlink(memory_map)
            raise
    finally:
        image.close()
    with open(args.output, "w") as f:
        f.write(text)
    if memory_map is not None:
        print(f"vmcorefs: {len(memory)} memory ranges are in {memory_map} (memory_map)", file=sys.stderr)
    return 0
