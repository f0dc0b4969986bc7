"""The ledger with real gateway processes: SIGTERM under load, the database stopped mid-load,
two gateways on one budget, two workers on one SQLite file, and the commands beside a server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import Upstream
from fakes import completion, json_handler
from postgres import PostgresServer, running_postgres
from sqlalchemy import select
from test_cli import REPO, start_gateway

from gateway.config import LedgerConfig
from gateway.ledger.engine import create_engine
from gateway.ledger.schema import requests

ADMIN = "sk-admin-0123456789abcdef0123"
CLIENT = "sk-client-0123456789abcdef01"
BODY = {"model": "demo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def write_config(tmp_path: Path, ledger_url: str, *, budget: bool = False, **ledger: Any) -> Path:
    """The demo route (a mock), a client key and an admin key; with `budget`, the route has a price
    and the key a budget it never reaches, so that every request takes a hold in the database."""
    settings = {"url": ledger_url, "key_refresh": 0.2, **ledger}
    route, key = "{model: demo, provider: demo}", f"{{id: team, key: {CLIENT}}}"
    if budget:
        route = "{model: demo, provider: demo, price: {input: 1, output: 1}}"
        key = f"{{id: team, key: {CLIENT}, budget: {{usd: 1000000, period: 1d}}}}"
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers: {demo: {kind: mock, tokens_per_second: 200}}\n"
        f"routes:\n  - {route}\n"
        f"auth: {{admin_key: {ADMIN}, keys: [{key}]}}\n"
        f"ledger: {json.dumps(settings)}\n"
    )
    return config


class Gateway:
    """A `gateway` process, its log lines read as they come; stopped (SIGTERM) at the end.
    `draining` is set when it logs that it drains."""

    def __init__(self, config: Path, *args: str) -> None:
        self.lines: list[dict] = []
        self.process, self.url = start_gateway("--config", str(config), *args, seen=self.lines)
        self.signalled = False
        self.draining = asyncio.Event()
        loop = asyncio.get_running_loop()

        def pump() -> None:
            assert self.process.stdout is not None
            for text in self.process.stdout:
                line = json.loads(text)
                self.lines.append(line)
                if line["message"].startswith("draining"):
                    loop.call_soon_threadsafe(self.draining.set)

        threading.Thread(target=pump, daemon=True).start()

    def stop(self) -> int:
        """SIGTERM (unless it was sent already), and the exit status."""
        if self.process.poll() is None and not self.signalled:
            self.terminate()
        return self.process.wait(timeout=60)

    def terminate(self) -> None:
        self.signalled = True
        self.process.send_signal(signal.SIGTERM)


def gateway_process(config: Path, *args: str) -> Iterator[Gateway]:
    gateway = Gateway(config, *args)
    try:
        yield gateway
    finally:
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait()


async def ask(http: aiohttp.ClientSession, url: str, request_id: str, key: str = CLIENT, **body: Any) -> int:
    """One chat completion, read to its end; its status (0: the connection failed)."""
    headers = {"Authorization": f"Bearer {key}", "x-request-id": request_id}
    try:
        async with http.post(f"{url}/v1/chat/completions", json={**BODY, **body}, headers=headers) as answer:
            await answer.read()
            return answer.status
    except (aiohttp.ClientError, OSError):
        return 0


async def ledger_request_ids(url: str) -> set[str]:
    engine = create_engine(LedgerConfig(url=url))
    try:
        async with engine.connect() as connection:
            return set((await connection.execute(select(requests.c.request_id))).scalars())
    finally:
        await engine.dispose()


class Seen(dict[str, int]):
    """The status each request id got; `reached(n)` is set once n have been answered."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[tuple[int, asyncio.Event]] = []

    def __setitem__(self, request_id: str, status: int) -> None:
        super().__setitem__(request_id, status)
        for count, event in self._waiting:
            if len(self) >= count:
                event.set()

    async def reached(self, count: int) -> None:
        event = asyncio.Event()
        self._waiting.append((count, event))
        if len(self) >= count:
            event.set()
        await asyncio.wait_for(event.wait(), 60)


async def load(url: str, prefix: str, stop: asyncio.Event, seen: Seen, *, workers: int = 8) -> None:
    """Requests from `workers` clients, each on new connections, until `stop` is set or they are refused."""
    counter = iter(range(1_000_000))

    async def one_client(number: int) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            while not stop.is_set():
                request_id = f"{prefix}-{number}-{next(counter)}"
                status = await ask(http, url, request_id, stream=number % 2 == 0)
                if status == 0:
                    return  # the gateway stopped accepting
                seen[request_id] = status

    await asyncio.gather(*(one_client(number) for number in range(workers)))


@pytest.fixture
def gateway_under_test() -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gateway in started:
        if gateway.process.poll() is None:
            gateway.process.kill()
            gateway.process.wait()


@pytest.mark.parametrize("signals", [1, 2])
async def test_sigterm_under_load_loses_no_row(
    tmp_path: Path, ledger_url: str, gateway_under_test: list[Gateway], signals: int
) -> None:
    """Every request a client got an answer to is in the ledger after SIGTERM, though batches were
    an hour apart: the rows waiting were written on the way out. A second SIGTERM, which cuts
    the drain short, loses none either."""
    gateway = Gateway(write_config(tmp_path, ledger_url, flush_interval=3600, batch_rows=100000))
    gateway_under_test.append(gateway)
    seen = Seen()
    stop = asyncio.Event()
    clients = asyncio.create_task(load(gateway.url, "t", stop, seen))
    await seen.reached(150)
    gateway.terminate()
    if signals == 2:
        await asyncio.wait_for(gateway.draining.wait(), 30)
        gateway.process.send_signal(signal.SIGTERM)  # streams still in flight are cut
    await asyncio.wait_for(clients, 60)
    assert gateway.stop() == 0
    answered = {request_id for request_id, status in seen.items() if status}
    assert len(answered) >= 150 and set(seen.values()) == {200}
    written = await ledger_request_ids(ledger_url)
    assert answered <= written, "\n".join(
        line["message"] for line in gateway.lines if line["logger"] != "gateway.access"
    )
    assert written <= answered | {line.get("request_id") for line in gateway.lines}


async def test_requests_go_on_while_the_database_is_down_and_their_rows_arrive_after(
    tmp_path: Path, gateway_under_test: list[Gateway]
) -> None:
    for server in running_postgres():
        await database_down_mid_load(server, tmp_path, gateway_under_test)


async def database_down_mid_load(server: PostgresServer, tmp_path: Path, started: list[Gateway]) -> None:
    url = server.new_database()
    gateway = Gateway(write_config(tmp_path, url, flush_interval=0.1))
    started.append(gateway)
    seen = Seen()
    stop = asyncio.Event()
    clients = asyncio.create_task(load(gateway.url, "d", stop, seen, workers=4))
    await seen.reached(40)
    await asyncio.to_thread(server.stop)
    during_start = len(seen)
    await seen.reached(during_start + 80)
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        while not await metric_above(http, gateway.url, "gateway_ledger_up", -1, 0.5):
            assert time.monotonic() < deadline, "the outage was never noticed"
            await asyncio.sleep(0.02)
    answered_while_down = len(seen) - during_start
    await asyncio.to_thread(server.start)
    stop.set()
    await asyncio.wait_for(clients, 30)
    answered = set(seen)
    assert set(seen.values()) == {200} and answered_while_down >= 80
    deadline = time.monotonic() + 30
    while not answered <= await ledger_request_ids(url):
        assert time.monotonic() < deadline, "the rows kept while the database was down never arrived"
        await asyncio.sleep(0.2)
    async with aiohttp.ClientSession() as http:
        assert await metric_above(http, gateway.url, 'gateway_ledger_errors_total{operation="write"}', 0)
        assert await metric_above(http, gateway.url, "gateway_ledger_up", 0.5)
    assert gateway.stop() == 0
    messages = [line["message"] for line in gateway.lines]
    assert any(message.startswith("ledger: cannot write to the database") for message in messages)
    assert any(message.startswith("ledger: the database takes writes again") for message in messages)


async def metric_above(http: aiohttp.ClientSession, url: str, name: str, floor: float, ceiling: float = 1e18) -> bool:
    """Whether the metric's value is in (floor, ceiling)."""
    async with http.get(f"{url}/metrics") as answer:
        text = await answer.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return floor < float(line.split()[-1]) < ceiling
    return False


async def test_two_gateways_on_one_postgresql_enforce_one_budget(
    tmp_path: Path, postgres: PostgresServer, upstream: Upstream, gateway_under_test: list[Gateway]
) -> None:
    """Both spend from one key's budget of 50 USD at once, each request able to cost 10 and
    costing 5: together they stop within one request's cost of it."""
    upstream.handler = json_handler(
        completion("hello", usage={"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8})
    )
    url = postgres.new_database()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"providers: {{up: {{kind: openai, base_url: '{upstream.url}/v1', api_key: sk-upstream}}}}\n"
        "routes:\n  - {model: demo, provider: up, max_tokens: 10, price: {input: 0, output: 1000000}}\n"
        f"auth: {{admin_key: {ADMIN}, keys: [{{id: team, key: {CLIENT}, budget: {{usd: 50, period: 30d}}}}]}}\n"
        f"ledger: {{url: '{url}', flush_interval: 0.05}}\n"
    )
    gateways = [Gateway(config), Gateway(config)]
    gateway_under_test.extend(gateways)
    refusals: list[str] = []

    async def spend(gateway: Gateway, name: str) -> None:
        async with aiohttp.ClientSession() as http:
            for number in range(100):
                headers = {"Authorization": f"Bearer {CLIENT}", "x-request-id": f"{name}-{number}"}
                async with http.post(f"{gateway.url}/v1/chat/completions", json=BODY, headers=headers) as answer:
                    body = await answer.json()
                if answer.status == 429:
                    assert body["error"]["code"] == "insufficient_quota"
                    if answer.headers.get("x-should-retry") == "false":  # spent, not only held
                        refusals.append(name)
                        return
                    await asyncio.sleep(0.05)
                else:
                    assert answer.status == 200

    await asyncio.gather(
        *(spend(gateway, f"g{index}-{lane}") for index, gateway in enumerate(gateways) for lane in range(3))
    )
    assert len(refusals) == 6
    served = len(upstream.requests)
    assert 10 <= served <= 11  # 50 USD at 5 a request, and at most one more
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateways[1].url}/admin/keys/team", headers={"Authorization": f"Bearer {ADMIN}"}) as answer,
    ):
        spend_seen = (await answer.json())["spend"]
    assert spend_seen["usd"] == served * 5 and 50 <= spend_seen["usd"] <= 55


async def test_two_workers_write_one_sqlite_file_without_database_is_locked(
    tmp_path: Path, gateway_under_test: list[Gateway]
) -> None:
    """Under load, two workers write rows in small batches and take a budget hold (a read, then a
    write) for every request, all in one SQLite file."""
    url = f"sqlite://{tmp_path}/ledger.db"
    config = write_config(tmp_path, url, budget=True, flush_interval=0.02, batch_rows=10)
    gateway = Gateway(config, "--workers", "2")
    gateway_under_test.append(gateway)
    seen = Seen()
    stop = asyncio.Event()
    clients = asyncio.create_task(load(gateway.url, "w", stop, seen, workers=12))
    await seen.reached(400)
    stop.set()
    await asyncio.wait_for(clients, 60)
    ours = set()  # ids the gateway gave: 12 hex digits of its worker, then a counter
    for _ in range(40):
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{gateway.url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {CLIENT}"}
            ) as answer,
        ):
            assert answer.status == 200
            ours.add(answer.headers["x-request-id"])
    assert len({request_id[:12] for request_id in ours}) == 2, "both workers answered"
    assert gateway.stop() == 0
    assert set(seen.values()) == {200}
    written = await ledger_request_ids(url)
    assert set(seen) | ours <= written
    problems = [line for line in gateway.lines if line["logger"] == "gateway.ledger" and line["level"] != "INFO"]
    assert problems == []
    assert not any("locked" in json.dumps(line) for line in gateway.lines)


def command(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--config", str(config)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if key != "GATEWAY_CONFIG"},
    )


async def test_the_commands_give_out_and_revoke_keys_while_the_gateway_runs(
    tmp_path: Path, gateway_under_test: list[Gateway]
) -> None:
    config = write_config(tmp_path, f"sqlite://{tmp_path}/ledger.db", flush_interval=0.05)
    gateway = Gateway(config)
    gateway_under_test.append(gateway)
    created = command(
        config, "keys", "create", "--id", "team-b", "--models", "demo", "--rpm", "600", "--budget", "50/30d"
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sk-gw-") and "team-b" in created.stderr
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 10
        while await ask(http, gateway.url, "cli-1", secret) != 200:
            assert time.monotonic() < deadline, "the gateway never took the key made by the command"
            await asyncio.sleep(0.05)
        listed = command(config, "keys", "list")
        assert listed.returncode == 0 and "team-b" in listed.stdout and "50/30d" in listed.stdout
        assert secret not in listed.stdout
        revoked = command(config, "keys", "revoke", "team-b")
        assert revoked.returncode == 0, revoked.stderr
        while await ask(http, gateway.url, "cli-2", secret) != 401:
            assert time.monotonic() < deadline + 10, "the revoked key still worked"
            await asyncio.sleep(0.05)
    report = command(config, "usage", "--since", "1h", "--by", "key")
    assert report.returncode == 0 and "team-b" in report.stdout
    migrated = command(config, "db", "migrate")
    assert migrated.returncode == 0 and "up to date" in migrated.stdout
    assert command(config, "keys", "revoke", "team-b").returncode == 1
    assert gateway.stop() == 0


def test_an_id_gateway_yaml_names_is_not_given_out_and_an_old_clash_can_be_revoked(tmp_path: Path) -> None:
    """A file key left out while its secret is unset still holds its id: the database gets no
    second key of that id. One made before this check is revoked from the database."""
    ledger = tmp_path / "ledger.db"
    base = "providers: {demo: {kind: mock}}\nroutes:\n  - {model: demo, provider: demo}\n"
    naming = tmp_path / "naming.yaml"
    naming.write_text(
        base
        + f"ledger: {{url: 'sqlite://{ledger}'}}\nauth: {{keys: [{{id: default, key: '${{GW_UNSET_KEY_XYZ:-}}'}}]}}\n"
    )
    refused = command(naming, "keys", "create", "--id", "default")
    assert refused.returncode == 1 and "'default' is named in gateway.yaml (auth.keys)" in refused.stderr
    too_high = command(naming, "keys", "create", "--id", "big", "--tpm", str(2**31))
    assert too_high.returncode == 2 and "must be from 1 to 2147483647" in too_high.stderr
    plain = tmp_path / "plain.yaml"
    plain.write_text(base + f"ledger: {{url: 'sqlite://{ledger}'}}\n")
    assert command(plain, "keys", "create", "--id", "default").returncode == 0  # as before the check
    revoked = command(naming, "keys", "revoke", "default")
    assert revoked.returncode == 0 and "gateway.yaml names 'default' too" in revoked.stderr
    assert "default" not in command(plain, "keys", "list").stdout
