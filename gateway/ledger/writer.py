"""Rows wait in memory, off every request's path, and one task writes them in batches.

A request's end only appends its row (`add`, no I/O). Every `flush_interval` seconds, or as
soon as `batch_rows` wait, the task writes the rows waiting then, up to `batch_rows` rows a
transaction; rows that arrive meanwhile wait for the next flush (a flush that chased them
would write a stream of tiny transactions under load, each paying a transaction's fixed
cost on the event loop). When a write fails (the database is down or refuses), the rows stay,
the outage is logged once and counted (gateway_ledger_errors_total{operation="write"},
gateway_ledger_up 0), and the task tries again after a doubling pause of at most RETRY_CAP
seconds; when it succeeds, what waited is written and the recovery logged. At most
`buffer_rows` rows (and `buffer_bytes` of their conversations) wait: beyond, new rows are
dropped and counted (gateway_ledger_dropped_rows_total), never silently.

A batch the database refuses for its data (a DataError or IntegrityError: a value it cannot
store) is written row by row, and only the rows it refuses are dropped, so one bad row never
holds the others back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from ..config import LedgerConfig
from ..observability.metrics import Metrics
from .rows import Row

log = logging.getLogger("gateway.ledger")

RETRY_CAP = 5.0  # seconds between attempts at most while the database is down
DROP_LOG_INTERVAL = 10.0  # seconds between two log lines about dropped rows
REASON_CHARS = 300


def reason(exc: BaseException) -> str:
    """What went wrong, for a log line: the driver's own error, never the statement or its
    parameters (which hold prompts and key digests)."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(inner).split())[:REASON_CHARS]
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__


class Writer:
    """The buffer of rows and the task that writes them; `write` writes one batch in one
    transaction and returns how many rows were new (it raises when the database fails)."""

    def __init__(
        self,
        write: Callable[[Sequence[Row]], Awaitable[int]],
        config: LedgerConfig,
        metrics: Metrics,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._write = write
        self.config = config
        self.metrics = metrics
        self._monotonic = monotonic
        self._rows: deque[Row] = deque()
        self._taken = 0  # rows at the head of _rows that the running flush is writing
        self._bytes = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.failing_since: float | None = None  # monotonic seconds; None while writes succeed
        self._failures = 0
        self.dropped = 0
        self._dropped_before = 0  # when the outage began
        self.written = 0
        self._dropped_logged = 0
        self._drop_logged_at = -DROP_LOG_INTERVAL

    @property
    def waiting(self) -> int:
        return len(self._rows)

    def add(self, row: Row) -> None:
        """Queue a row (or drop it, counted, when the buffer is full). Never waits."""
        if len(self._rows) >= self.config.buffer_rows or self._bytes + row.size > self.config.buffer_bytes:
            self._drop(1, "the buffer is full")
            return
        self._rows.append(row)
        self._bytes += row.size
        self.metrics.ledger_buffered.inc()
        if len(self._rows) - self._taken >= self.config.batch_rows and self.failing_since is None:
            self._wake.set()

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        self.metrics.ledger_dropped.inc(count)
        now = self._monotonic()
        if now - self._drop_logged_at >= DROP_LOG_INTERVAL:
            log.error(
                "ledger: %d rows dropped (%s); %d dropped since start",
                self.dropped - self._dropped_logged,
                why,
                self.dropped,
                extra={"fields": {"dropped": self.dropped, "waiting": len(self._rows)}},
            )
            self._drop_logged_at, self._dropped_logged = now, self.dropped

    async def run(self) -> None:
        """Flush until cancelled: every flush_interval seconds or as soon as batch_rows wait;
        while the database fails, after a doubling pause."""
        while True:
            if self.failing_since is None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.config.flush_interval):
                        await self._wake.wait()
            else:
                await asyncio.sleep(min(self.config.flush_interval * 2 ** min(self._failures, 16), RETRY_CAP))
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write every row waiting now (write_now); a caller cancelled meanwhile (the task's
        own stop, a reload cut short) does not cut the write short: SQLAlchemy terminates a
        connection cancelled inside its transaction, and aiosqlite's terminate stops its thread
        with the sqlite connection still open and its write lock held, so every later write
        would wait for that lock in vain."""
        return await asyncio.shield(self.write_now())

    async def write_now(self) -> bool:
        """Write every row waiting now, `batch_rows` a transaction; False when the database
        failed (what was not written still waits). Rows added meanwhile wait for the next flush.
        Cancelling it cuts the write short (only the exit's deadline does: Ledger.aclose)."""
        async with self._lock:
            self._taken = len(self._rows)
            try:
                while self._taken:
                    batch = list(itertools.islice(self._rows, min(self._taken, self.config.batch_rows)))
                    try:
                        await self._write_batch(batch)
                    except BaseException as exc:  # the database is down or refuses, or the write was cut short
                        for row in batch:  # its commit may have gone through all the same: looked for next time
                            row.tried = True
                        if not isinstance(exc, Exception):
                            raise
                        self._failed(exc)
                        return False
                    self._taken -= len(batch)
                    self._succeeded()
                return True
            finally:
                self._taken = 0

    async def _write_batch(self, batch: list[Row]) -> None:
        started = time.perf_counter()
        try:
            new = await self._write(batch)
        except (DataError, IntegrityError) as exc:
            self.metrics.ledger_write.observe(time.perf_counter() - started)
            log.error("ledger: a batch was refused for its data (%s); writing its rows one by one", reason(exc))
            new = await self._write_one_by_one(batch)
        else:
            self.metrics.ledger_write.observe(time.perf_counter() - started)
        self.metrics.ledger_batch.observe(len(batch))
        self.written += new
        for _ in batch:
            self._bytes -= self._rows.popleft().size
        self.metrics.ledger_buffered.dec(len(batch))

    async def _write_one_by_one(self, batch: list[Row]) -> int:
        new = 0
        for row in batch:
            try:
                new += await self._write([row])
            except (DataError, IntegrityError) as exc:
                self._drop(1, f"the database refused it: {reason(exc)}")
        return new

    def _failed(self, exc: Exception) -> None:
        self.metrics.ledger_errors.labels("write").inc()
        self.metrics.ledger_up.set(0)
        self._failures += 1
        if self.failing_since is None:
            self.failing_since = self._monotonic()
            self._dropped_before = self.dropped
            log.error(
                "ledger: cannot write to the database (%s); rows wait in memory (up to %d) and are "
                "written when it is back",
                reason(exc),
                self.config.buffer_rows,
                extra={"fields": {"waiting": len(self._rows)}},
            )

    def _succeeded(self) -> None:
        self.metrics.ledger_up.set(1)
        if self.failing_since is not None:
            down = self._monotonic() - self.failing_since
            log.info(
                "ledger: the database takes writes again after %.1f s; %d rows dropped meanwhile",
                down,
                self.dropped - self._dropped_before,
                extra={"fields": {"outage_seconds": round(down, 1), "dropped": self.dropped - self._dropped_before}},
            )
        self.failing_since = None
        self._failures = 0

    def lose_the_rest(self, why: str) -> None:
        """Count what still waits as dropped (at exit, when the database could not take it)."""
        if self._rows:
            count = len(self._rows)
            self._rows.clear()
            self._bytes = 0
            self.metrics.ledger_buffered.dec(count)
            self._drop_logged_at = -DROP_LOG_INTERVAL
            self._drop(count, why)
