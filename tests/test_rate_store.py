"""The stores of the rate limits' meters, table-driven: the same cases through the table in
process, the table the workers share, and a real Redis, on a clock the tests move.

The window rule (store.base) is kept twice, in Python (MeterTable) and in Redis' Lua
script; these cases, and a random run compared step by step, hold the two to each other.
"""

from __future__ import annotations

import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import FakeClock
from redis_server import RedisServer

from gateway.store import LocalStore, Meter, Reading, SharedTable, Store, StoreError
from gateway.store.base import BUCKET_MS, NEVER, UNKNOWN, leaves_at
from gateway.store.memory import MeterTable, table_cells

STORES = ("process", "shared", "redis")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    made = await make_store(request.param, clock, request)
    yield made
    await made.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def make_store(kind: str, clock: FakeClock, request: pytest.FixtureRequest) -> Store:
    if kind == "process":
        return LocalStore.in_process(clock=clock)
    if kind == "shared":
        table = SharedTable.create(2)
        request.addfinalizer(table.remove)
        return LocalStore.shared(table, worker=0, clock=clock)
    from gateway.store.redis_store import RedisStore

    server = request.getfixturevalue("redis_server")
    server.command("FLUSHALL")
    return RedisStore(server.url, timeout=2.0, lease=600, clock=clock)


async def settled(store: Store) -> None:
    drain = getattr(store, "drain", None)
    if drain is not None:
        await drain()


def rpm(limit: int, name: str = "key:k:rpm") -> Meter:
    return Meter(name, limit, 1)


async def test_a_minute_holds_its_limit_and_frees_each_request_60_to_60_6_seconds_later(
    store: Store, clock: FakeClock
) -> None:
    first = await store.admit([rpm(3)], ticket="r1")
    assert first.admitted and first.readings[0].used == 0
    now_ms = round(clock() * 1000)
    assert first.readings[0].reset == leaves_at(now_ms // BUCKET_MS) - now_ms
    clock.advance(10)
    assert (await store.admit([rpm(3)], ticket="r2")).admitted
    assert (await store.admit([rpm(3)], ticket="r3")).admitted
    refused = await store.admit([rpm(3)], ticket="r4")
    assert not refused.admitted and refused.readings[0].used == 3
    wait = refused.readings[0].wait
    assert 50_000 <= wait <= 50_600  # the first request leaves between 60 and 60.6 s after it came
    clock.advance(wait / 1000 - 0.001)
    assert not (await store.admit([rpm(3)], ticket="r5")).admitted
    clock.advance(0.001)
    assert (await store.admit([rpm(3)], ticket="r6")).admitted


async def test_admission_is_all_or_nothing(store: Store) -> None:
    room, full = rpm(5, "route:a:rpm"), Meter("key:k:max_parallel", 1, 1, in_flight=True)
    assert (await store.admit([full], ticket="r1")).admitted
    refused = await store.admit([room, full], ticket="r2")
    assert not refused.admitted
    assert [reading.wait for reading in refused.readings] == [0, UNKNOWN]
    again = await store.admit([room], ticket="r3")
    assert again.readings[0].used == 0  # the refused request took nothing of the meter that had room


async def test_tokens_are_reserved_then_settled_to_the_real_usage(store: Store, clock: FakeClock) -> None:
    tpm = Meter("key:k:tpm", 1000, 600)
    admitted = await store.admit([tpm], ticket="r1")
    assert admitted.admitted
    assert not (await store.admit([tpm], ticket="r2")).admitted  # 600 + 600 > 1000
    store.settle([tpm], [-500], ticket="r1", bucket=admitted.bucket, on_error=pytest.fail)  # used 100
    await settled(store)
    clock.advance(1)
    second = await store.admit([tpm], ticket="r3")
    assert second.admitted and second.readings[0].used == 100


async def test_a_settling_after_the_minute_changes_nothing(store: Store, clock: FakeClock) -> None:
    tpm = Meter("key:k:tpm", 1000, 600)
    admitted = await store.admit([tpm], ticket="r1")
    clock.advance(61)
    assert (await store.admit([tpm], ticket="r2")).admitted
    store.settle([tpm], [+5000], ticket="r1", bucket=admitted.bucket, on_error=pytest.fail)
    await settled(store)
    assert (await store.admit([Meter("key:k:tpm", 1000, 400)], ticket="r3")).admitted


async def test_in_flight_slots_are_held_until_settled(store: Store) -> None:
    parallel = Meter("key:k:max_parallel", 2, 1, in_flight=True)
    first = await store.admit([parallel], ticket="r1")
    assert (await store.admit([parallel], ticket="r2")).admitted
    refused = await store.admit([parallel], ticket="r3")
    assert not refused.admitted and refused.readings[0] == Reading(2, UNKNOWN, 0)
    store.settle([parallel], [0], ticket="r1", bucket=first.bucket, on_error=pytest.fail)
    await settled(store)
    assert (await store.admit([parallel], ticket="r4")).admitted


async def test_a_request_larger_than_a_limit_never_fits(store: Store) -> None:
    refused = await store.admit([Meter("route:r:tpm", 100, 101)], ticket="r1")
    assert not refused.admitted and refused.readings[0].wait == NEVER
    lone = await store.admit([Meter("route:r:tpm", 100, 100)], ticket="r2")
    assert lone.admitted


async def test_the_wait_counts_the_buckets_that_must_leave_for_the_request_to_fit(
    store: Store, clock: FakeClock
) -> None:
    tpm = Meter("key:k:tpm", 100, 40)
    first = await store.admit([tpm], ticket="r1")
    clock.advance(20)
    second = await store.admit([tpm], ticket="r2")
    clock.advance(20)
    refused = await store.admit([Meter("key:k:tpm", 100, 60)], ticket="r3")  # 80 used: the first must leave
    now_ms = round(clock() * 1000)
    assert refused.readings[0].wait == leaves_at(first.bucket) - now_ms
    both = await store.admit([Meter("key:k:tpm", 100, 100)], ticket="r4")  # both must leave
    assert both.readings[0].wait == leaves_at(second.bucket) - now_ms
    assert both.readings[0].reset == leaves_at(second.bucket) - now_ms


@pytest.mark.parametrize("kind", STORES)
async def test_every_60_seconds_hold_the_limit_and_refusals_are_exact_to_one_percent(
    kind: str, request: pytest.FixtureRequest
) -> None:
    """Random arrivals over five minutes: no 60 s ever admits more than the limit (no burst of
    twice it at a minute's edge), and a request is refused only when the 60.6 s before it
    already hold the limit."""
    clock = FakeClock()
    store = await make_store(kind, clock, request)
    rng = random.Random(7)
    limit, start = 50, clock()
    admitted: list[float] = []
    refused: list[float] = []
    try:
        while clock() - start < 300:
            clock.advance(rng.expovariate(2.0))  # two a second on average: four times the limit
            verdict = await store.admit([rpm(limit)], ticket=f"r{len(admitted) + len(refused)}")
            (admitted if verdict.admitted else refused).append(clock())
    finally:
        await store.aclose()
    for at in admitted:
        assert sum(at <= other < at + 60 for other in admitted) <= limit
    for at in refused:
        assert sum(at - 60.6 < other <= at for other in admitted) >= limit
    assert len(admitted) >= limit * 300 / 60.6 * 0.97


async def test_redis_and_the_table_in_memory_give_the_same_answers(
    redis_server: RedisServer, request: pytest.FixtureRequest
) -> None:
    """A random run of admissions and settlings over several meters, step by step the same."""
    clocks = [FakeClock(), FakeClock()]
    stores = [await make_store("process", clocks[0], request), await make_store("redis", clocks[1], request)]
    rng = random.Random(11)
    meters = [
        Meter("key:k:rpm", 20, 1),
        Meter("key:k:tpm", 3000, 0),
        Meter("route:r:tpm", 5000, 0),
        Meter("key:k:max_parallel", 4, 1, in_flight=True),
    ]
    open_tickets: list[tuple[str, int, list[Meter]]] = []
    outcomes = set()
    try:
        for step in range(400):
            seconds = rng.choice((0, 0.1, 0.7, 3, 15))
            for clock in clocks:
                clock.advance(seconds)
            if open_tickets and rng.random() < 0.4:
                ticket, bucket, held = open_tickets.pop(rng.randrange(len(open_tickets)))
                changes = [rng.randint(-meter.amount, 50) if meter.name.endswith("tpm") else 0 for meter in held]
                for store in stores:
                    store.settle(held, changes, ticket=ticket, bucket=bucket, on_error=pytest.fail)
                    await settled(store)
                continue
            tokens = rng.randint(1, 1200)
            chosen = [
                Meter(meter.name, meter.limit, tokens) if meter.name.endswith("tpm") else meter
                for meter in meters
                if rng.random() < 0.8
            ] or meters[:1]
            answers = [await store.admit(chosen, ticket=f"t{step}") for store in stores]
            assert answers[0] == answers[1], f"step {step}"
            outcomes.add(answers[0].admitted)
            if answers[0].admitted:
                open_tickets.append((f"t{step}", answers[0].bucket, chosen))
    finally:
        for store in stores:
            await store.aclose()
    assert outcomes == {True, False}


async def test_workers_share_one_table_and_a_new_worker_frees_what_a_dead_one_held(
    clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    table = SharedTable.create(2)
    request.addfinalizer(table.remove)
    first = LocalStore.shared(table, worker=0, clock=clock)
    second = LocalStore.shared(table, worker=1, clock=clock)
    parallel = Meter("key:k:max_parallel", 2, 1, in_flight=True)
    try:
        assert (await first.admit([rpm(2), parallel], ticket="a")).admitted
        assert (await second.admit([rpm(2), parallel], ticket="b")).admitted
        assert not (await first.admit([rpm(2)], ticket="c")).admitted  # the minute holds 2, across workers
        assert not (await second.admit([parallel], ticket="d")).admitted
        await first.aclose()  # worker 0 dies holding a slot; its replacement clears it
        first = LocalStore.shared(table, worker=0, clock=clock)
        assert (await second.admit([parallel], ticket="e")).admitted
    finally:
        await first.aclose()
        await second.aclose()


def died_holding_the_lock(table: SharedTable, *, said_so: bool) -> int:
    """The pid of a forked worker that took the table's lock and died holding it: having
    written its pid in the owner cell (`said_so`), or just before it could."""
    pid = os.fork()
    if pid == 0:  # the child does nothing but this, then leaves without cleaning up
        try:
            if said_so:
                held = LocalStore.shared(table, worker=1)._locked()
                held.__enter__()  # `held` stays referenced: collecting it would run its release
            else:
                table.lock.acquire()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize("said_so", [True, False])
async def test_the_supervisor_frees_the_lock_of_a_worker_that_died_holding_it(
    said_so: bool, clock: FakeClock, request: pytest.FixtureRequest
) -> None:
    table = SharedTable.create(2)
    request.addfinalizer(table.remove)
    store = LocalStore.shared(table, worker=0, clock=clock)
    try:
        dead = died_holding_the_lock(table, said_so=said_so)
        assert not table.lock.acquire(timeout=0.05)  # the kernel freed nothing
        if said_so:  # another worker's death: not its lock to free (with no pid said, any death frees it)
            assert not table.recover(os.getpid())
        assert table.recover(dead)
        assert (await store.admit([rpm(2)], ticket="a")).admitted
        assert not table.recover(dead)  # a lock that is free stays as it is
        assert (await store.admit([rpm(2)], ticket="b")).admitted
    finally:
        await store.aclose()


async def test_a_lock_that_stays_taken_is_a_store_failure_not_a_hang(
    clock: FakeClock, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.store import local

    monkeypatch.setattr(local, "LOCK_WAIT", 0.05)
    table = SharedTable.create(2)
    request.addfinalizer(table.remove)
    store = LocalStore.shared(table, worker=0, clock=clock)
    failures: list[StoreError] = []
    try:
        died_holding_the_lock(table, said_so=False)  # and no supervisor to free it
        with pytest.raises(StoreError) as failed:
            await store.admit([rpm(2)], ticket="a")
        assert failed.value.reason == "timeout"
        store.settle([rpm(2)], [0], ticket="a", bucket=0, on_error=failures.append)  # never raises
        assert [failure.reason for failure in failures] == ["timeout"]
    finally:
        await store.aclose()


def test_a_full_table_takes_over_idle_slots_and_says_when_none_is_left() -> None:
    import array

    cells = memoryview(array.array("q", bytes(8 * table_cells(workers=1, slots=4)))).cast("B").cast("q")
    meters = MeterTable(cells)
    now_ms = 1_000_000
    for index in range(4):
        assert meters.admit([rpm(5, f"key:{index}:rpm")], now_ms).admitted
    with pytest.raises(StoreError) as full:
        meters.admit([rpm(5, "key:late:rpm")], now_ms)
    assert full.value.reason == "full"
    later = now_ms + 61_000  # every window has emptied: their slots may be taken over
    assert meters.admit([rpm(5, "key:late:rpm")], later).admitted
    assert meters.admit([rpm(5, "key:3:rpm")], later).readings[0].used == 0
