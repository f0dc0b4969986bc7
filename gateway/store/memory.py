"""Meters in memory: a table of 64-bit integers, the process's own or shared by its workers.

The table has a fixed number of slots, each HEADER + width cells:

    tag, tag       128 bits of BLAKE2b of the meter's name (0, 0: a free slot)
    kind           WINDOW or IN_FLIGHT
    newest         the newest bucket a window has seen (its ring is cleared up to it)
    total          what a window's ring holds, kept as it changes (summed again from the
                   ring whenever a bucket is cleared, so a count half-written heals)
    cells[width]   a window's BUCKETS + 1 counts, a ring indexed by bucket;
                   an in-flight meter's slots held, one count per worker

Slots are found by open addressing from the tag, and remembered by name (checked against
the tag on each use: another worker may have taken the slot over). A slot whose window
has emptied, or whose in-flight counts are all 0, is taken over by a new meter only when
its own name is not found further on, so no chain is ever cut. Each worker counts its
in-flight requests in its own cell: a worker that dies takes its count with it (the one
that replaces it clears that cell).
"""

from __future__ import annotations

import array
import hashlib
import struct
from collections.abc import Sequence

from .base import BUCKET_MS, BUCKETS, NEVER, UNKNOWN, Meter, Reading, StoreError, Verdict, leaves_at, window_wait

HEADER = 5
KIND, NEWEST, TOTAL = 2, 3, 4
WINDOW, IN_FLIGHT = 1, 2
SPAN = BUCKETS + 1  # buckets a window counts
SLOTS = 4096  # meters a table holds: three kinds for each key and route with limits, with room for reloads
REMEMBERED = 100_000  # names whose slot is remembered (they come from the config: keys and routes)


def table_cells(*, workers: int, slots: int = SLOTS) -> int:
    """Cells (8 bytes each) of a table for `workers` processes."""
    return slots * (HEADER + max(SPAN, workers))


class MeterTable:
    """The admission and settling of meters over a table's cells. Not thread-safe: the caller
    holds whatever lock the cells need (none in one process; a file lock between workers)."""

    def __init__(self, cells: memoryview, *, worker: int = 0, workers: int = 1) -> None:
        self.cells = cells
        self.width = max(SPAN, workers)
        self.stride = HEADER + self.width
        self.slots = len(cells) // self.stride
        self.worker = worker
        self.workers = workers
        self._known: dict[str, tuple[int, int, int]] = {}  # name -> base cell, tag
        self._zeros = memoryview(array.array("q", bytes(8 * self.width)))

    def admit(self, meters: Sequence[Meter], now_ms: int) -> Verdict:
        bucket = now_ms // BUCKET_MS
        cells, known = self.cells, self._known
        bases: list[int] = []
        used_before: list[int] = []  # what each meter held
        admitted = True
        for name, limit, amount, in_flight in meters:
            slot = known.get(name)  # as find() does, inlined: this runs for every limit of every request
            if slot is not None and cells[slot[0]] == slot[1] and cells[slot[0] + 1] == slot[2]:
                base = slot[0]
            else:
                base = self.claim(name, IN_FLIGHT if in_flight else WINDOW, bucket)
            if in_flight:
                used = cells[base + HEADER] if self.workers == 1 else self.held(base)
            else:
                if cells[base + NEWEST] < bucket:
                    self.advance(base, bucket)
                used = cells[base + TOTAL]
            if used + amount > limit:
                admitted = False
            bases.append(base)
            used_before.append(used)
        if not admitted:
            return self.refused(meters, bases, used_before, bucket, now_ms)
        reset = leaves_at(bucket) - now_ms  # each window's newest count is now this request's
        ring, own = HEADER + bucket % SPAN, HEADER + self.worker
        readings = []
        for meter, base, used in zip(meters, bases, used_before, strict=False):  # one of each, made above
            if meter.in_flight:
                cells[base + own] += meter.amount
                readings.append(Reading(used, 0, 0))
            else:
                cells[base + ring] += meter.amount
                cells[base + TOTAL] += meter.amount
                readings.append(Reading(used, 0, reset))
        return Verdict(True, tuple(readings), bucket)

    def refused(
        self, meters: Sequence[Meter], bases: list[int], used_before: list[int], bucket: int, now_ms: int
    ) -> Verdict:
        """The readings of a request that does not fit: how long each meter makes it wait."""
        readings = []
        for (_, limit, amount, in_flight), base, used in zip(meters, bases, used_before, strict=True):
            if used + amount <= limit:
                wait = 0
            elif amount > limit:
                wait = NEVER
            else:
                wait = UNKNOWN if in_flight else window_wait(self.counts(base, bucket), used, amount, limit, now_ms)
            readings.append(Reading(used, wait, 0 if in_flight else self.reset(base, bucket, now_ms)))
        return Verdict(False, tuple(readings), bucket)

    def settle(self, meters: Sequence[Meter], changes: Sequence[int], bucket: int, now_ms: int) -> None:
        current = now_ms // BUCKET_MS
        cells = self.cells
        for meter, change in zip(meters, changes, strict=True):
            if meter.in_flight:
                base = self.find(meter.name)
                if base is not None:
                    cell = base + HEADER + self.worker
                    cells[cell] = max(cells[cell] - meter.amount, 0)
            elif change and bucket >= current - BUCKETS:
                base = self.find(meter.name)
                if base is not None:
                    if cells[base + NEWEST] < current:
                        self.advance(base, current)
                    cell = base + HEADER + bucket % SPAN
                    count = max(cells[cell] + change, 0)
                    cells[base + TOTAL] += count - cells[cell]
                    cells[cell] = count

    def release_worker(self) -> None:
        """Clear this worker's in-flight counts: what a dead worker of the same slot held."""
        cells = self.cells
        for base in range(0, self.slots * self.stride, self.stride):
            if cells[base + KIND] == IN_FLIGHT:
                cells[base + HEADER + self.worker] = 0

    # -- slots

    def find(self, name: str) -> int | None:
        """The base cell of the meter's slot; None when it has none."""
        known = self._known.get(name)
        if known is not None and self.cells[known[0]] == known[1] and self.cells[known[0] + 1] == known[2]:
            return known[0]
        return self._probe(name, None)[0]

    def claim(self, name: str, kind: int, bucket: int) -> int:
        """The base cell of the meter's slot, taken for it when it has none: the first idle
        slot on its way, else the free one that ends it. Raises StoreError when none is left."""
        base, free = self._probe(name, bucket)
        if base is None:
            if free is None:
                raise StoreError("full", f"the rate limits' table is full ({self.slots} meters)")
            base = free
            high, low = tag(name)
            self.cells[base : base + HEADER] = memoryview(array.array("q", (high, low, kind, bucket, 0)))
            self.cells[base + HEADER : base + self.stride] = self._zeros
        if len(self._known) < REMEMBERED:
            self._known[name] = (base, *tag(name))
        return base

    def _probe(self, name: str, bucket: int | None) -> tuple[int | None, int | None]:
        """(the meter's base cell, None when not found; a slot it may take, when `bucket` is given)."""
        high, low = tag(name)
        cells, stride, slots = self.cells, self.stride, self.slots
        free = None
        slot = low % slots
        for _ in range(slots):
            base = slot * stride
            if cells[base] == high and cells[base + 1] == low:
                return base, None
            if cells[base] == 0 and cells[base + 1] == 0:
                return None, base if free is None else free
            if bucket is not None and free is None and self.idle(base, bucket):
                free = base
            slot = (slot + 1) % slots
        return None, free

    def idle(self, base: int, bucket: int) -> bool:
        """Whether a slot holds nothing: its window has left, or no request is in flight."""
        if self.cells[base + KIND] == WINDOW:
            return self.cells[base + NEWEST] < bucket - BUCKETS
        return not any(self.cells[base + HEADER : base + HEADER + self.workers])

    # -- windows

    def advance(self, base: int, bucket: int) -> None:
        """Clear the buckets that left the window by `bucket`, and make it the newest."""
        cells = self.cells
        newest = cells[base + NEWEST]
        if bucket <= newest:
            return
        ring = base + HEADER
        if bucket - newest >= SPAN:
            cells[ring : ring + SPAN] = self._zeros[:SPAN]
        else:
            for old in range(newest + 1, bucket + 1):
                cells[ring + old % SPAN] = 0
        cells[base + NEWEST] = bucket
        cells[base + TOTAL] = sum(cells[ring : ring + SPAN])

    def counts(self, base: int, bucket: int) -> list[tuple[int, int]]:
        """(bucket, count) of the window's non-empty buckets, oldest first."""
        ring = base + HEADER
        found = ((old, self.cells[ring + old % SPAN]) for old in range(bucket - BUCKETS, bucket + 1))
        return [(old, count) for old, count in found if count]

    def reset(self, base: int, bucket: int, now_ms: int) -> int:
        """ms until the window is empty: until its newest non-empty bucket leaves."""
        ring = base + HEADER
        for newest in range(bucket, bucket - SPAN, -1):
            if self.cells[ring + newest % SPAN]:
                return leaves_at(newest) - now_ms
        return 0

    # -- in flight

    def held(self, base: int) -> int:
        ring = base + HEADER
        return self.cells[ring] if self.workers == 1 else sum(self.cells[ring : ring + self.workers])


def tag(name: str) -> tuple[int, int]:
    """128 bits of BLAKE2b of a meter's name, as two signed 64-bit cells; never (0, 0), a free slot's."""
    high, low = struct.unpack("<qq", hashlib.blake2b(name.encode(), digest_size=16).digest())
    return high, low or 1
