"""The ledger's migrations build the schema its code uses, on SQLite and PostgreSQL, and run once."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from ledger_rows import ledger_row
from sqlalchemy import select

from gateway.config import LedgerConfig
from gateway.ledger.engine import HEAD, create_engine, head_version, migrate
from gateway.ledger.rows import REQUEST_COLUMNS, Row, row_insert, write_rows
from gateway.ledger.schema import metadata, requests, spend


async def test_the_migrations_build_the_tables_the_code_uses_and_run_once(ledger_url: str) -> None:
    assert head_version() == HEAD  # the version a started gateway looks for before it loads Alembic
    engine = create_engine(LedgerConfig(url=ledger_url))
    try:
        assert await migrate(engine) == (None, head_version())
        assert await migrate(engine) == (head_version(), head_version())  # a second start changes nothing

        def differences(connection: object) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
            return compare_metadata(context, metadata)

        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_a_batch_written_again_after_a_lost_commit_adds_no_row_and_no_cost_twice(ledger_url: str) -> None:
    # The writer marks the rows of a failed write `tried`: its commit may have gone through
    # before the connection broke, and the batch is written again. Rows prepared when queued
    # and rows prepared by the write are stored alike.
    engine = create_engine(LedgerConfig(url=ledger_url))
    try:
        await migrate(engine)
        first = [priced_row(number) for number in range(3)]
        insert = row_insert(engine.dialect, REQUEST_COLUMNS)
        for row in first[:2]:  # as Ledger.record queues them; the others are prepared by the write
            assert tuple(row.values()) == REQUEST_COLUMNS
            row.prepare(insert)
        async with engine.begin() as connection:
            assert await write_rows(connection, first) == 3
        for row in first:
            row.tried = True
        async with engine.begin() as connection:
            assert await write_rows(connection, [*first, priced_row(3)]) == 1
        async with engine.connect() as connection:
            query = select(requests.c.uid, requests.c.time, requests.c.truncated).order_by(requests.c.uid)
            stored = (await connection.execute(query)).all()
            usd = (await connection.execute(select(spend.c.usd).where(spend.c.scope == "key:k1"))).scalar_one()
        assert [uid for uid, _, _ in stored] == [f"{number:032x}" for number in range(4)]
        arrived = dt.datetime.fromtimestamp(1_800_000_000, dt.UTC)
        assert all(when.replace(tzinfo=when.tzinfo or dt.UTC) == arrived for _, when, _ in stored)  # SQLite: UTC, naive
        assert [truncated for _, _, truncated in stored] == [False, False, False, True]
        assert usd == pytest.approx(4 * 0.25)
    finally:
        await engine.dispose()


def priced_row(number: int) -> Row:
    return ledger_row(
        number,
        at=1_800_000_000.0,
        key="k1",
        route="demo",
        provider="mock",
        status=200,
        cost_usd=0.25,
        truncated=number == 3,
        routed=True,
    )
