"""One process's ledger: its database engine, the row writer, the key cache and their tasks.

`start()` opens nothing that can fail the gateway: a database that cannot be reached (or a
SQLite file that cannot be written) leaves the ledger down, logged and counted, while
requests go on; the schema is migrated and the keys loaded as soon as it can be reached.
`aclose()` writes what waits (SIGTERM, the end of the app) and closes the connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import LedgerConfig
from ..config.secrets import mask_url
from ..errors import GatewayError
from ..observability.metrics import Metrics
from . import budgets, keys, reports
from .engine import create_engine, migrate
from .rows import REQUEST_COLUMNS, Row, row_insert, write_rows
from .writer import Writer, reason

log = logging.getLogger("gateway.ledger")

T = TypeVar("T")
CLOSE_TIMEOUT = 10.0  # seconds the last flush may take at exit before what waits is given up
CLEANUP_INTERVAL = 3600.0  # seconds between deletions of expired conversations and holds
HOLD_GRACE = 3600.0  # seconds an expired hold is kept before it is deleted


class LedgerUnavailable(GatewayError):
    """The ledger's database cannot be reached (503): the admin endpoints say so."""

    status = 503
    type = "service_unavailable_error"
    code = "ledger_unavailable"

    def __init__(self) -> None:
        super().__init__("The ledger's database cannot be reached right now; try again shortly.")


class Ledger:
    """The ledger of one process. `clock` is the wall clock (seconds since the epoch): admin
    times, hold expiry and retention run on it, so tests can move it."""

    def __init__(self, config: LedgerConfig, metrics: Metrics, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.engine: AsyncEngine = create_engine(config)
        self.insert = row_insert(self.engine.dialect, REQUEST_COLUMNS)
        self.writer = Writer(self._write, config, metrics)
        self.keys = keys.KeyCache()
        self.holds = budgets.HoldQueue(self.engine, clock)
        self.migrated = False
        self.closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._hold_logged_at = -CLEANUP_INTERVAL

    async def start(self) -> None:
        """Migrate and load the keys if the database can be reached; start the writer, the key
        refresh and the cleanup. Never raises for the database."""
        where = mask_url(self.config.url)
        try:
            await self._ensure_migrated()
            await self.keys.refresh(self.engine)
            log.info("ledger: %s", where, extra={"fields": {"ledger": where}})
        except Exception as exc:  # down at start: requests go on, rows wait, the writer keeps trying
            self.metrics.ledger_errors.labels("write").inc()
            self.metrics.ledger_up.set(0)
            log.error("ledger: cannot open %s (%s); requests go on, rows wait", where, reason(exc))
        else:
            self.metrics.ledger_up.set(1)
        self._tasks = [
            asyncio.create_task(self.writer.run()),
            asyncio.create_task(self._refresh_keys()),
            asyncio.create_task(self._clean_up()),
        ]

    async def aclose(self) -> None:
        """Stop the tasks, write what waits (within CLOSE_TIMEOUT), close the connections.

        The last write goes on through a cancellation (a second SIGTERM while draining), up to
        CLOSE_TIMEOUT: the rows of requests that were answered are not given up for it. The
        cancellation is raised again after. It may be called again: the rows of requests that
        ended since are written then (serve.py does, after the requests cut short by a second
        signal have ended)."""
        if not self.closed:
            self.closed = True
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if not self.writer.waiting:
            await self.engine.dispose()
            return
        loop = asyncio.get_running_loop()
        flush = loop.create_task(self.writer.write_now())
        deadline = loop.time() + CLOSE_TIMEOUT
        cancelled = False
        while not flush.done() and loop.time() < deadline:
            try:
                await asyncio.wait({flush}, timeout=deadline - loop.time())
            except asyncio.CancelledError:
                cancelled = True
        if not flush.done():
            flush.cancel()
        written = flush.done() and not flush.cancelled() and flush.exception() is None and flush.result()
        if not written:
            self.writer.lose_the_rest("the database could not be written at exit")
        await self.engine.dispose()
        if cancelled:
            raise asyncio.CancelledError

    async def _ensure_migrated(self) -> None:
        if not self.migrated:
            await migrate(self.engine)
            self.migrated = True

    async def _write(self, rows: Sequence[Row]) -> int:
        await self._ensure_migrated()
        async with self.engine.begin() as connection:
            return await write_rows(connection, rows)

    def record(self, row: Row) -> None:
        """Queue a finished request's row, its parameters made now (rows.Row.prepare); never waits."""
        row.prepare(self.insert)
        self.writer.add(row)

    async def flush(self) -> bool:
        """Write every row waiting now (a config reload); False when the database failed."""
        return await self.writer.flush()

    @property
    def available(self) -> bool:
        """Whether the database is taking writes (budgets are checked only then)."""
        return self.migrated and self.writer.failing_since is None

    async def hold(
        self,
        hold_id: str,
        charges: Sequence[budgets.Charge],
        usd: float,
        *,
        expires: float,
        admits: Callable[[Sequence[budgets.Used]], bool],
    ) -> tuple[list[budgets.Used], bool] | None:
        """budgets.hold on the ledger's database; None when it is not available (the request goes on
        unchecked, counted in gateway_ledger_errors_total{operation="hold"})."""
        if not self.available:
            self.metrics.ledger_errors.labels("hold").inc()
            return None
        try:
            return await self.holds.hold(budgets.HoldRequest(hold_id, charges, usd, expires, admits))
        except Exception as exc:  # the database failed: the request goes on unchecked
            self.metrics.ledger_errors.labels("hold").inc()
            now = time.monotonic()
            if now - self._hold_logged_at >= CLEANUP_INTERVAL / 60:
                self._hold_logged_at = now
                log.error("ledger: a budget could not be checked (%s); the request goes on", reason(exc))
            return None

    async def _refresh_keys(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.config.key_refresh)
            try:
                await self._ensure_migrated()
                await self.keys.refresh(self.engine)
            except Exception as exc:  # the keys loaded last stay in use
                self.metrics.ledger_errors.labels("keys").inc()
                if not failing:
                    log.error("ledger: cannot refresh the keys (%s); the last ones loaded stay in use", reason(exc))
                failing = True
            else:
                failing = False

    async def _clean_up(self) -> None:
        while True:
            try:
                if self.migrated:
                    now = self.clock()
                    before = dt.datetime.fromtimestamp(now - self.config.retention_days * 86400, dt.UTC)
                    forgotten = await reports.forget_conversations(self.engine, before)
                    await budgets.expire_holds(self.engine, now - HOLD_GRACE)
                    if forgotten:
                        log.info("ledger: %d conversations past their retention deleted", forgotten)
            except Exception as exc:  # tried again at the next interval
                self.metrics.ledger_errors.labels("cleanup").inc()
                log.warning("ledger: cleanup failed (%s)", reason(exc))
            await asyncio.sleep(CLEANUP_INTERVAL)

    # -- what the admin endpoints and commands ask: LedgerUnavailable when the database is not there

    async def ask(self, operation: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """Run `operation` on the engine; raises LedgerUnavailable when the database fails."""
        try:
            await self._ensure_migrated()
            return await operation(self.engine)
        except GatewayError:
            raise
        except Exception as exc:
            log.error("ledger: %s", reason(exc))
            raise LedgerUnavailable() from None

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)
