"""`gateway usage --since 7d --by key`: the ledger's usage report as a table."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncEngine

from ..ledger import reports
from .table import table


async def show(engine: AsyncEngine, start: dt.datetime, by: str) -> int:
    end = dt.datetime.now(dt.UTC)
    data = await reports.usage(engine, start, end, by)
    rows = [
        [
            "-" if item["group"] is None else str(item["group"]),  # a request with no model (or none routed)
            f"{item['requests']:,}",
            f"{item['prompt_tokens']:,}",
            f"{item['completion_tokens']:,}",
            "-" if item["cost_usd"] is None else f"{item['cost_usd']:.4f}",
            f"{item['unpriced_requests']:,}" if item["unpriced_requests"] else "",
        ]
        for item in data
    ]
    if data:
        costs = [item["cost_usd"] for item in data if item["cost_usd"] is not None]
        rows.append(
            [
                "total",
                f"{sum(item['requests'] for item in data):,}",
                f"{sum(item['prompt_tokens'] for item in data):,}",
                f"{sum(item['completion_tokens'] for item in data):,}",
                f"{sum(costs):.4f}" if costs else "-",
                f"{sum(item['unpriced_requests'] for item in data):,}" or "",
            ]
        )
    header = [by, "requests", "prompt tokens", "completion tokens", "cost USD", "unpriced"]
    print(f"usage from {reports.format_time(start)} to {reports.format_time(end)}, by {by}")
    print(table(header, rows, right=(1, 2, 3, 4, 5)) if rows else "no requests")
    return 0
