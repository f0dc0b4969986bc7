"""A ledger row (one finished request), made from its `RequestRecord`, and the one transaction
that writes a batch of them.

A batch adds its rows (a row already there, from a batch whose commit was lost with its
connection, is not added twice), their conversations, their cost to the spend of each
scope they are charged to (key:<id>, route:<name>) for their UTC day, and releases the
budget holds their requests made: all or nothing.

The rows go in through the driver's own executemany, with a statement SQLAlchemy compiled
once per dialect (SQLAlchemy's per-row handling of an executemany costs several times what
the driver's does). Each row's parameters are made when it is queued (`Row.prepare`), a few
microseconds after each request, rather than for the whole batch at its flush, which so
holds the event loop in shorter stretches.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from ..observability.metrics import NO_KEY, UNKNOWN_KEY
from ..observability.record import RequestRecord
from .schema import conversations, holds, requests, spend

DAY = 86400  # seconds
MOST_TOKENS = 2**31 - 1  # an upstream's count above this (a 32-bit column) is stored as this


def key_scope(key_id: str) -> str:
    """The budget scope of a client key's spend."""
    return f"key:{key_id}"


def route_scope(route: str) -> str:
    """The budget scope of a route's spend (every key's together)."""
    return f"route:{route}"


@dataclass(slots=True)
class Row:
    """One request waiting to be written (schema.requests), and what writing it settles.

    It keeps the request's record as it ended; its columns' parameters are made when it is
    queued (`prepare`), after its response has gone."""

    record: RequestRecord
    finished: float  # time.perf_counter() at the request's end
    member: str | None = None  # one upstream call of a request made of several (quorum routes)
    held: bool = False  # whether the request holds budget under its uid, released when the row is written
    conversation: tuple[str, str] | None = None  # JSON of the messages and of the answer, when they are kept
    tried: bool = False  # a write of it failed: it may be in the database already (its commit lost)
    parameters: tuple[Any, ...] | None = None  # its INSERT's, in the driver's form, once prepared

    def prepare(self, insert: RowInsert) -> None:
        """Make the row's parameters for `insert` now (the INSERT of REQUEST_COLUMNS)."""
        self.parameters = insert.parameters(self.values())

    @property
    def uid(self) -> str:
        return self.record.uid

    @property
    def arrived(self) -> dt.datetime:
        """When the request arrived, in UTC (the `time` column)."""
        return dt.datetime.fromtimestamp(self.record.at, dt.UTC)

    @property
    def day(self) -> int:
        return int(self.record.at // DAY)

    @property
    def size(self) -> int:
        """The characters of its conversation, when kept: what ledger.buffer_bytes bounds (the
        rows themselves are bounded by ledger.buffer_rows)."""
        return sum(map(len, self.conversation)) if self.conversation else 0

    @property
    def scopes(self) -> tuple[str, ...]:
        """The spend this row's cost adds to: its key's (when it had one) and its route's. A call
        of a quorum request adds to its member route's only: the request's own row, whose
        cost is its calls' together, is the key's."""
        record = self.record
        found = []
        if record.key not in (NO_KEY, UNKNOWN_KEY) and self.member is None:
            found.append(key_scope(record.key))
        if record.routed:
            found.append(route_scope(record.route))
        return tuple(found)

    def values(self) -> dict[str, Any]:
        """The row's columns of schema.requests (REQUEST_COLUMNS)."""
        record = self.record
        ttft = None if record.first_token_at is None else round((record.first_token_at - record.started) * 1000, 3)
        return {
            "uid": record.uid,
            "time": self.arrived,
            "day": self.day,
            "request_id": record.request_id,
            "member": self.member,
            "path": record.path,
            "key_id": record.key,
            "route": record.route,
            "provider": record.provider,
            "upstream_model": record.upstream_model,
            "stream": record.stream,
            "status": record.status,
            "outcome": record.outcome,
            "error": record.error,
            "prompt_tokens": tokens(record.prompt_tokens),
            "completion_tokens": tokens(record.completion_tokens),
            "cached_tokens": tokens(record.cached_tokens),
            "cost_usd": record.cost_usd,
            "duration_ms": round((self.finished - record.started) * 1000, 3),
            "ttft_ms": ttft,
            "attempts": record.attempts,
            "truncated": record.truncated,
        }


REQUEST_COLUMNS = tuple(column.name for column in requests.columns if column.name != "id")  # Row.values()' keys


def row_from(
    record: RequestRecord,
    finished: float,
    *,
    member: str | None = None,
    held: bool = False,
    conversation: tuple[Any, Any] | None = None,
) -> Row:
    """The row of a finished request; `finished` is time.perf_counter() at its end, `conversation`
    (its messages, and the answer its client got) when ledger.store_messages is on. `member` names
    one upstream call of a request made of several (quorum routes): such rows share the request's
    request_id (and each its own record, so its own uid)."""
    encoded = None
    if conversation is not None:
        messages, answer = conversation
        encoded = (orjson.dumps(messages).decode(), orjson.dumps(answer).decode())
    return Row(record, finished, member=member, held=held, conversation=encoded)


def tokens(count: int | None) -> int | None:
    """A token count an upstream reported, within what the column holds."""
    return None if count is None else min(max(count, 0), MOST_TOKENS)


@dataclass(frozen=True, slots=True)
class RowInsert:
    """schema.requests' INSERT for one dialect, as its driver takes it: the statement (the
    dialect's placeholders, a uid already there skipped) and, per placeholder, the column
    and the function that turns a value into the driver's (None: as it is)."""

    statement: str
    columns: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """One row's parameters, from Row.values()."""
        return tuple(
            value if process is None else process(value)
            for process, value in zip(self.processors, map(values.__getitem__, self.columns), strict=True)
        )


_INSERTS: dict[tuple[str, str, str, tuple[str, ...]], RowInsert] = {}
LOOKUP_UIDS = 1000  # uids in one `IN (...)`: within every driver's limit on parameters


def row_insert(dialect: Dialect, columns: Sequence[str]) -> RowInsert:
    """The INSERT of `columns` for `dialect` (SQLite or PostgreSQL through aiosqlite or
    asyncpg, whose placeholders are positional), compiled once."""
    key = (dialect.name, dialect.driver, dialect.paramstyle, tuple(columns))
    found = _INSERTS.get(key)
    if found is None:
        insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        compiled = (
            insert(requests)
            .on_conflict_do_nothing(index_elements=["uid"])
            .compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
        )
        if not compiled.positiontup:
            raise ValueError(f"the ledger needs a driver with positional placeholders, not {dialect.paramstyle}")
        order = tuple(compiled.positiontup)
        processors = tuple(requests.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order)
        found = _INSERTS[key] = RowInsert(compiled.string, order, processors)
    return found


def in_pieces(values: list[str]) -> list[list[str]]:
    """`values` in pieces of at most LOOKUP_UIDS, for one `IN (...)` each."""
    return [values[start : start + LOOKUP_UIDS] for start in range(0, len(values), LOOKUP_UIDS)]


async def write_rows(connection: AsyncConnection, rows: Sequence[Row]) -> int:
    """Write `rows` in the connection's transaction; returns how many were new.

    A row whose earlier write failed is looked for first: if that transaction's commit
    went through before its connection broke, the row is there and is not added (nor its
    cost) again."""
    present: set[str] = set()
    again = [row.uid for row in rows if row.tried]
    for piece in in_pieces(again):
        found = await connection.execute(select(requests.c.uid).where(requests.c.uid.in_(piece)))
        present.update(found.scalars().all())
    new = [row for row in rows if row.uid not in present]
    if new:
        prepared = row_insert(connection.dialect, REQUEST_COLUMNS)
        parameters = [row.parameters or prepared.parameters(row.values()) for row in new]
        await connection.exec_driver_sql(prepared.statement, parameters)
    insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    talks = [
        {"uid": row.uid, "time": row.arrived, "messages": row.conversation[0], "answer": row.conversation[1]}
        for row in new
        if row.conversation is not None
    ]
    if talks:
        await connection.execute(insert(conversations).on_conflict_do_nothing(index_elements=["uid"]), talks)
    costs: dict[tuple[str, int], float] = defaultdict(float)
    for row in new:
        cost = row.record.cost_usd
        if cost:
            for scope in row.scopes:
                costs[scope, row.day] += cost
    if costs:
        upsert = insert(spend)
        await connection.execute(
            upsert.on_conflict_do_update(
                index_elements=["scope", "day"], set_={"usd": spend.c.usd + upsert.excluded.usd}
            ),
            [{"scope": scope, "day": day, "usd": usd} for (scope, day), usd in sorted(costs.items())],
        )
    released = [row.uid for row in rows if row.held]
    for piece in in_pieces(released):
        await connection.execute(delete(holds).where(holds.c.id.in_(piece)))
    return len(new)
