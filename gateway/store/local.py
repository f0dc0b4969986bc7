"""The meters in this host's memory: the process's own, or a file that every worker maps.

One worker keeps its table in an anonymous mapping: no lock, nothing to start. With
`--workers N` and no Redis, the supervisor creates the table as a file (in /dev/shm when
there is one, so it never touches a disk) and a lock (a POSIX semaphore, multiprocessing's
Lock) before forking; each worker maps the file and holds the lock for the microseconds an
admission or a settling takes. Taking a free semaphore is an atomic instruction in the
process's own memory, where an `flock` was two system calls a step and, with two workers
contending on this machine, cost about a tenth of their requests per second.

The kernel frees nothing a dead process held, so the holder writes its pid in the file's
last cell while it holds the lock, and the supervisor, told of a worker's death before it
starts another (SharedTable.recover), frees the lock if the dead worker held it. A worker
that finds the lock held for LOCK_WAIT seconds all the same counts a store failure
(store.on_error decides). The worker that takes a dead one's place clears its in-flight
counts. So the limits hold for the whole process group, never N times over.

Why shared memory rather than an embedded database (SQLite): an admission is a few
reads and writes of integers, about 5 us here, where a SQLite transaction took 46 us on
the same machine, and under contention SQLite's busy handler sleeps in milliseconds while
holding up the event loop.
"""

from __future__ import annotations

import contextlib
import mmap
import multiprocessing
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Lock

from .base import Meter, SettleFailed, StoreError, Verdict
from .memory import MeterTable, table_cells

SHM = "/dev/shm"
LOCK_WAIT = 1.0  # seconds a worker waits for the table's lock before it counts a store failure
RECOVER_WAIT = 0.1  # seconds the supervisor waits for a lock no live worker has said it holds
OWNER = struct.Struct("<q")  # the pid holding the lock (0: none), in the file's last cell


@dataclass(frozen=True, slots=True)
class SharedTable:
    """The file and the lock the workers share: made by the supervisor before it forks, the
    file removed by it at exit."""

    path: str
    workers: int
    lock: Lock

    @classmethod
    def create(cls, workers: int) -> SharedTable:
        directory = SHM if os.access(SHM, os.W_OK) else None
        descriptor, path = tempfile.mkstemp(prefix="gateway-limits-", dir=directory)
        try:
            os.ftruncate(descriptor, (table_cells(workers=workers) + 1) * 8)  # sparse: pages come as touched
        finally:
            os.close(descriptor)
        return cls(path, workers, multiprocessing.get_context("fork").Lock())

    @property
    def owner_offset(self) -> int:
        """Where the holder's pid is kept: the cell after the table's."""
        return table_cells(workers=self.workers) * 8

    def recover(self, pid: int) -> bool:
        """Worker `pid` has died: free the lock if it held it, before another worker starts.
        Returns whether the lock was freed. A pid of 0 in the owner cell while the lock stays
        taken for RECOVER_WAIT means a worker died between taking it and saying so."""
        descriptor = os.open(self.path, os.O_RDWR)
        try:
            (owner,) = OWNER.unpack(os.pread(descriptor, OWNER.size, self.owner_offset))
            if owner == pid:
                os.pwrite(descriptor, OWNER.pack(0), self.owner_offset)
                self.lock.release()
                return True
            if owner == 0:
                if self.lock.acquire(timeout=RECOVER_WAIT):
                    self.lock.release()
                    return False
                self.lock.release()
                return True
            return False
        finally:
            os.close(descriptor)

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
        shared: SharedTable | None = None,
        owner: memoryview | None = None,
    ) -> None:
        self.table = table
        self.clock = clock
        self._mapping = mapping
        self._shared = shared  # the workers' table, whose lock each step holds; None: this process's own
        self._owner = owner  # the shared file's owner cell
        self._pid = os.getpid()

    @classmethod
    def in_process(cls, *, clock: Callable[[], float] = time.monotonic) -> LocalStore:
        mapping = mmap.mmap(-1, table_cells(workers=1) * 8)  # sparse: pages come as they are touched
        return cls(MeterTable(memoryview(mapping).cast("q")), clock=clock, mapping=mapping)

    @classmethod
    def shared(cls, table: SharedTable, *, worker: int, clock: Callable[[], float] = time.monotonic) -> LocalStore:
        """Worker `worker` (0 to workers - 1) of the table's process group; call after the fork."""
        descriptor = os.open(table.path, os.O_RDWR)
        try:
            mapping = mmap.mmap(descriptor, os.fstat(descriptor).st_size)
        finally:
            os.close(descriptor)  # the mapping keeps the file
        cells = memoryview(mapping).cast("q")
        count = table_cells(workers=table.workers)
        meters = MeterTable(cells[:count], worker=worker, workers=table.workers)
        store = cls(meters, clock=clock, mapping=mapping, shared=table, owner=cells[count : count + 1])
        with store._locked():
            meters.release_worker()
        return store

    async def admit(self, meters: Sequence[Meter], *, ticket: str) -> Verdict:
        if self._shared is None:
            return self.table.admit(meters, round(self.clock() * 1000))
        with self._locked():
            return self.table.admit(meters, round(self.clock() * 1000))

    def settle(
        self, meters: Sequence[Meter], changes: Sequence[int], *, ticket: str, bucket: int, on_error: SettleFailed
    ) -> None:
        if self._shared is None:
            self.table.settle(meters, changes, bucket, round(self.clock() * 1000))
            return
        try:
            with self._locked():
                self.table.settle(meters, changes, bucket, round(self.clock() * 1000))
        except StoreError as exc:
            on_error(exc)

    async def aclose(self) -> None:
        self.table.cells.release()
        if self._owner is not None:
            self._owner.release()
        self._mapping.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the workers' lock, its owner cell saying so; raises StoreError when it stays
        taken for LOCK_WAIT seconds (a holder that died unseen, or a stuck worker)."""
        assert self._shared is not None and self._owner is not None
        if not self._shared.lock.acquire(timeout=LOCK_WAIT):
            raise StoreError("timeout", f"the workers' rate limits table stayed locked for {LOCK_WAIT:g} s")
        self._owner[0] = self._pid
        try:
            yield
        finally:
            self._owner[0] = 0
            self._shared.lock.release()
