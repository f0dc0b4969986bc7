"""Budgets in the database: what a scope has spent in a window, and holds for requests in flight.

A hold is taken in one transaction that first serializes every other hold on the same scopes
(PostgreSQL: a transaction-scoped advisory lock per scope, taken in a fixed order; SQLite:
BEGIN IMMEDIATE's write lock), then reads spent + held in one statement, asks `admits` and
only then adds the hold. Every replica and worker sharing the database sees the others'
holds, so no two requests both take the last of a budget unseen. A hold expires
(`expires`): a process that died with requests in flight does not block a budget for long.
"""

from __future__ import annotations

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


async def hold(
    engine: AsyncEngine,
    hold_id: str,
    charges: Sequence[Charge],
    usd: float,
    *,
    now: float,
    expires: float,
    admits: Callable[[Sequence[Used]], bool],
) -> tuple[list[Used], bool]:
    """What each charge's scope has used (before this request) and whether the request was
    admitted; when it was and `usd` > 0, `usd` is held on every scope under `hold_id` until its
    row is written (rows.write_rows) or `expires` (Unix time) passes. The reads are one statement:
    one snapshot, so a batch settling a hold into spend meanwhile is seen whole or not at all."""
    async with engine.begin() as connection:
        if is_postgres(engine):
            for scope in sorted({charge.scope for charge in charges}):
                await connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:scope))"), {"scope": scope})
        columns = [column for charge in charges for column in _used(charge, now)]
        row = (await connection.execute(select(*columns))).one()  # type: ignore[call-overload]
        used = [Used(float(row[i]), float(row[i + 1])) for i in range(0, len(columns), 2)]
        admitted = admits(used)
        if admitted and usd > 0:
            await connection.execute(
                insert(holds),
                [{"id": hold_id, "scope": charge.scope, "usd": usd, "expires": expires} for charge in charges],
            )
    return used, admitted


async def expire_holds(engine: AsyncEngine, now: float) -> int:
    """Delete holds that have expired; returns how many."""
    async with engine.begin() as connection:
        result = await connection.execute(delete(holds).where(holds.c.expires <= now))
    return int(result.rowcount or 0)
