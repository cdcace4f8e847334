# SPDX-License-Identifier: MIT
"""
Property tests (hypothesis): every byte of /vmcore, for random machines
(memory holes, HSA sizes, kdump swaps, CPU counts, os_info present or not,
stand-alone dumps that caught a capture kernel running: swap behind the
HSA), equals what the independent reference builder (tests/reference.py)
writes from a naive model of old memory.
"""

from __future__ import annotations

import random
import struct

import trio
from hypothesis import HealthCheck, event, given, settings, strategies as st

from reference import cksm, reference_notes, reference_vmcore
from vmcorefs.dump import Dump
from vmcorefs.machine import Cpu, Machine
from vmcorefs.sclp import SdiasDevice
from vmcorefs.stores import BytesStore, OverlayStore, PatternStore, SliceStore
from vmcorefs.views.vmcore import build_vmcore

PAGE = 4096


def naive_old(real: bytes, swap):
    """Old memory as the reference document's rules say, byte by byte."""
    def read(addr: int, n: int) -> bytes:
        if swap is None:
            return real[addr:addr + n]
        base, size = swap
        out = bytearray()
        for a in range(addr, addr + n):
            r = a + base if a < size else a - base if base <= a < base + size else a
            out.append(real[r])
        return bytes(out)
    return read


def os_info_page(crash_base: int, crash_size: int) -> bytes:
    page = bytearray(PAGE)
    struct.pack_into(">QIHHQQ", page, 0, 0x4F53494E464F535A, 0, 1, 1, crash_base, crash_size)
    struct.pack_into(">I", page, 8, cksm(bytes(page[12:])))
    return bytes(page)


@st.composite
def machines(draw):
    pages = draw(st.integers(24, 64))
    env = draw(st.sampled_from(["standalone", "kdump", "standalone-capture"]))
    # detected memory: 1-3 ranges with holes, the first one starting at 0 (with
    # a capture kernel mostly holding its parmarea at 0x10400, page 16)
    low = draw(st.sampled_from([4, 17, 17])) if env == "standalone-capture" else 4
    cuts = sorted(draw(st.sets(st.integers(low, pages - 1), min_size=0, max_size=4)))
    bounds = [0] + cuts + [pages]
    ranges = [(bounds[i] * PAGE, bounds[i + 1] * PAGE) for i in range(0, len(bounds) - 1, 2)]
    ncpus = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 1 << 30))
    swap = None
    if env != "standalone":
        size = draw(st.integers(3, pages // 2 - 1))
        base = draw(st.integers(size, pages - size))
        swap = (base * PAGE, size * PAGE)
    hsa_pages = draw(st.integers(2, 8))
    with_os_info = draw(st.booleans())
    return env, ranges, pages * PAGE, swap, ncpus, seed, hsa_pages * PAGE, with_os_info


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(machines(), st.data())
def test_vmcore_bytes_match_the_reference_model(tmp_path_factory, params, data):
    env, ranges, total, swap, ncpus, seed, hsa_size, with_os_info = params
    rng = random.Random(seed)
    old = bytearray(rng.randbytes(total))
    struct.pack_into(">Q", old, 0xE0C, 0)
    if swap and with_os_info and ranges[0][1] > 3 * PAGE:
        old[2 * PAGE:3 * PAGE] = os_info_page(*swap)
        struct.pack_into(">Q", old, 0xE18, 2 * PAGE)
    else:
        struct.pack_into(">Q", old, 0xE18, 0)
    save_areas = []
    for i in range(ncpus):
        sa = bytearray(rng.randbytes(512))
        struct.pack_into(">I", sa, 0x118, 0 if i == ncpus - 1 and ncpus > 2 else 0x100000 + i * 0x2000)
        save_areas.append(bytes(sa))
    notes_of = save_areas  # the CPU states /vmcore must show, boot CPU first
    if swap:
        old[0x1200:0x1400] = save_areas[0]  # the crashed kernel stored the boot CPU
        base, size = swap
        real = bytearray(old)
        real[0:size], real[base:base + size] = old[base:base + size], old[0:size]
        kdump_mode = with_os_info and ranges[0][1] > 3 * PAGE and any(
            s <= swap[0] and swap[0] + swap[1] <= e for s, e in ranges)
    if env == "kdump":
        machine = Machine(memory=ranges, real=BytesStore(bytes(real)), environment="kdump",
                          cpus=[Cpu(0)] + [Cpu(i, sa) for i, sa in enumerate(save_areas) if i],
                          oldmem=swap)
    elif env == "standalone-capture":
        # the capture kernel runs on the boot CPU and names the swap in its
        # parmarea; the dump IPL stored its status at 0x1200 (in the HSA copy)
        parm = 0x10418
        fits = any(s <= parm - 0x18 and parm - 0x18 + 0x80 <= e for s, e in ranges)
        if fits:
            struct.pack_into(">QQ", real, parm, *swap)
        capture_sa = bytearray(rng.randbytes(512))
        struct.pack_into(">I", capture_sa, 0x118, 0x1F0000)
        real[0x1200:0x1400] = capture_sa
        hsa_size = min(hsa_size, total)
        hsa = SliceStore(BytesStore(bytes(real)), 0, hsa_size)
        machine = Machine(memory=ranges, real=OverlayStore(BytesStore(bytes(real)), [(0, PatternStore(hsa_size))]),
                          environment="standalone", cpus=[Cpu(0, bytes(capture_sa))] +
                          [Cpu(i, sa) for i, sa in enumerate(save_areas) if i],
                          sclp=SdiasDevice(hsa), hsa_options={"max_blocks": 3, "max_inflight": 2})
        kdump_mode = kdump_mode and fits
        if not kdump_mode:  # the machine as it is: the capture kernel's memory, its boot CPU
            swap = None
            old = real
            notes_of = [bytes(capture_sa)] + save_areas[1:]
    else:
        hsa_size = min(hsa_size, total)
        hsa = OverlayStore(SliceStore(BytesStore(bytes(old)), 0, hsa_size),
                           [(0x1200, BytesStore(save_areas[0]))])
        old[0x1200:0x1400] = save_areas[0]  # the HSA copy holds the stored status
        real = OverlayStore(BytesStore(bytes(old)), [(0, PatternStore(hsa_size))])
        machine = Machine(memory=ranges, real=real, environment="standalone",
                          cpus=[Cpu(i, sa) for i, sa in enumerate(save_areas)],
                          sclp=SdiasDevice(hsa), hsa_options={"max_blocks": 3, "max_inflight": 2})
        kdump_mode = False

    async def build():
        dump = await Dump.open(machine)
        return dump, build_vmcore(dump)
    dump, vmcore = trio.run(build)
    assert dump.mode == ("kdump" if kdump_mode else "standalone")
    event(f"{env} environment, {dump.mode} mode")
    exported = ranges
    if kdump_mode:
        cut = []
        for s, e in ranges:
            b, n = swap
            if s < b:
                cut.append((s, min(e, b)))
            if e > b + n:
                cut.append((max(s, b + n), e))
        exported = cut
    ref_path = tmp_path_factory.mktemp("ref") / "ref.elf"
    reference_vmcore(str(ref_path), naive_old(bytes(real) if swap else bytes(old), swap), exported,
                     notes_of, None, None)
    ref = ref_path.read_bytes()
    assert vmcore.size == len(ref)
    notes = reference_notes(notes_of, None, None)
    assert notes in ref
    for _ in range(20):
        off = data.draw(st.integers(0, len(ref) - 1))
        n = data.draw(st.sampled_from([1, 5, 4096, 3 * 4096 + 7, len(ref)]))
        assert trio.run(vmcore.read, off, n) == ref[off:off + n], (off, n)
