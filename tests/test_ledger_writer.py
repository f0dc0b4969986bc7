"""The writer alone, over a fake database: batches, the bounded buffer, outages, refused rows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from ledger_rows import ledger_row
from prometheus_client import CollectorRegistry
from sqlalchemy.exc import DataError, OperationalError

from gateway.config import LedgerConfig
from gateway.ledger.rows import Row
from gateway.ledger.writer import Writer
from gateway.observability.metrics import Metrics


def row(number: int, *, bad: bool = False) -> Row:
    return ledger_row(number, error="bad" if bad else None)


class FakeDatabase:
    """Takes batches, or fails like a database that is down, or refuses rows marked bad."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.written = asyncio.Event()

    async def write(self, rows: Sequence[Row]) -> int:
        if self.down:
            raise OperationalError("INSERT ...", {}, ConnectionRefusedError("connection refused"))
        if any(item.record.error == "bad" for item in rows):
            raise DataError("INSERT ...", {}, ValueError("value out of range for the column"))
        self.batches.append([item.uid for item in rows])
        self.written.set()
        return len(rows)


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name) or 0.0


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


async def test_rows_go_in_batches_of_batch_rows_as_soon_as_that_many_wait(metrics: Metrics) -> None:
    database = FakeDatabase()
    writer = Writer(database.write, LedgerConfig(batch_rows=3, flush_interval=3600), metrics)
    task = asyncio.create_task(writer.run())
    for number in range(7):
        writer.add(row(number))
    await asyncio.wait_for(database.written.wait(), 5)  # woken by the third row, not by the hour
    task.cancel()
    assert await writer.flush()
    assert [len(batch) for batch in database.batches] == [3, 3, 1]
    assert sample(metrics, "gateway_ledger_batch_rows_count") == 3
    assert sample(metrics, "gateway_ledger_buffered_rows") == 0


class SlowDatabase(FakeDatabase):
    """Holds each write open until `release` is set, as a transaction takes time."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.release = asyncio.Event()

    async def write(self, rows: Sequence[Row]) -> int:
        self.writing.set()
        await self.release.wait()
        return await super().write(rows)


async def test_rows_that_arrive_while_a_batch_is_written_wait_for_the_next_flush(metrics: Metrics) -> None:
    # Under load, a flush that went on writing what arrived meanwhile would write a stream of
    # tiny transactions, each paying a transaction's cost on the event loop.
    database = SlowDatabase()
    writer = Writer(database.write, LedgerConfig(batch_rows=3, flush_interval=3600), metrics)
    task = asyncio.create_task(writer.run())
    for number in range(3):
        writer.add(row(number))
    await asyncio.wait_for(database.writing.wait(), 5)
    for number in range(3, 5):  # while the first batch is written: fewer than batch_rows new rows
        writer.add(row(number))
    database.release.set()
    await asyncio.wait_for(database.written.wait(), 5)
    for _ in range(10):  # let the task run on, as it would under load
        await asyncio.sleep(0)
    assert database.batches == [[f"{n:032x}" for n in range(3)]]
    assert writer.waiting == 2
    writer.add(row(5))  # the third new row: a batch waits, the task wakes
    for _ in range(10):
        await asyncio.sleep(0)
    task.cancel()
    assert [len(batch) for batch in database.batches] == [3, 3]
    assert writer.waiting == 0


async def test_the_rows_of_a_write_cut_short_are_looked_for_when_written_again(metrics: Metrics) -> None:
    # The exit's deadline cuts a write short; its commit may still go through, so the rows must
    # not count as new (nor their cost be added again) if they are written again.
    database = SlowDatabase()
    writer = Writer(database.write, LedgerConfig(batch_rows=10, flush_interval=3600), metrics)
    rows = [row(number) for number in range(2)]
    for item in rows:
        writer.add(item)
    flush = asyncio.create_task(writer.write_now())
    await asyncio.wait_for(database.writing.wait(), 5)
    flush.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flush
    assert [item.tried for item in rows] == [True, True]
    assert writer.waiting == 2


async def test_stopping_the_writer_mid_write_lets_the_write_finish(metrics: Metrics) -> None:
    # A connection cancelled inside its transaction would be terminated with its lock held.
    database = SlowDatabase()
    writer = Writer(database.write, LedgerConfig(batch_rows=2, flush_interval=3600), metrics)
    task = asyncio.create_task(writer.run())
    rows = [row(number) for number in range(2)]
    for item in rows:
        writer.add(item)
    await asyncio.wait_for(database.writing.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    database.release.set()
    assert await asyncio.wait_for(writer.flush(), 5)  # waits for the write in flight, then finds nothing
    assert [item.tried for item in rows] == [False, False]  # the write was never cut short
    assert database.batches == [[f"{n:032x}" for n in range(2)]]
    assert writer.waiting == 0


async def test_while_the_database_is_down_rows_wait_up_to_the_bound_then_are_dropped_and_counted(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    database = FakeDatabase()
    database.down = True
    writer = Writer(database.write, LedgerConfig(buffer_rows=5), metrics)
    writer.add(row(0))
    assert not await writer.flush()
    for number in range(1, 8):
        writer.add(row(number))
    assert writer.waiting == 5 and sample(metrics, "gateway_ledger_dropped_rows_total") == 3
    assert sample(metrics, "gateway_ledger_up") == 0
    assert metrics.registry.get_sample_value("gateway_ledger_errors_total", {"operation": "write"}) == 1
    messages = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    assert any("cannot write to the database (ConnectionRefusedError: connection refused)" in m for m in messages)
    assert any("rows dropped (the buffer is full)" in m for m in messages)  # at most a line every 10 s
    assert all("INSERT" not in m for m in messages)  # never the statement, which holds prompts
    database.down = False
    assert await writer.flush()
    back = [record.getMessage() for record in caplog.records if "takes writes again" in record.getMessage()]
    assert len(back) == 1 and "3 rows dropped meanwhile" in back[0]
    assert database.batches == [[f"{number:032x}" for number in range(5)]]
    assert sample(metrics, "gateway_ledger_up") == 1


async def test_buffer_bytes_bounds_the_conversations_waiting_not_the_rows(metrics: Metrics) -> None:
    database = FakeDatabase()
    database.down = True
    writer = Writer(database.write, LedgerConfig(buffer_rows=100, buffer_bytes=1000), metrics)
    for number in range(50):  # rows without a conversation count against buffer_rows alone
        writer.add(row(number))
    talk = ledger_row(50)
    talk.conversation = ("x" * 400, "y" * 400)
    writer.add(talk)
    too_much = ledger_row(51)
    too_much.conversation = ("x" * 101, "y" * 100)  # one character past the 1,000
    writer.add(too_much)
    writer.add(row(52))
    assert writer.waiting == 52 and sample(metrics, "gateway_ledger_dropped_rows_total") == 1


async def test_a_row_the_database_refuses_is_dropped_alone(metrics: Metrics) -> None:
    database = FakeDatabase()
    writer = Writer(database.write, LedgerConfig(batch_rows=10), metrics)
    for number in range(4):
        writer.add(row(number, bad=number == 2))
    assert await writer.flush()
    assert sorted(uid for batch in database.batches for uid in batch) == [f"{n:032x}" for n in (0, 1, 3)]
    assert writer.waiting == 0 and sample(metrics, "gateway_ledger_dropped_rows_total") == 1
