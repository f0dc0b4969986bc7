"""What the ledger costs: on a request's path, in its database, and for a budget.

    python -m bench.ledger [--rows 20000] [--rounds 5] [--postgres]

Prints, with one JSON line at the end:
- the CPU a request's end spends on the ledger (its cost, its row, queued): microseconds
  per request on the event loop, the best and the median of the rounds;
- rows written per second, in batches of 500 (the default), on SQLite (a file in a
  temporary folder) and, with --postgres, on a throwaway cluster of Debian's PostgreSQL
  (started and removed here, as the tests do);
- the latency of one budget check (the hold taken before a budgeted request is sent).
Medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.config import LedgerConfig, Limits, Price, Route, Target
from gateway.ledger.budgets import Charge, HoldRequest, hold_many
from gateway.ledger.engine import create_engine, migrate
from gateway.ledger.rows import row_from, write_rows
from gateway.ledger.writer import Writer
from gateway.observability.metrics import Metrics
from gateway.observability.record import RequestRecord
from gateway.policy.prices import PriceBook, Tokens

BATCH = 500


def record(number: int) -> RequestRecord:
    started = time.perf_counter()
    finished = RequestRecord(
        request_id=f"bench-{number}",
        method="POST",
        path="/v1/chat/completions",
        client="127.0.0.1",
        started=started,
        at=time.time(),
        route="smart",
        provider="openai",
        key="team-a",
        upstream_model="gpt-4o",
        status=200,
        prompt_tokens=900,
        completion_tokens=120,
        cached_tokens=300,
        attempts=1,
        routed=True,
    )
    finished.first_token_at = started + 0.2
    return finished


def path_cost(count: int) -> float:
    """Microseconds a request's end spends on the ledger: price, row, queue."""
    book = PriceBook()
    route = Route("smart", (Target("openai"),), Limits(), price=Price(input=2.5, output=10, cached_input=1.25))
    writer = Writer(
        lambda rows: asyncio.sleep(0, len(rows)), LedgerConfig(buffer_rows=count + 1), Metrics(CollectorRegistry())
    )
    records = [record(number) for number in range(count)]
    started = time.perf_counter()
    for item in records:
        item.cost_usd = book.cost(route, None, "gpt-4o", Tokens(prompt=900, completion=120, cached=300))
        writer.add(row_from(item, time.perf_counter()))
    return (time.perf_counter() - started) / count * 1e6


async def write_rate(url: str, count: int) -> float:
    """Rows a second, written in batches of BATCH (one transaction each)."""
    engine = create_engine(LedgerConfig(url=url))
    try:
        await migrate(engine)
        rows = [row_from(record(number), time.perf_counter()) for number in range(count)]
        started = time.perf_counter()
        for first in range(0, count, BATCH):
            async with engine.begin() as connection:
                await write_rows(connection, rows[first : first + BATCH])
        return count / (time.perf_counter() - started)
    finally:
        await engine.dispose()


async def hold_latency(url: str, count: int) -> float:
    """Milliseconds one budget check takes (median)."""
    engine = create_engine(LedgerConfig(url=url))
    try:
        await migrate(engine)
        charges = [Charge("key:team-a", 0, 1 << 30), Charge("route:smart", 0, 1 << 30)]
        times = []
        for number in range(count):
            started = time.perf_counter()
            asked = HoldRequest(f"{number:032x}", charges, 0.01, time.time() + 60, lambda used: True)
            await hold_many(engine, [asked], now=time.time())
            times.append(time.perf_counter() - started)
        return statistics.median(times) * 1000
    finally:
        await engine.dispose()


TESTS = Path(__file__).resolve().parents[1] / "tests"


def databases(postgres: bool, folder: Path) -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = [("sqlite", lambda round_: f"sqlite://{folder}/ledger-{round_}.db")]
    if postgres:
        sys.path.insert(0, str(TESTS))
        from postgres import PostgresServer, require_postgres

        server = PostgresServer(require_postgres())
        server.start()
        found.append(("postgresql", lambda round_: server.new_database()))
        found.append(("stop", server.close))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--postgres", action="store_true", help="also on a throwaway PostgreSQL cluster")
    args = parser.parse_args()
    result: dict[str, float] = {}
    costs = [path_cost(args.rows) for _ in range(args.rounds)]
    result["path_us_per_request_best"], result["path_us_per_request_median"] = min(costs), statistics.median(costs)
    print(
        f"on a request's path: {min(costs):.2f} us per request at best, {statistics.median(costs):.2f} median "
        "(price, row, queue; a loaded machine only adds to it)"
    )
    with tempfile.TemporaryDirectory() as folder:
        found = databases(args.postgres, Path(folder))
        try:
            for name, url_for in found:
                if name == "stop":
                    continue
                rates = [asyncio.run(write_rate(url_for(r), args.rows)) for r in range(args.rounds)]
                result[f"{name}_rows_per_second"] = statistics.median(rates)
                result[f"{name}_hold_ms"] = statistics.median(
                    asyncio.run(hold_latency(url_for(f"h{r}"), 200)) for r in range(args.rounds)
                )
                print(
                    f"{name}: {result[f'{name}_rows_per_second']:,.0f} rows/s in batches of {BATCH}; "
                    f"a budget check {result[f'{name}_hold_ms']:.2f} ms"
                )
        finally:
            for name, stop in found:
                if name == "stop":
                    stop()
    print(json.dumps({"bench": "ledger", "rows": args.rows, "rounds": args.rounds, **result}))


if __name__ == "__main__":
    main()
