"""/metrics after real traffic, checked by promtool and scraped by a real Prometheus; the request log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from pathlib import Path

import aiohttp
import openai
import pytest
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config, require_tool
from fakes import completion, json_handler, sse_handler, text_stream
from prometheus_client.parser import text_string_to_metric_families
from test_limits_e2e import WORDS, collect, wait_for

from gateway import __version__
from gateway.observability.logs import AccessLog
from gateway.observability.record import OUTCOMES
from gateway.server.keys import GATEWAY

MESSAGES = [{"role": "user", "content": "a secret message body"}]


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (others, such as `key`, summed over)."""
    wanted = set(labels.items())
    return sum(
        sample
        for (sample_name, sample_labels), sample in found.items()
        if sample_name == name and wanted <= sample_labels
    )


async def fetch_metrics(gateway: Gateway) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as response:
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


async def drive_traffic(upstream: Upstream, gateway: Gateway) -> None:
    """Streaming and not, an error, a timeout before and after the start, a cut, a client gone."""
    client = gateway.client()
    upstream.handler = json_handler(
        completion("Hello", usage={"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12})
    )
    await client.chat.completions.create(model="test-model", messages=MESSAGES)
    upstream.handler = sse_handler(text_stream(["Hi", " there"], usage=(11, 2)))
    await collect(await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    upstream.handler = sse_handler(text_stream(WORDS, usage=(11, 60)))
    await collect(
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True, max_tokens=3)
    )
    for name in ("no-such-model", "another-made-up-model", "x" * 200):
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model=name, messages=MESSAGES)
    upstream.handler = json_handler({"error": {"message": "boom"}}, status=500)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="test-model", messages=MESSAGES)
    upstream.handler = sse_handler(text_stream(["x"]), first_delay=5)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    upstream.handler = sse_handler(text_stream(["a"])[:2], done=False, hang_after=True)
    with pytest.raises(openai.APIError):
        await collect(await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    upstream.handler = sse_handler(text_stream(WORDS), delay=0.1)
    async with aiohttp.ClientSession() as http:
        response = await http.post(
            f"{gateway.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES, "stream": True}
        )
        await response.content.readuntil(b"\n\n")
        response.close()
    await wait_for(lambda: upstream.disconnects)


@pytest.fixture
async def trafficked(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    gateway = await gateway_factory(
        openai_route_config(upstream.url, limits={"first_token_timeout": 0.2, "idle_timeout": 0.2})
    )
    await drive_traffic(upstream, gateway)
    await wait_for(lambda: value(samples_now(gateway), "gateway_client_disconnects_total", route="test-model") == 1)
    return gateway


def samples_now(gateway: Gateway) -> dict:
    body, _ = gateway.app[GATEWAY].metrics.render()
    return samples(body.decode())


async def test_metrics_show_the_traffic(trafficked: Gateway) -> None:
    found = samples(await fetch_metrics(trafficked))
    requests = {key: v for key, v in found.items() if key[0] == "gateway_requests_total"}
    expected = {
        ("test-model", "up", "200", "false", "ok"): 1,
        ("test-model", "up", "200", "true", "ok"): 2,  # a whole stream, and one cut to max_tokens
        ("test-model", "up", "200", "true", "broken"): 1,  # an idle timeout after the start
        ("test-model", "up", "200", "true", "client_gone"): 1,
        ("test-model", "up", "500", "false", "error"): 1,
        ("test-model", "up", "504", "true", "error"): 1,
        ("unknown", "none", "404", "false", "rejected"): 3,  # three made-up model names, one series
    }
    got = {
        tuple(dict(labels)[k] for k in ("route", "provider", "code", "stream", "outcome")): v
        for (_, labels), v in requests.items()
    }
    assert got == expected
    assert {key[4] for key in got} <= set(OUTCOMES)  # the label's values are the gateway's own few
    assert value(found, "gateway_tokens_total", route="test-model", provider="up", type="prompt") >= 10 + 11
    # 2 (upstream's count) + 3 (cut) + what the idle and disconnected streams delivered
    assert value(found, "gateway_tokens_total", route="test-model", provider="up", type="completion") >= 2 + 2 + 3
    assert value(found, "gateway_truncations_total", route="test-model") == 1
    assert value(found, "gateway_timeouts_total", route="test-model", kind="first_token") == 1
    assert value(found, "gateway_timeouts_total", route="test-model", kind="idle") == 1
    assert value(found, "gateway_upstream_errors_total", provider="up", reason="status") == 1
    assert value(found, "gateway_upstream_errors_total", provider="up", reason="timeout") == 2
    assert value(found, "gateway_client_disconnects_total", route="test-model") == 1
    assert value(found, "gateway_inflight_requests", route="test-model") == 0
    assert value(found, "gateway_build_info", version=__version__) == 1
    # the whole stream, the cut one, the one that timed out after "a", and the client that left after its
    # first event, which holds the role chunk and the first word together
    assert value(found, "gateway_time_to_first_token_seconds_count", route="test-model", provider="up") == 4
    assert value(found, "gateway_request_duration_seconds_count", route="test-model", provider="up", stream="true") == 5
    assert value(found, "gateway_overhead_seconds_count", route="test-model", provider="up") == 3
    assert not any(("route", "no-such-model") in labels for _, labels in found)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        ("idle", "idle_timeout"),
        ("error-event", "server_error"),
        ("dropped", "upstream_protocol_error"),
        ("total", "timeout"),
    ],
)
async def test_a_stream_that_breaks_after_its_start_is_counted_as_broken_not_ok(
    upstream: Upstream, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture, failure: str, error: str
) -> None:
    """Its status was 200, and stays so; its outcome is what its user saw: a stream broken off."""
    started = text_stream(["Hel", "lo"])[:2]
    upstream.handler = {
        "idle": sse_handler(started, done=False, hang_after=True),
        "error-event": sse_handler([*started, {"error": {"message": "overloaded", "type": "server_error"}}]),
        "dropped": sse_handler(started, done=False),
        "total": sse_handler(text_stream(["Hel", "lo"] * 50), delay=0.05),
    }[failure]
    gateway = await gateway_factory(openai_route_config(upstream.url, limits={"idle_timeout": 0.2, "timeout": 0.4}))
    caplog.set_level(logging.INFO, logger="gateway.access")
    with pytest.raises(openai.APIError):
        await collect(
            await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
        )
    found = samples_now(gateway)
    labels = {"route": "test-model", "provider": "up", "stream": "true"}
    assert value(found, "gateway_requests_total", **labels, code="200", outcome="broken") == 1
    assert value(found, "gateway_requests_total", **labels, code="200", outcome="ok") == 0
    [line] = [r.fields for r in caplog.records if r.name == "gateway.access"]
    assert (line["status"], line["outcome"], line["error"]) == (200, "broken", error)


async def test_a_gateway_bug_is_counted_as_an_error(
    routed: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("gateway.api.chat.parse_chat_request", broken)
    with pytest.raises(openai.InternalServerError):
        await routed.client().chat.completions.create(model="test-model", messages=MESSAGES)
    requests = {
        (dict(labels)["code"], dict(labels).get("outcome")): v
        for (name, labels), v in samples_now(routed).items()
        if name == "gateway_requests_total"
    }
    assert requests == {("500", "error"): 1}


async def test_a_gateway_bug_mid_stream_is_counted_as_broken(
    upstream: Upstream, routed: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.stream.limiter import StreamLimiter

    limit, calls = StreamLimiter.limit, []

    def buggy(self: StreamLimiter, chunk: dict) -> dict | None:
        calls.append(chunk)
        if len(calls) == 3:  # after the role chunk and the first word went out
            raise RuntimeError("a bug")
        return limit(self, chunk)

    monkeypatch.setattr(StreamLimiter, "limit", buggy)
    upstream.handler = sse_handler(text_stream(["a", "b", "c"]), delay=0.05)
    with pytest.raises(openai.APIConnectionError):
        await collect(await routed.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True))
    found = samples_now(routed)
    labels = {"route": "test-model", "provider": "up", "stream": "true", "code": "200"}
    assert value(found, "gateway_requests_total", **labels, outcome="broken") == 1


async def test_promtool_accepts_the_metrics(trafficked: Gateway, tmp_path: Path) -> None:
    promtool = require_tool("promtool", "prometheus")
    text = await fetch_metrics(trafficked)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


async def test_a_real_prometheus_scrapes_the_gateway(trafficked: Gateway, tmp_path: Path, unused_tcp_port: int) -> None:
    prometheus = require_tool("prometheus", "prometheus")
    target = trafficked.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: gateway\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    listen = f"127.0.0.1:{unused_tcp_port}"
    process = await asyncio.create_subprocess_exec(
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address={listen}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        series = await query_until_found(
            f"http://{listen}", 'gateway_requests_total{route="test-model",code="200"}', process
        )
        labels = {tuple(sorted(item["metric"].items())) for item in series}
        assert (
            ("__name__", "gateway_requests_total"),
            ("code", "200"),
            ("instance", target),
            ("job", "gateway"),
            ("key", "none"),
            ("outcome", "ok"),
            ("provider", "up"),
            ("route", "test-model"),
            ("stream", "false"),
        ) in labels
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)


async def query_until_found(api: str, query: str, process: asyncio.subprocess.Process, timeout: float = 30) -> list:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            assert process.returncode is None, (await process.stderr.read()).decode()[-2000:]
            try:
                async with http.get(f"{api}/api/v1/query", params={"query": query}) as response:
                    if response.status == 200:
                        result = (await response.json())["data"]["result"]
                        if result:
                            return result
            except aiohttp.ClientConnectionError:
                pass  # not listening yet
            await asyncio.sleep(0.25)
    raise AssertionError(f"Prometheus did not return {query} within {timeout} s")


async def test_one_json_log_line_per_request_without_secrets(
    upstream: Upstream, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.observability.logs import JsonFormatter

    gateway = await gateway_factory(openai_route_config(upstream.url))
    caplog.set_level(logging.INFO, logger="gateway.access")
    upstream.handler = sse_handler(text_stream(["Hi", " there"], usage=(11, 2)))
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"x-request-id": "req-42", "Authorization": "Bearer sk-client-secret"},
            json={"model": "test-model", "messages": MESSAGES, "stream": True},
        ) as response,
    ):
        await response.read()
    records = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    entry = json.loads(line)
    assert {
        key: entry[key]
        for key in (
            "request_id",
            "method",
            "path",
            "key",
            "route",
            "provider",
            "upstream_model",
            "status",
            "stream",
            "prompt_tokens",
            "completion_tokens",
            "truncated",
            "error",
            "outcome",
            "client",
        )
    } == {
        "request_id": "req-42",
        "method": "POST",
        "path": "/v1/chat/completions",
        "key": "none",
        "route": "test-model",
        "provider": "up",
        "upstream_model": "test-model",
        "status": 200,
        "stream": True,
        "prompt_tokens": 11,
        "completion_tokens": 2,
        "truncated": False,
        "error": None,
        "outcome": "ok",
        "client": "127.0.0.1",
    }
    assert entry["duration_ms"] > 0 and entry["ttft_ms"] > 0 and entry["time"].endswith("Z")
    for secret in ("sk-client-secret", "sk-upstream-secret-key", "a secret message body", "Hi there"):
        assert secret not in line


async def test_every_request_gets_a_log_line(
    upstream: Upstream, gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = await gateway_factory(openai_route_config(upstream.url))
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("GET", "/health"),
            ("GET", "/v1/models"),
            ("GET", "/nope"),
            ("GET", "/v1/chat/completions"),
        ):
            async with http.request(method, f"{gateway.url}{path}", headers={"x-request-id": f"id {path}"}) as response:
                await response.read()
    entries = [r.fields for r in caplog.records if r.name == "gateway.access"]
    assert [(e["method"], e["path"], e["status"], e["request_id"], e["route"]) for e in entries] == [
        ("GET", "/health", 200, "id /health", None),
        ("GET", "/v1/models", 200, "id /v1/models", None),
        ("GET", "/nope", 404, "id /nope", None),
        ("GET", "/v1/chat/completions", 405, "id /v1/chat/completions", None),
    ]
    assert all(entry["duration_ms"] >= 0 and entry["client"] == "127.0.0.1" for entry in entries)


def test_text_log_format_is_readable() -> None:
    from gateway.observability.logs import TextFormatter

    record = logging.makeLogRecord(
        {
            "name": "gateway.access",
            "levelname": "INFO",
            "msg": "request",
            "fields": {"route": "demo", "status": 200, "error": None},
        }
    )
    assert TextFormatter().format(record).endswith("INFO    gateway.access: request route=demo status=200")


async def test_access_lines_written_to_a_stream_go_out_together_in_order() -> None:
    """Lines are kept and formatted together: every FLUSH_SECONDS, at FLUSH_LINES, and at flush()."""
    stream = io.StringIO()
    log = AccessLog(stream, "json")
    for number in range(3):
        log.write({"request_id": f"r{number}", "status": 200})
    assert stream.getvalue() == ""  # not yet: the timer has not fired
    log.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["request_id"], line["logger"], line["message"]) for line in lines] == [
        (f"r{number}", "gateway.access", "request") for number in range(3)
    ]
    assert all(line["time"].endswith("Z") and len(line["time"]) == 24 for line in lines)

    for number in range(AccessLog.FLUSH_LINES):
        log.write({"request_id": f"s{number}"})
    assert len(stream.getvalue().splitlines()) == 3 + AccessLog.FLUSH_LINES  # the bound wrote them at once
    log.write({"request_id": "last"})
    await wait_for(lambda: stream.getvalue().endswith('"request_id":"last"}\n'), timeout=2 * AccessLog.FLUSH_SECONDS)
