"""What the ledger answers: usage grouped by key, route, model or day; one request's rows and
conversation; and the deletion of conversations past their retention.

Reports count requests as their clients saw them (rows with no `member`), so the upstream
calls of a quorum request are not counted as requests of their own.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .budgets import Charge
from .engine import READ_ONLY
from .keys import utc
from .schema import conversations, requests, spend

GROUPS = {
    "key": requests.c.key_id,
    "route": requests.c.route,
    "model": requests.c.upstream_model,
    "day": requests.c.day,
}
EPOCH = dt.date(1970, 1, 1)
HIDDEN = ("id", "uid", "day")  # the ledger's own bookkeeping, not shown
REQUEST_ROWS = 100  # rows of one request id shown at most (a client may reuse its ids)


async def usage(engine: AsyncEngine, start: dt.datetime, end: dt.datetime, group_by: str) -> list[dict[str, Any]]:
    """`[{"group", "requests", "prompt_tokens", "completion_tokens", "cost_usd", "unpriced_requests"}]`
    for requests that arrived in [start, end), by `group_by` (one of GROUPS), ordered by group.

    `cost_usd` is null when no request of the group has a known cost; `unpriced_requests`
    counts those that used tokens of a model with no known price (their cost is not in the sum).
    """
    column = GROUPS[group_by]
    unpriced = case(
        (
            requests.c.cost_usd.is_(None)
            & (func.coalesce(requests.c.prompt_tokens, 0) + func.coalesce(requests.c.completion_tokens, 0) > 0),
            1,
        ),
        else_=0,
    )
    query = (
        select(
            column.label("group"),
            func.count().label("requests"),
            func.coalesce(func.sum(requests.c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(requests.c.completion_tokens), 0).label("completion_tokens"),
            func.sum(requests.c.cost_usd).label("cost_usd"),
            func.sum(unpriced).label("unpriced_requests"),
        )
        .where(requests.c.time >= start, requests.c.time < end, requests.c.member.is_(None))
        .group_by(column)
        .order_by(column)
    )
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        rows = (await connection.execute(query)).mappings().all()
    return [
        {
            "group": group_name(group_by, row["group"]),
            "requests": int(row["requests"]),
            "prompt_tokens": int(row["prompt_tokens"]),
            "completion_tokens": int(row["completion_tokens"]),
            "cost_usd": None if row["cost_usd"] is None else round(float(row["cost_usd"]), 9),
            "unpriced_requests": int(row["unpriced_requests"] or 0),
        }
        for row in rows
    ]


def group_name(group_by: str, value: Any) -> str | None:
    if group_by == "day":
        return (EPOCH + dt.timedelta(days=int(value))).isoformat()
    return None if value is None else str(value)


async def request_rows(engine: AsyncEngine, request_id: str) -> list[dict[str, Any]]:
    """The rows of the request(s) with this id, newest first, each with its `messages` and
    `answer` (null when they were not kept, or are past their retention)."""
    query = (
        select(requests, conversations.c.messages, conversations.c.answer)
        .select_from(requests.outerjoin(conversations, conversations.c.uid == requests.c.uid))
        .where(requests.c.request_id == request_id)
        .order_by(requests.c.time.desc(), requests.c.id.desc())
        .limit(REQUEST_ROWS)
    )
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        rows = (await connection.execute(query)).mappings().all()
    found = []
    for row in rows:
        item = {str(column.name): row[column.name] for column in requests.columns if column.name not in HIDDEN}
        item["time"] = format_time(row["time"])
        item["messages"] = orjson.loads(row["messages"]) if row["messages"] is not None else None
        item["answer"] = orjson.loads(row["answer"]) if row["answer"] is not None else None
        found.append(item)
    return found


def format_time(value: dt.datetime | None) -> str | None:
    """ISO 8601 in UTC, `Z`-suffixed."""
    at = utc(value)
    return None if at is None else at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def spend_in(engine: AsyncEngine, charge: Charge) -> float:
    """USD the scope has spent in the charge's window, by the rows written so far."""
    query = select(func.coalesce(func.sum(spend.c.usd), 0.0)).where(
        spend.c.scope == charge.scope, spend.c.day >= charge.start_day, spend.c.day < charge.end_day
    )
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        value = await connection.scalar(query)
    return float(value or 0.0)


async def forget_conversations(engine: AsyncEngine, before: dt.datetime) -> int:
    """Delete the conversations of requests that arrived before `before`; returns how many."""
    async with engine.begin() as connection:
        result = await connection.execute(delete(conversations).where(conversations.c.time < before))
    return int(result.rowcount or 0)
