# SPDX-License-Identifier: MIT
"""The SCLP SDIAS device emulation and the HSA reader, with injected faults."""

import random

import pytest
import trio

from vmcorefs.errors import SclpError
from vmcorefs.sclp import (EVSTATE_ALL_STORED, FaultRule, HsaReader, SclpBusy, SdiasDevice, SdiasRequest)
from vmcorefs.stores import BytesStore

PAGES = 64
HSA = random.Random(5).randbytes(PAGES * 4096)


def device(**kw) -> SdiasDevice:
    return SdiasDevice(BytesStore(HSA), **kw)


async def test_block_numbers_and_size_query():
    dev = device()
    buf = bytearray(4096)
    resp = await dev.service_call(SdiasRequest(0, first_block=5 + 2, block_count=1, target=buf))
    assert resp.event_status == EVSTATE_ALL_STORED and resp.block_count == 1
    assert bytes(buf) == HSA[5 * 4096:6 * 4096]
    # block 1 is not HSA memory
    resp = await dev.service_call(SdiasRequest(0, first_block=1, block_count=1, target=bytearray(4096)))
    assert resp.event_status != EVSTATE_ALL_STORED
    assert await HsaReader(dev).query_size() == PAGES * 4096


async def test_reader_reads_any_range():
    r = HsaReader(device(), max_blocks=4, max_inflight=3)
    for addr, n in [(0, 1), (100, 5000), (4095, 2), (3 * 4096, 20 * 4096 + 17), (PAGES * 4096 - 10, 10)]:
        assert await r.read(addr, n) == HSA[addr:addr + n]


async def test_linux_approach_is_one_block_per_request():
    dev = device()
    r = HsaReader(dev, max_blocks=1, max_inflight=1)
    assert await r.read(0, 10 * 4096) == HSA[:10 * 4096]
    assert dev.requests == 10 and dev.peak_inflight == 1


async def test_limits_are_respected():
    dev = device(max_blocks=8, max_inflight=2, latency=0.001)
    r = HsaReader(dev, max_blocks=100, max_inflight=100)
    assert r.max_blocks == 8 and r.max_inflight == 2
    assert await r.read(0, PAGES * 4096) == HSA
    assert dev.requests == PAGES // 8 and dev.peak_inflight == 2


async def test_busy_is_retried():
    dev = device(faults=[FaultRule("busy", times=5)])
    r = HsaReader(dev, busy_delay=0)
    assert await r.read(4096, 4096) == HSA[4096:8192]


async def test_busy_forever_gives_up_after_300_tries():
    calls = 0
    dev = device(faults=[FaultRule("busy")])
    orig = dev.service_call

    async def counting(req):
        nonlocal calls
        calls += 1
        return await orig(req)
    dev.service_call = counting
    r = HsaReader(dev, busy_delay=0)
    with pytest.raises(SclpError) as exc:
        await r.read(8192, 100)
    assert calls == 300 and exc.value.address == 8192


async def test_error_status_fails_at_once_for_the_affected_pages_only():
    dev = device(faults=[FaultRule("error", first_page=3, last_page=3)])
    r = HsaReader(dev, max_blocks=1)
    with pytest.raises(SclpError) as exc:
        await r.read(3 * 4096 + 10, 10)
    assert exc.value.address == 3 * 4096
    assert await r.read(4 * 4096, 4096) == HSA[4 * 4096:5 * 4096]


@pytest.mark.parametrize("kind", ["timeout", "short", "wrong_count"])
async def test_transient_faults_are_retried(kind):
    dev = device(faults=[FaultRule(kind, times=1)])
    r = HsaReader(dev, timeout=0.05, max_blocks=4)
    assert await r.read(0, 4 * 4096) == HSA[:4 * 4096]


@pytest.mark.parametrize("kind", ["timeout", "short", "wrong_count"])
async def test_persistent_faults_give_eio_never_zeros(kind):
    dev = device(faults=[FaultRule(kind)])
    r = HsaReader(dev, timeout=0.02, max_blocks=4)
    with pytest.raises(SclpError):
        await r.read(0, 4 * 4096)


async def test_faults_file_switches_faults_while_running(tmp_path):
    f = tmp_path / "faults.toml"
    dev = device(faults_file=str(f))
    r = HsaReader(dev)
    assert await r.read(0, 10) == HSA[:10]
    f.write_text('[[fault]]\nkind = "error"\nfirst_page = 0\nlast_page = 1\n')
    with pytest.raises(SclpError):
        await r.read(0, 10)
    f.unlink()
    assert await r.read(0, 10) == HSA[:10]


async def test_release():
    dev = device()
    r = HsaReader(dev, cache_pages=10)
    assert await r.read(0, 10) == HSA[:10]
    dev.release()
    r.release()
    with pytest.raises(SclpError):
        await r.read(0, 10)


async def test_busy_device_refuses_when_full():
    dev = device(max_inflight=1, latency=0.5)
    async with trio.open_nursery() as n:
        n.start_soon(dev.service_call, SdiasRequest(0, 2, 1, bytearray(4096)))
        while dev.inflight < 1:  # a state, not a time: the first request is in flight
            await trio.sleep(0.001)
        with pytest.raises(SclpBusy):
            await dev.service_call(SdiasRequest(0, 3, 1, bytearray(4096)))
