"""Weighted targets, retries, fallbacks, cooldowns, readiness and live reload, through real sockets."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from conftest import FakeClock, Gateway, GatewayFactory, Upstream, running_upstream
from fakes import completion, json_handler, sse_handler, text_stream
from test_limits_e2e import collect, now

MESSAGES = [{"role": "user", "content": "hi"}]
FIRST, LAST = 1_000_000, 0.000_001  # weights that make the first target the one tried first


def provider(url: str) -> dict:
    return {"kind": "openai", "base_url": f"{url}/v1", "api_key": "sk-upstream-secret-key"}


def two_targets(a: str, b: str, **route: object) -> dict:
    return {
        "providers": {"a": provider(a), "b": provider(b), "demo": {"kind": "mock"}},
        "routes": [
            {
                "model": "smart",
                "targets": [
                    {"provider": "a", "model": "model-a", "weight": FIRST},
                    {"provider": "b", "model": "model-b", "weight": LAST},
                ],
                **route,
            },
            {"model": "demo", "provider": "demo"},
        ],
    }


async def post(gateway: Gateway, body: dict) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/v1/chat/completions", json={"messages": MESSAGES, **body}) as response:
            return response.status, dict(response.headers), await response.json(content_type=None)


def failing(status: int, times: int, then: web.RequestHandler, headers: dict | None = None) -> web.RequestHandler:
    """Answers `status` the first `times` requests, then hands over to `then`."""
    calls = {"n": 0}

    async def handle(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] <= times:
            return web.json_response({"error": {"message": f"failing with {status}"}}, status=status, headers=headers)
        return await then(request)

    return handle


@pytest.fixture
async def second() -> Upstream:
    async with running_upstream() as fake:
        yield fake


@pytest.mark.parametrize("stream", [False, True])
async def test_a_refused_connection_is_retried_on_the_other_target(
    second: Upstream, gateway_factory: GatewayFactory, unused_tcp_port: int, stream: bool
) -> None:
    second.handler = sse_handler(text_stream(["from b"])) if stream else json_handler(completion("from b"))
    gateway = await gateway_factory(two_targets(f"http://127.0.0.1:{unused_tcp_port}", second.url))
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=stream
    )
    assert raw.headers["x-gateway-provider"] == "b" and raw.headers["x-gateway-upstream-model"] == "model-b"
    assert raw.headers["x-gateway-attempts"] == "2"
    result = raw.parse()
    text = (await collect(result))[0][0] if stream else result.choices[0].message.content
    assert text == "from b"
    assert orjson.loads(second.requests[0]["body"])["model"] == "model-b"


@pytest.mark.parametrize("failure", ["503", "timeout", "error-event"])
async def test_failures_before_the_first_chunk_move_on_to_the_next_target(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory, failure: str
) -> None:
    upstream.handler = {
        "503": json_handler({"error": {"message": "unavailable"}}, status=503),
        "timeout": sse_handler(text_stream(["late"]), first_delay=5),
        "error-event": sse_handler(
            [{"error": {"message": "overloaded", "type": "server_error", "status": 503}}], done=False
        ),
    }[failure]
    second.handler = sse_handler(text_stream(["from b"]))
    tree = two_targets(upstream.url, second.url)
    tree["limits"] = {"first_token_timeout": 0.3}
    gateway = await gateway_factory(tree)
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True
    )
    assert (await collect(raw.parse()))[0][0] == "from b" and raw.headers["x-gateway-attempts"] == "2"


ROLE_CHUNK = text_stream([])[0]  # {"role": "assistant", "content": ""}, before any content


@pytest.mark.parametrize("failure", ["error-event", "dropped", "idle"])
async def test_failures_after_the_role_chunk_but_before_content_move_on_and_count_towards_cooldown(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory, failure: str
) -> None:
    """Nothing has gone to the client until content comes: the attempt failed like any other."""
    upstream.handler = {
        "error-event": sse_handler(
            [ROLE_CHUNK, {"error": {"message": "overloaded", "type": "server_error", "status": 503}}], done=False
        ),
        "dropped": sse_handler([ROLE_CHUNK], done=False),
        "idle": sse_handler([ROLE_CHUNK], done=False, hang_after=True),
    }[failure]
    second.handler = sse_handler(text_stream(["from", " b"]))
    tree = two_targets(upstream.url, second.url, cooldown={"failures": 1, "seconds": 30})
    tree["limits"] = {"idle_timeout": 0.2}
    gateway = await gateway_factory(tree, clock=FakeClock())
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True
    )
    assert raw.headers["x-gateway-provider"] == "b" and raw.headers["x-gateway-attempts"] == "2"
    texts, finishes, _ = await collect(raw.parse())
    assert texts[0] == "from b" and finishes[0] == "stop"
    assert (await upstream_states(gateway))["a"]["state"] == "cooling"


async def test_a_role_chunk_then_a_slow_first_token_is_not_a_first_token_timeout(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """first_token_timeout is the wait for any upstream chunk; after the role chunk, idle_timeout holds."""
    upstream.handler = sse_handler(text_stream(["late"]), done=False, delay=0.3)
    gateway = await gateway_factory(one_route(upstream.url, first_token_timeout=0.2, idle_timeout=1))
    texts, finishes, _ = await collect(
        await gateway.client().chat.completions.create(model="one", messages=MESSAGES, stream=True)
    )
    assert texts[0] == "late" and finishes[0] == "stop" and len(upstream.requests) == 1


async def test_429_with_retry_after_is_honoured_on_the_same_target(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = failing(429, 1, json_handler(completion("after the wait")), headers={"retry-after": "0.4"})
    tree = {"providers": {"a": provider(upstream.url)}, "routes": [{"model": "one", "provider": "a", "retries": 1}]}
    gateway = await gateway_factory(tree)
    started = now()
    status, headers, body = await post(gateway, {"model": "one"})
    assert status == 200 and body["choices"][0]["message"]["content"] == "after the wait"
    assert now() - started >= 0.4 and headers["x-gateway-attempts"] == "2"


async def test_client_errors_are_never_retried(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler({"error": {"message": "bad messages", "param": "messages"}}, status=400)
    second.handler = json_handler(completion("should not be asked"))
    gateway = await gateway_factory(two_targets(upstream.url, second.url))
    with pytest.raises(openai.BadRequestError):
        await gateway.client().chat.completions.create(model="smart", messages=MESSAGES)
    assert len(upstream.requests) == 1 and second.requests == []


async def test_spent_retries_tell_the_sdk_not_to_retry(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = second.handler = json_handler({"error": {"message": "down"}}, status=503)
    gateway = await gateway_factory(two_targets(upstream.url, second.url, retries=2))
    client = gateway.client(max_retries=2)  # the SDK's default retry count
    with pytest.raises(openai.InternalServerError) as raised:
        await client.chat.completions.create(model="smart", messages=MESSAGES)
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert raised.value.response.headers["x-gateway-attempts"] == "3"
    assert len(upstream.requests) + len(second.requests) == 3  # the SDK did not multiply them


def one_route(url: str, **route: object) -> dict:
    return {"providers": {"a": provider(url)}, "routes": [{"model": "one", "provider": "a", **route}]}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("status", "hints"), [(429, {"retry-after-ms": "20", "retry-after": "1"}), (503, {"retry-after-ms": "20"})]
)
async def test_a_one_off_failure_through_a_route_without_retries_is_survived_by_the_sdks_own_retry(
    upstream: Upstream, gateway_factory: GatewayFactory, status: int, hints: dict, stream: bool
) -> None:
    """The gateway made one attempt, so the SDK's own retries (two by default) are the client's to make."""
    answer = sse_handler(text_stream(["second", " time"])) if stream else json_handler(completion("second time"))
    upstream.handler = failing(status, 1, answer, headers=hints)
    gateway = await gateway_factory(one_route(upstream.url))
    raw = await gateway.client(max_retries=2).chat.completions.with_raw_response.create(
        model="one", messages=MESSAGES, stream=stream
    )
    result = raw.parse()
    text = (await collect(result))[0][0] if stream else result.choices[0].message.content
    assert text == "second time" and len(upstream.requests) == 2
    assert raw.headers["x-gateway-attempts"] == "1"  # the SDK's retry was a request of its own


@pytest.mark.parametrize(
    ("sent", "passed_on"),
    [
        (
            {"retry-after": "7", "retry-after-ms": "7000", "x-should-retry": "true"},
            {"retry-after": "7", "retry-after-ms": "7000", "x-should-retry": "true"},
        ),
        ({"retry-after": "Wed, 21 Oct 2037 07:28:00 GMT"}, {"retry-after": "Wed, 21 Oct 2037 07:28:00 GMT"}),
        ({"x-should-retry": "false"}, {"x-should-retry": "false"}),  # OpenAI's insufficient_quota 429s say so
        ({"retry-after": "soon", "retry-after-ms": "-5", "x-should-retry": "maybe"}, {}),  # not hints: dropped
        ({"retry-after": "9" * 100}, {}),
    ],
)
async def test_one_attempt_passes_the_upstreams_retry_hints_on(
    upstream: Upstream, gateway_factory: GatewayFactory, sent: dict, passed_on: dict
) -> None:
    upstream.handler = failing(429, 1_000, json_handler(completion("never")), headers=sent)
    gateway = await gateway_factory(one_route(upstream.url))
    status, headers, body = await post(gateway, {"model": "one"})
    assert status == 429 and body["error"]["type"] == "rate_limit_error" and headers["x-gateway-attempts"] == "1"
    named = {name.lower(): value for name, value in headers.items()}
    hints = {name: named[name] for name in ("retry-after", "retry-after-ms", "x-should-retry") if name in named}
    assert hints == passed_on


@pytest.mark.parametrize("way", ["retries", "fallbacks"])
async def test_a_gateway_that_retried_tells_the_sdk_not_to_retry_whatever_the_upstream_said(
    upstream: Upstream, gateway_factory: GatewayFactory, way: str
) -> None:
    hints = {"retry-after-ms": "20", "retry-after": "1", "x-should-retry": "true"}
    upstream.handler = failing(429, 1_000, json_handler(completion("never")), headers=hints)
    tree = one_route(upstream.url, retries=1) if way == "retries" else one_route(upstream.url, fallbacks=["two"])
    tree["routes"].append({"model": "two", "provider": "a"})
    gateway = await gateway_factory(tree)
    with pytest.raises(openai.RateLimitError) as raised:
        await gateway.client(max_retries=2).chat.completions.create(model="one", messages=MESSAGES)
    headers = raised.value.response.headers
    assert headers["x-should-retry"] == "false" and headers["x-gateway-attempts"] == "2"
    assert "retry-after" not in headers and "retry-after-ms" not in headers
    assert len(upstream.requests) == 2  # the SDK did not multiply them


async def test_fallback_route_serves_when_every_target_failed(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler({"error": {"message": "down"}}, status=502)
    tree = {
        "providers": {"a": provider(upstream.url), "demo": {"kind": "mock"}},
        "routes": [{"model": "primary", "provider": "a", "fallbacks": ["demo"]}, {"model": "demo", "provider": "demo"}],
    }
    gateway = await gateway_factory(tree)
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="primary", messages=MESSAGES, max_tokens=3
    )
    assert raw.headers["x-gateway-provider"] == "demo" and raw.headers["x-gateway-upstream-model"] == "demo"
    assert raw.parse().choices[0].message.content == "Hello! I"


async def test_a_fallback_route_holds_the_request_to_its_own_limits(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler({"error": {"message": "down"}}, status=503)
    second.handler = json_handler(completion("from the fallback"))
    tree = {
        "providers": {"a": provider(upstream.url), "b": provider(second.url)},
        "routes": [
            {"model": "primary", "provider": "a", "fallbacks": ["small"]},
            {"model": "small", "provider": "b", "max_tokens": 5},
        ],
    }
    gateway = await gateway_factory(tree)
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="primary", messages=MESSAGES, max_tokens=50
    )
    assert raw.headers["x-gateway-provider"] == "b" and raw.headers["x-gateway-max-tokens"] == "5"
    assert orjson.loads(upstream.requests[0]["body"])["max_tokens"] == 50
    assert orjson.loads(second.requests[0]["body"])["max_tokens"] == 5


async def test_weights_are_honoured_over_many_requests(gateway_factory: GatewayFactory) -> None:
    tree = {
        "providers": {"m1": {"kind": "mock"}, "m2": {"kind": "mock"}},
        "routes": [
            {"model": "weighted", "targets": [{"provider": "m1", "weight": 3}, {"provider": "m2", "weight": 1}]}
        ],
    }
    gateway = await gateway_factory(tree)
    served: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        for _ in range(400):
            async with http.post(
                f"{gateway.url}/v1/chat/completions", json={"model": "weighted", "messages": MESSAGES, "max_tokens": 1}
            ) as response:
                served[response.headers["x-gateway-provider"]] += 1
    # 300 expected for m1 (sd 8.7): four standard deviations either way
    assert 265 <= served["m1"] <= 335 and served["m1"] + served["m2"] == 400


async def upstream_states(gateway: Gateway) -> dict[str, dict]:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/health/upstreams") as response:
        return {row["provider"]: row for row in (await response.json())["targets"]}


async def test_a_failing_target_is_cooled_down_then_probed_back(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = failing(503, 2, json_handler(completion("a is back")))
    second.handler = json_handler(completion("from b"))
    clock = FakeClock()
    gateway = await gateway_factory(
        two_targets(upstream.url, second.url, cooldown={"failures": 2, "seconds": 30}), clock=clock
    )
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as response:
        text = await response.text()
        for model, provider in (("model-a", "a"), ("model-b", "b")):  # every target has its gauge from the start
            assert f'gateway_target_cooling{{model="{model}",provider="{provider}",route="smart"}} 0.0' in text
    for _ in range(2):
        assert (await post(gateway, {"model": "smart"}))[2]["choices"][0]["message"]["content"] == "from b"
    states = await upstream_states(gateway)
    assert states["a"]["state"] == "cooling" and states["a"]["failures"] == 2 and states["b"]["state"] == "ok"
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as response:
        assert 'gateway_target_cooling{model="model-a",provider="a",route="smart"} 1.0' in await response.text()
    for _ in range(3):  # cooling: a is skipped, b answers at once
        _, headers, _ = await post(gateway, {"model": "smart"})
        assert headers["x-gateway-attempts"] == "1" and headers["x-gateway-provider"] == "b"
    assert len(upstream.requests) == 2
    clock.advance(29)
    _, headers, _ = await post(gateway, {"model": "smart"})
    assert headers["x-gateway-provider"] == "b" and len(upstream.requests) == 2  # still cooling
    clock.advance(1)
    _, headers, body = await post(gateway, {"model": "smart"})  # the half-open probe, which succeeds
    assert headers["x-gateway-provider"] == "a" and body["choices"][0]["message"]["content"] == "a is back"
    assert (await upstream_states(gateway))["a"] == {
        **states["a"],
        "state": "ok",
        "failures": 0,
        "cooling_seconds_left": None,
    }


async def test_a_routes_only_way_out_is_never_cooled_down(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    upstream.handler = failing(503, 4, json_handler(completion("recovered")))
    tree = {
        "providers": {"a": provider(upstream.url)},
        "routes": [{"model": "only", "provider": "a", "cooldown": {"failures": 1}}],
    }
    gateway = await gateway_factory(tree)
    for _ in range(4):
        assert (await post(gateway, {"model": "only"}))[0] == 503
    assert (await upstream_states(gateway))["a"]["state"] == "ok"
    assert (await post(gateway, {"model": "only"}))[2]["choices"][0]["message"]["content"] == "recovered"


async def test_ready_is_503_while_draining(routed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{routed.url}/ready") as response:
            assert response.status == 200
        routed.core.draining = True
        async with http.get(f"{routed.url}/ready") as response:
            assert response.status == 503
        async with http.get(f"{routed.url}/health") as response:
            assert response.status == 200


# ---------------------------------------------------------------- live reload


def mock_routes(*names: str) -> dict:
    return {
        "providers": {"demo": {"kind": "mock", "tokens_per_second": 200}},
        "routes": [{"model": name, "provider": "demo"} for name in names],
    }


async def test_reload_adds_routes_and_refuses_an_invalid_file(
    gateway_factory: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.yaml"
    gateway = await gateway_factory(mock_routes("one"), path=path)
    assert (await post(gateway, {"model": "two"}))[0] == 404
    path.write_text(orjson.dumps(mock_routes("one", "two")).decode())  # JSON is YAML too
    assert await gateway.core.reload()
    assert (await post(gateway, {"model": "two", "max_tokens": 2}))[0] == 200

    path.write_text("routes:\n  - {model: three, provider: nowhere}\n")
    caplog.set_level("ERROR", logger="gateway")
    assert not await gateway.core.reload()
    assert any("routes[0].provider: unknown provider 'nowhere'" in r.getMessage() for r in caplog.records)
    assert (await post(gateway, {"model": "two", "max_tokens": 2}))[0] == 200


async def test_reload_under_load_fails_no_request(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    gateway = await gateway_factory(mock_routes("one"), path=path)
    client = gateway.client()

    async def one_stream() -> str:
        texts, finishes, _ = await collect(
            await client.chat.completions.create(model="one", messages=MESSAGES, stream=True, max_tokens=20)
        )
        assert finishes[0] == "length"
        return texts[0]

    requests = [asyncio.create_task(one_stream()) for _ in range(40)]
    for generation in range(5):  # each reload swaps the table while those streams are running
        await asyncio.sleep(0.02)
        path.write_text(orjson.dumps(mock_routes("one", f"extra-{generation}")).decode())
        assert await gateway.core.reload()
    results = await asyncio.gather(*requests)
    assert len(set(results)) == 1 and len(results) == 40


async def test_watch_config_reloads_a_changed_file(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    tree = mock_routes("one")
    tree["server"] = {"watch_config": True}
    gateway = await gateway_factory(tree, path=path)
    tree["routes"].append({"model": "two", "provider": "demo"})
    path.write_text(orjson.dumps(tree).decode())
    deadline = now() + 5
    while (await post(gateway, {"model": "two", "max_tokens": 1}))[0] != 200:
        assert now() < deadline, "the changed file was not picked up"
        await asyncio.sleep(0.1)


async def test_a_target_answering_429_with_retry_after_is_passed_over_for_the_other(
    upstream: Upstream, second: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = failing(429, 1_000_000, json_handler(completion("never served")), headers={"retry-after": "0.2"})
    second.handler = sse_handler(text_stream(["from", " b"]))
    gateway = await gateway_factory(two_targets(upstream.url, second.url))  # the weights put the 429 target first
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="smart", messages=MESSAGES, stream=True
    )
    assert raw.headers["x-gateway-provider"] == "b" and raw.headers["x-gateway-upstream-model"] == "model-b"
    assert int(raw.headers["x-gateway-attempts"]) >= 2
    texts, finishes, _ = await collect(raw.parse())
    assert texts[0] == "from b" and finishes[0] == "stop"
    assert len(upstream.requests) == 1 and len(second.requests) == 1
    assert orjson.loads(upstream.requests[0]["body"])["model"] == "model-a"


async def test_a_reload_keeps_warm_upstream_connections(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """The upstream client outlives a reload: the request after it reuses the connection of the one before."""
    upstream.handler = json_handler(completion("hello"))
    tree = {"providers": {"a": provider(upstream.url)}, "routes": [{"model": "one", "provider": "a"}]}
    gateway = await gateway_factory(tree, path=tmp_path / "gateway.yaml")
    assert (await post(gateway, {"model": "one"}))[0] == 200
    tree["routes"].append({"model": "two", "provider": "a"})
    (tmp_path / "gateway.yaml").write_text(orjson.dumps(tree).decode())
    assert await gateway.core.reload()
    assert (await post(gateway, {"model": "two"}))[0] == 200
    first, second = (request["peer"] for request in upstream.requests)
    assert first == second
