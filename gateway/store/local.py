"""The meters in this host's memory: the process's own, or a file that every worker maps.

One worker keeps its table in an anonymous mapping: no lock, nothing to start. With
`--workers N` and no Redis, the supervisor creates the table as a file (in /dev/shm when
there is one, so it never touches a disk) before forking; each worker maps it and holds
an exclusive `flock` on it for the microseconds an admission or a settling takes. The
kernel drops a dead process's flock, so a worker that dies never leaves the others
locked out, and the worker that takes its place clears its in-flight counts. So the
limits hold for the whole process group, never N times over.

Why shared memory rather than an embedded database (SQLite): an admission is a few
reads and writes of integers, about 5 us here, where a SQLite transaction took 46 us on
the same machine, and under contention SQLite's busy handler sleeps in milliseconds while
holding up the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from .base import Meter, SettleFailed, Verdict
from .memory import MeterTable, table_cells

SHM = "/dev/shm"


@dataclass(frozen=True, slots=True)
class SharedTable:
    """The file the workers share: made by the supervisor, removed by it at exit."""

    path: str
    workers: int

    @classmethod
    def create(cls, workers: int) -> SharedTable:
        directory = SHM if os.access(SHM, os.W_OK) else None
        descriptor, path = tempfile.mkstemp(prefix="gateway-limits-", dir=directory)
        try:
            os.ftruncate(descriptor, table_cells(workers=workers) * 8)  # sparse: pages come as they are touched
        finally:
            os.close(descriptor)
        return cls(path, workers)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


class LocalStore:
    """A `Store` over a MeterTable in this host's memory. `clock` is monotonic seconds."""

    def __init__(
        self,
        table: MeterTable,
        *,
        clock: Callable[[], float],
        mapping: mmap.mmap,
        descriptor: int | None = None,
    ) -> None:
        self.table = table
        self.clock = clock
        self._mapping = mapping
        self._descriptor = descriptor  # the shared file, locked around each step; None: this process's own

    @classmethod
    def in_process(cls, *, clock: Callable[[], float] = time.monotonic) -> LocalStore:
        mapping = mmap.mmap(-1, table_cells(workers=1) * 8)  # sparse: pages come as they are touched
        return cls(MeterTable(memoryview(mapping).cast("q")), clock=clock, mapping=mapping)

    @classmethod
    def shared(cls, table: SharedTable, *, worker: int, clock: Callable[[], float] = time.monotonic) -> LocalStore:
        """Worker `worker` (0 to workers - 1) of the table's process group; call after the fork."""
        descriptor = os.open(table.path, os.O_RDWR)
        mapping = mmap.mmap(descriptor, os.fstat(descriptor).st_size)
        meters = MeterTable(memoryview(mapping).cast("q"), worker=worker, workers=table.workers)
        store = cls(meters, clock=clock, mapping=mapping, descriptor=descriptor)
        with store._locked():
            meters.release_worker()
        return store

    async def admit(self, meters: Sequence[Meter], *, ticket: str) -> Verdict:
        if self._descriptor is None:
            return self.table.admit(meters, round(self.clock() * 1000))
        with self._locked():
            return self.table.admit(meters, round(self.clock() * 1000))

    def settle(
        self, meters: Sequence[Meter], changes: Sequence[int], *, ticket: str, bucket: int, on_error: SettleFailed
    ) -> None:
        if self._descriptor is None:
            self.table.settle(meters, changes, bucket, round(self.clock() * 1000))
            return
        with self._locked():
            self.table.settle(meters, changes, bucket, round(self.clock() * 1000))

    async def aclose(self) -> None:
        self.table.cells.release()
        self._mapping.close()
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self._descriptor is not None
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
