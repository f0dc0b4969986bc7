"""Rate limits across processes: `--workers 2` without Redis, and gateway processes sharing a real
redis-server that the tests start, stop and restart.

Every gateway here is a real `python -m gateway` process; the limits' minute is Redis' own
clock (or the host's), so each test stays well within one minute.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from redis_server import RedisServer
from test_cli import start_gateway
from test_workers import read_log_lines

SECRET = "sk-gw-team-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "hi"}]


def config_text(*, rpm: int | None = None, tpm: int | None = None, store: str = "") -> str:
    limits = ", ".join(f"{name}: {value}" for name, value in (("rpm", rpm), ("tpm", tpm)) if value is not None)
    return (
        "providers: {demo: {kind: mock, tokens_per_second: 0}}\n"
        "routes:\n  - {model: demo, provider: demo}\n"
        f"auth: {{keys: [{{id: team, key: {SECRET}, {limits}}}]}}\n" + store
    )


class Running:
    """A gateway process with its log read on a thread (so its pipe never fills)."""

    def __init__(self, tmp_path: Path, name: str, text: str, *args: str) -> None:
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        self.lines: list[dict] = []
        self.process, self.url = start_gateway("--config", str(config), *args, seen=self.lines)
        read_log_lines(self.process, self.lines)

    def ask(self, max_tokens: int = 5, timeout: float = 5.0) -> httpx.Response:
        """One request on a new connection (so the kernel spreads them over the workers)."""
        with httpx.Client(timeout=timeout) as client:
            return client.post(
                f"{self.url}/v1/chat/completions",
                json={"model": "demo", "messages": MESSAGES, "max_tokens": max_tokens},
                headers={"Authorization": f"Bearer {SECRET}"},
            )

    def metrics(self) -> str:
        with httpx.Client() as client:
            return client.get(f"{self.url}/metrics").text

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def gateways() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for gateway in started:
        gateway.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_two_workers_without_redis_hold_one_limit_not_two(tmp_path: Path, gateways: list[Running]) -> None:
    gateway = Running(tmp_path, "workers", config_text(rpm=12), "--workers", "2")
    gateways.append(gateway)
    answers = [gateway.ask() for _ in range(30)]
    workers = {response.headers["x-request-id"][:12] for response in answers}
    assert len(workers) == 2, "both workers answered"
    assert Counter(response.status_code for response in answers) == {200: 12, 429: 18}
    assert [response.status_code for response in answers[:12]] == [200] * 12


def test_two_workers_without_redis_hold_one_tokens_limit(tmp_path: Path, gateways: list[Running]) -> None:
    gateway = Running(tmp_path, "workers", config_text(tpm=1000), "--workers", "2")
    gateways.append(gateway)
    first = gateway.ask(max_tokens=200)  # the mock's reply is 55 tokens: each request gives back 145
    usage = first.json()["usage"]
    reserve, used = usage["prompt_tokens"] + 200, usage["total_tokens"]  # near the limit, the counted reserve
    assert int(first.headers["x-ratelimit-remaining-tokens"]) <= 1000 - reserve  # a short body held its bytes
    answers = [first] + [gateway.ask(max_tokens=200) for _ in range(30)]
    admitted = sum(response.status_code == 200 for response in answers)
    assert admitted * used <= 1000
    # each request settles to its usage as its response ends, so the next one, on either worker,
    # finds the room it left: (1000 - reserve) // used + 1 of them fit (one fewer at most, should
    # a request reach the other worker before the last one's settling)
    assert (1000 - reserve) // used <= admitted <= (1000 - reserve) // used + 1


def test_two_gateways_sharing_one_redis_hold_one_combined_limit(
    tmp_path: Path, gateways: list[Running], redis_server: RedisServer
) -> None:
    store = f"store: {{redis_url: '{redis_server.url}', timeout: 0.5}}\n"
    one = Running(tmp_path, "one", config_text(rpm=20, tpm=3000, store=store))
    two = Running(tmp_path, "two", config_text(rpm=20, tpm=3000, store=store))
    gateways += [one, two]
    for gateway in (one, two):  # each loads the two scripts into Redis once
        assert gateway.ask(max_tokens=100).status_code == 200
    redis_server.command("FLUSHALL")
    before = redis_server.calls("evalsha")
    answers = [(one if index % 2 else two).ask(max_tokens=100) for index in range(40)]
    statuses = [response.status_code for response in answers]
    assert statuses == [200] * 20 + [429] * 20  # one limit of 20 a minute for both processes
    assert all("key 'team' on requests per minute" in response.json()["error"]["message"] for response in answers[20:])
    # one round trip admits (or refuses) a request, one settles an admitted one's tokens
    deadline = time.monotonic() + 5
    while redis_server.calls("evalsha") - before < 60 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert redis_server.calls("evalsha") - before == 60

    redis_server.command("FLUSHALL")  # the tokens limit: the prompt and max_tokens reserved, then the usage
    answers = [(one if index % 2 else two).ask(max_tokens=2000) for index in range(18)]
    admitted = [response for response in answers if response.status_code == 200]
    assert 1 <= len(admitted) < 18 and sum(response.json()["usage"]["total_tokens"] for response in admitted) <= 3000
    refused = answers[len(admitted)].json()["error"]["message"]
    assert "key 'team' on tokens per minute (tpm): limit 3000" in refused


def load(gateway: Running, stop: threading.Event, statuses: list[int], latencies: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            statuses.append(gateway.ask(timeout=5).status_code)
        except httpx.HTTPError:
            statuses.append(-1)
        latencies.append(time.monotonic() - started)


def under_load(gateway: Running, during: callable) -> tuple[list[int], list[float]]:
    """Requests from four threads while `during()` runs, and a little after."""
    stop = threading.Event()
    statuses: list[int] = []
    latencies: list[float] = []
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(load, gateway, stop, statuses, latencies) for _ in range(4)]
        time.sleep(0.3)
        during()
        time.sleep(0.3)
        stop.set()
        for worker in workers:
            worker.result()
    return statuses, latencies


@pytest.mark.parametrize("on_error", ["allow", "deny"])
def test_redis_stopped_mid_load_then_restarted(
    on_error: str, tmp_path: Path, gateways: list[Running], redis_server: RedisServer
) -> None:
    store = f"store: {{redis_url: '{redis_server.url}', on_error: {on_error}, timeout: 0.05}}\n"
    gateway = Running(tmp_path, "gw", config_text(rpm=100_000, store=store))
    gateways.append(gateway)

    statuses, latencies = under_load(gateway, redis_server.stop)
    down = statuses[len(statuses) // 2 :]
    if on_error == "allow":
        assert set(statuses) == {200}  # the gateway kept serving, uncounted
    else:
        assert set(statuses) <= {200, 503} and 503 in down
    assert max(latencies) < 2.0  # no request waited on the dead Redis
    assert "gateway_rate_limit_store_errors_total" in gateway.metrics()
    warnings = [line for line in gateway.lines if line.get("logger") == "gateway.limits"]
    assert 1 <= len(warnings) <= 2  # at most one line every 10 s, not one a request

    redis_server.start()  # empty: no persistence, the minute starts again
    deadline = time.monotonic() + 10
    while gateway.ask().headers.get("x-ratelimit-limit-requests") != "100000":  # reconnected by itself
        assert time.monotonic() < deadline, "the gateway did not use Redis again"
        time.sleep(0.1)
    counted = gateway.ask()
    assert counted.status_code == 200 and int(counted.headers["x-ratelimit-remaining-requests"]) < 100_000 - 1


def test_a_worker_killed_under_load_is_replaced_and_the_shared_limits_go_on(
    tmp_path: Path, gateways: list[Running]
) -> None:
    """A worker that dies (perhaps holding the shared table's lock, which the kernel does not
    free) is replaced, and every worker keeps admitting at once: none waits on the lock."""
    gateway = Running(tmp_path, "workers", config_text(rpm=100_000), "--workers", "2")
    gateways.append(gateway)
    started = next(line for line in gateway.lines if line["message"].startswith("started 2 workers"))
    victim = started["pids"][0]
    under_load(gateway, lambda: os.kill(victim, signal.SIGKILL))
    deadline = time.monotonic() + 10
    while not any(f"worker {victim} exited" in line["message"] for line in gateway.lines):
        assert time.monotonic() < deadline, "the supervisor saw the worker die"
        time.sleep(0.02)
    answers, slowest = [], 0.0
    while len({response.headers["x-request-id"][:12] for response in answers}) < 2:  # the replacement too
        assert time.monotonic() < deadline + 10, "both workers answer again"
        began = time.monotonic()
        answers.append(gateway.ask())
        slowest = max(slowest, time.monotonic() - began)
    assert {response.status_code for response in answers} == {200}
    assert slowest < 1.0  # LOCK_WAIT: no admission waited for a lock nobody would free
    assert "gateway_rate_limit_store_errors_total{" not in gateway.metrics()
