"""Budgets in the database: what a scope has spent in a window, and holds for requests in flight.

Holds are taken in one transaction that first serializes every other hold on the same scopes
(PostgreSQL: a transaction-scoped advisory lock per scope, taken in a fixed order; SQLite:
BEGIN IMMEDIATE's write lock), then reads spent + held in one statement, asks `admits` and
only then adds the hold; the requests of one worker that ask at once share that transaction
(`HoldQueue`), each decided after those before it. Every replica and worker sharing the database sees the others'
holds, so no two requests both take the last of a budget unseen. A hold expires
(`expires`): a process that died with requests in flight does not block a budget for long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import is_postgres
from .schema import holds, spend


@dataclass(frozen=True, slots=True)
class Charge:
    """One budget a request is charged to: its scope and the UTC days [start_day, end_day) of its window."""

    scope: str
    start_day: int
    end_day: int


@dataclass(frozen=True, slots=True)
class Used:
    """What a scope has used in its window: `spent` by written rows, `held` by requests in flight."""

    spent: float
    held: float

    @property
    def total(self) -> float:
        return self.spent + self.held


def _used(charge: Charge, now: float) -> tuple[object, object]:
    """SQL for what `charge`'s scope has spent in its window, and what its live holds keep."""
    spent = (
        select(func.coalesce(func.sum(spend.c.usd), 0.0))
        .where(spend.c.scope == charge.scope, spend.c.day >= charge.start_day, spend.c.day < charge.end_day)
        .scalar_subquery()
    )
    held = (
        select(func.coalesce(func.sum(holds.c.usd), 0.0))
        .where(holds.c.scope == charge.scope, holds.c.expires > now)
        .scalar_subquery()
    )
    return spent, held


@dataclass(slots=True)
class HoldRequest:
    """One request asking to start: its charges, what it may cost (`usd`), until when it holds it
    (`expires`, Unix time), and the rule that decides (`admits`, given what each scope has used)."""

    hold_id: str
    charges: Sequence[Charge]
    usd: float
    expires: float
    admits: Callable[[Sequence[Used]], bool]


async def hold_many(engine: AsyncEngine, asked: Sequence[HoldRequest], *, now: float) -> list[tuple[list[Used], bool]]:
    """Decide `asked` in order, in one transaction: for each, what each of its scopes has used
    (spent, held, and held by those admitted before it here) and whether it was admitted; an
    admitted request with `usd` > 0 holds it on each of its scopes under its hold_id, until its
    row is written (rows.write_rows) or it expires. The reads are one statement: one snapshot,
    so a batch settling holds into spend meanwhile is seen whole or not at all."""
    async with engine.begin() as connection:
        if is_postgres(engine):
            for scope in sorted({charge.scope for request in asked for charge in request.charges}):
                await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:scope))"), {"scope": scope})
        distinct = list(dict.fromkeys(charge for request in asked for charge in request.charges))
        columns = [column for charge in distinct for column in _used(charge, now)]
        row = (await connection.execute(select(*columns))).one()  # type: ignore[call-overload]
        base = {charge: Used(float(row[2 * i]), float(row[2 * i + 1])) for i, charge in enumerate(distinct)}
        added: dict[str, float] = {}  # by scope: what the admitted before have held in this batch
        decided, held = [], []
        for request in asked:
            used = [Used(base[c].spent, base[c].held + added.get(c.scope, 0.0)) for c in request.charges]
            admitted = request.admits(used)
            if admitted and request.usd > 0:
                for charge in request.charges:
                    added[charge.scope] = added.get(charge.scope, 0.0) + request.usd
                    held.append(
                        {"id": request.hold_id, "scope": charge.scope, "usd": request.usd, "expires": request.expires}
                    )
            decided.append((used, admitted))
        if held:
            await connection.execute(insert(holds), held)
    return decided


class HoldQueue:
    """Holds asked for at once go in one transaction (group commit): while one is being
    written, the next requests wait and go together in the next, so a busy budget costs a
    transaction per batch, not per request, and the holds of one worker never queue for the
    database's lock behind each other."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        self._waiting: list[tuple[HoldRequest, asyncio.Future[tuple[list[Used], bool]]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def hold(self, request: HoldRequest) -> tuple[list[Used], bool]:
        """What `hold_many` decides for `request`; raises what the database raised."""
        future: asyncio.Future[tuple[list[Used], bool]] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())
        return await future

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await hold_many(self._engine, [request for request, _ in batch], now=self._clock())
            except Exception as exc:  # every request of the batch gets the database's error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)


async def expire_holds(engine: AsyncEngine, now: float) -> int:
    """Delete holds that have expired; returns how many."""
    async with engine.begin() as connection:
        result = await connection.execute(delete(holds).where(holds.c.expires <= now))
    return int(result.rowcount or 0)
