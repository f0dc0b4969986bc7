"""Meters in memory: a table of 64-bit integers, the process's own or shared by its workers.

The table has a fixed number of slots, each HEADER + width cells:

    tag, tag       128 bits of BLAKE2b of the meter's name (0, 0: a free slot)
    kind           WINDOW or IN_FLIGHT
    newest         the newest bucket a window has seen (its ring is cleared up to it)
    cells[width]   a window's BUCKETS + 1 counts, a ring indexed by bucket;
                   an in-flight meter's slots held, one count per worker

Slots are found by open addressing from the tag. A slot whose window has emptied, or whose
in-flight counts are all 0, is taken over by a new meter only when its own name is not
found further on, so no chain is ever cut. Each worker counts its in-flight requests in
its own cell: a worker that dies takes its count with it (the one that replaces it clears
that cell), and a window cell written half-way ages out within the minute.
"""

from __future__ import annotations

import array
import hashlib
import struct
from collections.abc import Sequence

from .base import BUCKET_MS, BUCKETS, NEVER, UNKNOWN, Meter, Reading, StoreError, Verdict, leaves_at, window_wait

HEADER = 4
TAG, KIND, NEWEST = 0, 2, 3
WINDOW, IN_FLIGHT = 1, 2
SPAN = BUCKETS + 1  # buckets a window counts
SLOTS = 4096  # meters a table holds: three kinds for each key and route with limits, with room for reloads


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
        self._tags: dict[str, tuple[int, int]] = {}
        self._zeros = memoryview(array.array("q", bytes(8 * SPAN)))

    def admit(self, meters: Sequence[Meter], now_ms: int) -> Verdict:
        bucket = now_ms // BUCKET_MS
        bases = [self.claim(meter.name, IN_FLIGHT if meter.in_flight else WINDOW, bucket) for meter in meters]
        readings = []
        for meter, base in zip(meters, bases, strict=True):
            if meter.in_flight:
                used = self.held(base)
                wait = 0 if used + meter.amount <= meter.limit else NEVER if meter.amount > meter.limit else UNKNOWN
            else:
                self.advance(base, bucket)
                used = self.total(base)
                fits = used + meter.amount <= meter.limit
                wait = 0 if fits else window_wait(self.counts(base, bucket), used, meter.amount, meter.limit, now_ms)
            readings.append(Reading(used, wait, 0))
        admitted = all(reading.wait == 0 for reading in readings)
        if admitted:
            for meter, base in zip(meters, bases, strict=True):
                cell = base + HEADER + (self.worker if meter.in_flight else bucket % SPAN)
                self.cells[cell] += meter.amount
        for index, (meter, base) in enumerate(zip(meters, bases, strict=True)):
            if not meter.in_flight:
                reading = readings[index]
                readings[index] = Reading(reading.used, reading.wait, self.reset(base, bucket, now_ms))
        return Verdict(admitted, tuple(readings), bucket)

    def settle(self, meters: Sequence[Meter], changes: Sequence[int], bucket: int, now_ms: int) -> None:
        current = now_ms // BUCKET_MS
        for meter, change in zip(meters, changes, strict=True):
            if meter.in_flight:
                base = self.find(meter.name)
                if base is not None:
                    cell = base + HEADER + self.worker
                    self.cells[cell] = max(self.cells[cell] - meter.amount, 0)
            elif change and bucket >= current - BUCKETS:
                base = self.find(meter.name)
                if base is not None:
                    self.advance(base, current)
                    cell = base + HEADER + bucket % SPAN
                    self.cells[cell] = max(self.cells[cell] + change, 0)

    def release_worker(self) -> None:
        """Clear this worker's in-flight counts: what a dead worker of the same slot held."""
        cells = self.cells
        for base in range(0, self.slots * self.stride, self.stride):
            if cells[base + KIND] == IN_FLIGHT:
                cells[base + HEADER + self.worker] = 0

    # -- slots

    def tag(self, name: str) -> tuple[int, int]:
        found = self._tags.get(name)
        if found is None:
            high, low = struct.unpack("<qq", hashlib.blake2b(name.encode(), digest_size=16).digest())
            found = (high, low or 1)  # never (0, 0), the mark of a free slot
            if len(self._tags) < 100_000:  # names come from the config: keys and routes
                self._tags[name] = found
        return found

    def find(self, name: str) -> int | None:
        """The base cell of the meter's slot; None when it has none."""
        return self._probe(name, None)[0]

    def claim(self, name: str, kind: int, bucket: int) -> int:
        """The base cell of the meter's slot, taken for it when it has none: the first idle
        slot on its way, else the free one that ends it. Raises StoreError when none is left."""
        base, free = self._probe(name, bucket)
        if base is not None:
            return base
        if free is None:
            raise StoreError("full", f"the rate limits' table is full ({self.slots} meters)")
        cells = self.cells
        cells[free : free + HEADER] = memoryview(array.array("q", (*self.tag(name), kind, bucket)))
        cells[free + HEADER : free + HEADER + SPAN] = self._zeros
        for cell in range(free + HEADER + SPAN, free + self.stride):  # more workers than buckets
            cells[cell] = 0
        return free

    def _probe(self, name: str, bucket: int | None) -> tuple[int | None, int | None]:
        """(the meter's base cell, None when not found; a slot it may take, when `bucket` is given)."""
        high, low = self.tag(name)
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
            cells[ring : ring + SPAN] = self._zeros
        else:
            for old in range(newest + 1, bucket + 1):
                cells[ring + old % SPAN] = 0
        cells[base + NEWEST] = bucket

    def total(self, base: int) -> int:
        return sum(self.cells[base + HEADER : base + HEADER + SPAN])

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
        return sum(self.cells[base + HEADER : base + HEADER + self.workers])
