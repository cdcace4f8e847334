# SPDX-License-Identifier: MIT
"""
SCLP SDIAS: the emulated device and the HSA reader
--------------------------------------------------

The ``vmcorefs.sclp`` module provides the two sides of the SCLP "store data
in absolute storage" (SDIAS) protocol (reference section 6):

- :class:`SdiasDevice`, the emulated hardware: an asynchronous
  request/response device holding the HSA, with per-request latency, a limit
  on blocks per request and on requests in flight, block-number translation
  (HSA page ``p`` is block ``p + 2``), the size query, HSA release, and
  injectable faults (busy, error status, timeout, short and wrong-size
  answers).
- :class:`HsaReader`, the dump tool's side (what ``drivers/s390/char/
  sclp_sdias.c`` does in Linux): turns byte reads into SDIAS requests,
  retries busy and failed requests a bounded number of times (300 like
  Linux), checks every answer, and raises :class:`~vmcorefs.errors.SclpError`
  instead of ever returning bytes it did not get. A request of several
  pages that fails for good is read again in halves, down to the page that
  fails, which the error names (a timeout names the request's range).

Nothing else in vmcorefs reads HSA bytes.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import trio

from .errors import InputError, MemoryReadError, SclpError
from .files import WatchedFile, read_small
from .layouts import PAGE_SIZE, SAVE_AREA_OFFSET
from .stores import BytesStore, OverlayStore, PatternStore, SliceStore, Store

__all__ = (
    "dump_ipl",
    "EVSTATE_ALL_STORED",
    "EVSTATE_PART_STORED",
    "FaultRule",
    "HsaReader",
    "SDIAS_COMMAND",
    "SclpBusy",
    "SdiasDevice",
    "SdiasRequest",
    "SdiasResponse",
    "reader_defaults",
)

log = logging.getLogger(__name__)

SDIAS_COMMAND = 0x00760005
SDIAS_EVENT_TYPE = 0x1C
SDIAS_EQ_STORE_DATA = 0x0
SDIAS_EQ_SIZE = 0x1
SCLP_RC_NORMAL_COMPLETION = 0x0020
SCLP_RC_INVALID_COMMAND = 0x01F0
EVSTATE_ALL_STORED = 0x00
EVSTATE_PART_STORED = 0x10
EVSTATE_NO_DATA = 0x20
EVSTATE_ERROR = 0xF0
FIRST_BLOCK = 2  # HSA page p is block p + 2

FAULT_KINDS = ("busy", "error", "timeout", "short", "wrong_count")


class _SclpTimeout(SclpError):
    """An SCLP request timed out every time it was tried."""


class SclpBusy(Exception):
    """The service call was not initiated (condition code 2: SCLP busy)."""


@dataclasses.dataclass
class SdiasRequest:
    """An SDIAS event buffer as the dump tool fills it in."""

    qualifier: int
    first_block: int = 0
    block_count: int = 0
    target: bytearray | None = None  # the "absolute storage" the HSA is copied to
    command: int = SDIAS_COMMAND
    event_type: int = SDIAS_EVENT_TYPE


@dataclasses.dataclass
class SdiasResponse:
    """What the device stores back: response code, event status, block count."""

    response_code: int
    event_status: int = EVSTATE_ALL_STORED
    block_count: int = 0


@dataclasses.dataclass
class FaultRule:
    """
    A fault the device injects into matching requests.

    :param kind: ``busy`` (not initiated), ``error`` (error event status),
        ``timeout`` (never completes), ``short`` (stores one block less and
        says so), ``wrong_count`` (claims success with a wrong block count)
    :param first_page: first HSA page the rule applies to (None: any)
    :param last_page: last HSA page (inclusive) the rule applies to
    :param times: how many requests it hits (None: every one)
    """

    kind: str
    first_page: int | None = None
    last_page: int | None = None
    times: int | None = None

    def matches(self, first_page: int, count: int) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.first_page is None:
            return True
        last = self.last_page if self.last_page is not None else self.first_page
        return first_page <= last and self.first_page < first_page + max(count, 1)


def dump_ipl(store: Store, hsa_size: int, boot_status: bytes | None = None) -> tuple[Store, Store]:
    """
    Return what a stand-alone dump IPL leaves of a machine whose memory
    *store* holds: the real memory now (the dump tool, a ``ZFCPDUMP``
    pattern, loaded into ``[0, hsa_size)``) and the HSA (old memory
    ``[0, hsa_size)`` as the machine copied it, after it stored the boot
    CPU's status *boot_status*, if given, at 0x1200).
    """
    overlays = [(SAVE_AREA_OFFSET, BytesStore(boot_status, "boot CPU status"))] if boot_status is not None else []
    hsa = OverlayStore(SliceStore(store, 0, hsa_size), overlays, name="HSA")
    real = OverlayStore(store, [(0, PatternStore(hsa_size))], name=store.name)
    return real, hsa


def load_fault_rules(path: str) -> list[FaultRule]:
    """Return the fault rules of a TOML file with ``[[fault]]`` tables (none if there is no file)."""
    import tomllib  # only machines with a faults file need it: not on the path of every save
    if not os.path.exists(path):
        return []
    try:
        doc = tomllib.loads(read_small(path, "fault file").decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError, UnicodeDecodeError
        raise InputError(f"cannot read fault file {path}: {exc}") from exc
    faults = doc.get("fault", [])
    if not isinstance(faults, list) or not all(isinstance(item, dict) for item in faults):
        raise InputError(f"{path}: fault must be a list of [[fault]] tables")
    rules = []
    for i, item in enumerate(faults):
        kind = item.get("kind")
        if kind not in FAULT_KINDS:
            raise InputError(f"{path}: fault kind must be one of {', '.join(FAULT_KINDS)}, not {kind!r}")
        values = []
        for key in ("first_page", "last_page", "times"):
            value = item.get(key)
            if value is not None and (type(value) is not int or value < 0):
                raise InputError(f"{path}: fault[{i}] {key} must be an integer of at least 0, not {value!r}")
            values.append(value)
        rules.append(FaultRule(kind, *values))
    return rules


class SdiasDevice:
    """
    The emulated SCLP with the HSA behind it.

    :param hsa: the HSA contents (``hsa.size`` bytes, a multiple of 4096)
    :param latency: seconds from request to completion interrupt
    :param max_blocks: most blocks one request may copy
    :param max_inflight: most requests in flight; more are refused as busy
    :param faults: fault rules applied in order (the first match wins)
    :param faults_file: TOML file of fault rules, re-read whenever it
        changes, so faults can be switched on and off while mounted
    """

    def __init__(self, hsa: Store, *, latency: float = 0.0, max_blocks: int = 1024,
                 max_inflight: int = 16, faults: list[FaultRule] | None = None,
                 faults_file: str | None = None) -> None:
        if hsa.size % PAGE_SIZE:
            raise InputError(f"HSA size {hsa.size:#x} is not a multiple of 4096")
        self.hsa = hsa
        self.pages = hsa.size // PAGE_SIZE
        self.latency = latency
        self.max_blocks = max_blocks
        self.max_inflight = max_inflight
        self.faults = list(faults or [])
        self.faults_file = faults_file
        self._watched = WatchedFile(faults_file, load_fault_rules, []) if faults_file else None
        self._refresh_faults()  # a bad file is refused now
        self.inflight = 0
        self.peak_inflight = 0
        self.released = False
        self.requests = 0
        self.blocks_copied = 0

    async def _wait_latency(self) -> None:
        # the event loop sleeps in whole milliseconds: wait shorter latencies
        # out by yielding until the deadline, so 200 us stays 200 us
        if self.latency >= 0.002:
            await trio.sleep(self.latency)
            return
        deadline = trio.current_time() + self.latency
        await trio.lowlevel.checkpoint()
        while trio.current_time() < deadline:
            await trio.lowlevel.checkpoint()

    def release(self) -> None:
        """Release the HSA: from now on copy requests fail."""
        self.released = True

    def _refresh_faults(self) -> None:
        if self._watched is not None:
            self.faults = self._watched.current()

    def reload_faults(self) -> int:
        """Re-read the faults file if it changed; return how often it changed (its version)."""
        self._refresh_faults()
        return self._watched.version if self._watched is not None else 0

    def _fault_for(self, first_page: int, count: int) -> str | None:
        self._refresh_faults()
        for rule in self.faults:
            if rule.matches(first_page, count):
                if rule.times is not None:
                    rule.times -= 1
                return rule.kind
        return None

    async def service_call(self, req: SdiasRequest) -> SdiasResponse:
        """Process one request; raise :class:`SclpBusy` if it cannot be initiated."""
        if req.command != SDIAS_COMMAND or req.event_type != SDIAS_EVENT_TYPE:
            return SdiasResponse(SCLP_RC_INVALID_COMMAND)
        first_page = req.first_block - FIRST_BLOCK
        # a size query (no pages) only meets rules that name no pages
        fault = self._fault_for(first_page, req.block_count)
        if fault == "busy" or self.inflight >= self.max_inflight:
            raise SclpBusy()
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        self.requests += 1
        try:
            await self._wait_latency()
            if fault == "timeout":
                await trio.sleep_forever()
            if req.qualifier == SDIAS_EQ_SIZE:
                blocks = self.pages + 1
                if fault == "wrong_count":
                    blocks += 1
                return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_ALL_STORED, blocks)
            if req.qualifier != SDIAS_EQ_STORE_DATA:
                return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_ERROR, 0)
            count = req.block_count
            if (self.released or fault == "error" or count <= 0 or count > self.max_blocks
                    or first_page < 0 or first_page + count > self.pages
                    or req.target is None or len(req.target) < count * PAGE_SIZE):
                return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_ERROR, 0)
            stored = count - 1 if fault == "short" else count
            if stored:
                req.target[:stored * PAGE_SIZE] = self.hsa.read(first_page * PAGE_SIZE, stored * PAGE_SIZE)
            self.blocks_copied += stored
            if fault == "short":
                return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_PART_STORED, stored)
            if fault == "wrong_count":
                return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_ALL_STORED, count + 1)
            return SdiasResponse(SCLP_RC_NORMAL_COMPLETION, EVSTATE_ALL_STORED, count)
        finally:
            self.inflight -= 1


def reader_defaults(hsa_size: int) -> dict:
    """
    Return vmcorefs' HSA reader settings for an HSA of *hsa_size* bytes:
    1 MiB per request, 8 requests in flight, and the pages read kept (the
    HSA never changes) up to 64 MiB, until it is released.
    """
    return {"max_blocks": 256, "max_inflight": 8, "cache_pages": min(hsa_size, 64 << 20) // PAGE_SIZE}


class HsaReader:
    """
    The dump tool's HSA access: byte reads as SDIAS copy requests.

    :param device: the SCLP device
    :param max_blocks: blocks per request (Linux: 1); clipped to the device's
    :param max_inflight: requests in flight at once (Linux: 1)
    :param busy_retries: tries of a request the device keeps refusing (Linux: 300)
    :param busy_delay: seconds to wait before trying a refused request again
    :param timeout: seconds to wait for a completion before trying again
    :param timeout_retries: tries of a request that times out or comes back short
    :param cache_pages: HSA pages kept after reading (0: no cache)
    """

    def __init__(self, device: SdiasDevice, *, max_blocks: int = 1, max_inflight: int = 1,
                 busy_retries: int = 300, busy_delay: float = 0.001, timeout: float = 2.0,
                 timeout_retries: int = 3, cache_pages: int = 0) -> None:
        self.device = device
        self.max_blocks = max(1, min(max_blocks, device.max_blocks))
        self.max_inflight = max(1, min(max_inflight, device.max_inflight))
        self.busy_retries = busy_retries
        self.busy_delay = busy_delay
        self.timeout = timeout
        self.timeout_retries = timeout_retries
        self.cache_pages = cache_pages
        self._cache: dict[int, bytes] = {}
        self.size: int | None = None
        self.released = False

    async def _call(self, req: SdiasRequest, address: int) -> SdiasResponse:
        busy = 0
        failed = 0
        while True:
            try:
                with trio.move_on_after(self.timeout) as scope:
                    resp = await self.device.service_call(req)
            except SclpBusy:
                busy += 1
                if busy >= self.busy_retries:
                    raise SclpError(address, f"SCLP busy, gave up after {busy} tries") from None
                await trio.sleep(self.busy_delay)
                continue
            if scope.cancelled_caught:
                failed += 1
                log.warning("SCLP request for %#x timed out (try %d)", address, failed)
                if failed >= self.timeout_retries:
                    raise _SclpTimeout(address, f"SCLP request timed out {failed} times")
                continue
            if resp.response_code != SCLP_RC_NORMAL_COMPLETION:
                failed += 1
                if failed >= self.timeout_retries:
                    raise SclpError(address, f"SCLP response code {resp.response_code:#06x}")
                continue
            return resp

    async def query_size(self) -> int:
        """Return the HSA size the device reports: ``(blocks - 1) * 4096``."""
        resp = await self._call(SdiasRequest(SDIAS_EQ_SIZE), 0)
        if resp.event_status != EVSTATE_ALL_STORED or resp.block_count < 1:
            raise SclpError(0, f"SCLP size query failed (event status {resp.event_status:#04x})")
        self.size = (resp.block_count - 1) * PAGE_SIZE
        return self.size

    async def _copy(self, page: int, count: int) -> bytes:
        """
        Return *count* HSA pages from *page* on. SCLP says only that a
        request failed, not which of its pages: a request of several pages
        that fails for good is split in halves, each read the same way, so
        that the error names the page that fails (and pages that can be read
        are). A timeout is not split, as every try costs the whole timeout:
        its error names the request's range.
        """
        try:
            return await self._copy_request(page, count)
        except SclpError as exc:
            if count == 1:
                raise
            if not isinstance(exc, _SclpTimeout):
                half = count // 2
                return await self._copy(page, half) + await self._copy(page + half, count - half)
            raise SclpError(exc.address, f"{exc.reason} (one SCLP request for {exc.address:#x}-"
                                         f"{exc.address + count * PAGE_SIZE - 1:#x}, {count} pages: the "
                                         "failing page is among them)") from None

    async def _copy_request(self, page: int, count: int) -> bytes:
        address = page * PAGE_SIZE
        failed = 0
        while True:
            buf = bytearray(count * PAGE_SIZE)
            req = SdiasRequest(SDIAS_EQ_STORE_DATA, page + FIRST_BLOCK, count, buf)
            resp = await self._call(req, address)
            if resp.event_status not in (EVSTATE_ALL_STORED, EVSTATE_PART_STORED):
                raise SclpError(address, f"SCLP error event status {resp.event_status:#04x}")
            if resp.event_status == EVSTATE_ALL_STORED and resp.block_count == count:
                return bytes(buf)
            failed += 1
            log.warning("SCLP stored %d of %d blocks at %#x (status %#04x, try %d)",
                        resp.block_count, count, address, resp.event_status, failed)
            if failed >= self.timeout_retries:
                raise SclpError(address, f"SCLP stored {resp.block_count} of {count} blocks")

    def release(self) -> None:
        """Forget cached pages and refuse further reads (the HSA was released)."""
        self.released = True
        self._cache.clear()

    async def read(self, address: int, length: int) -> bytes:
        """Return *length* HSA bytes at *address*."""
        if self.released:
            raise SclpError(address, "the HSA was released")
        if length <= 0:
            return b""
        first = address // PAGE_SIZE
        last = (address + length - 1) // PAGE_SIZE
        pages: dict[int, bytes] = {}
        missing = []
        for p in range(first, last + 1):
            cached = self._cache.get(p)
            if cached is None:
                missing.append(p)
            else:
                pages[p] = cached
        # group missing pages into runs of at most max_blocks
        runs: list[tuple[int, int]] = []
        for p in missing:
            if runs and runs[-1][0] + runs[-1][1] == p and runs[-1][1] < self.max_blocks:
                runs[-1] = (runs[-1][0], runs[-1][1] + 1)
            else:
                runs.append((p, 1))
        if runs:
            await self._fetch_runs(runs, pages)
        data = b"".join(pages[p] for p in range(first, last + 1))
        off = address - first * PAGE_SIZE
        return data[off:off + length]

    async def _fetch_runs(self, runs: list[tuple[int, int]], pages: dict[int, bytes]) -> None:
        limit = trio.Semaphore(self.max_inflight)

        async def fetch(page: int, count: int) -> None:
            async with limit:
                data = await self._copy(page, count)
            for i in range(count):
                chunk = data[i * PAGE_SIZE:(i + 1) * PAGE_SIZE]
                pages[page + i] = chunk
                if self.cache_pages and len(self._cache) < self.cache_pages:
                    self._cache[page + i] = chunk

        if len(runs) == 1 or self.max_inflight == 1:
            for page, count in runs:
                await fetch(page, count)
            return
        try:
            async with trio.open_nursery() as nursery:
                for page, count in runs:
                    nursery.start_soon(fetch, page, count)
        except BaseExceptionGroup as group:  # re-raise the first SCLP (or store behind it) error plainly
            for exc in group.exceptions:
                if isinstance(exc, MemoryReadError):
                    raise exc from None
            raise
