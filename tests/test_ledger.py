"""The ledger through the gateway, on SQLite and on a real PostgreSQL (each test runs on both):
every finished request is one row, priced, readable through the admin endpoints."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import openai
import pytest
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import completion, json_handler, sse_handler, text_stream

ADMIN = "sk-admin-0123456789abcdef0123"
CLIENT = "sk-client-0123456789abcdef01"
MESSAGES = [{"role": "user", "content": "hi"}]
FAST = {"flush_interval": 0.05, "key_refresh": 0.1}  # rows and keys seen within a tenth of a second


def ledger_tree(upstream: Upstream, ledger_url: str, **ledger: Any) -> dict[str, Any]:
    """test-model on the fake upstream at 1 USD per million prompt tokens and 2 per million
    completion tokens; `unpriced` on the same upstream with no price; a client key and an admin key."""
    tree = openai_route_config(upstream.url, price={"input": 1, "output": 2, "cached_input": 0.5})
    tree["routes"].append({"model": "unpriced", "provider": "up"})
    tree["auth"] = {"keys": [{"id": "team", "key": CLIENT}], "admin_key": ADMIN}
    tree["ledger"] = {"url": ledger_url, **FAST, **ledger}
    return tree


def client(gateway: Gateway, key: str = CLIENT, **options: Any) -> openai.AsyncOpenAI:
    options.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, timeout=10, **options)


async def admin(gateway: Gateway, method: str, path: str, **options: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{gateway.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}, **options) as answer,
    ):
        return answer.status, await answer.json()


async def rows_of(gateway: Gateway, request_id: str, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The ledger rows of a request, once written (they are written within a batch interval)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = await admin(gateway, "GET", f"/admin/requests/{request_id}")
        if status == 200:
            return body["data"]
        assert status == 404 and time.monotonic() < deadline, (status, body)
        await asyncio.sleep(0.02)


USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


async def test_every_outcome_is_one_row_with_its_tokens_cost_and_timing(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    sdk = client(gateway)
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    await sdk.chat.completions.create(model="test-model", messages=MESSAGES, extra_headers={"x-request-id": "r-ok"})
    upstream.handler = sse_handler(text_stream(["a", "b"], usage=(1000, 2)))
    stream = await sdk.chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, extra_headers={"x-request-id": "r-stream"}
    )
    assert [chunk async for chunk in stream]
    with pytest.raises(openai.NotFoundError):
        await sdk.chat.completions.create(model="nope", messages=MESSAGES, extra_headers={"x-request-id": "r-404"})
    with pytest.raises(openai.AuthenticationError):
        await client(gateway, "sk-wrong-key-0123456789").chat.completions.create(
            model="test-model", messages=MESSAGES, extra_headers={"x-request-id": "r-401"}
        )
    upstream.handler = json_handler({"error": {"message": "down", "type": "server_error"}}, status=500)
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(
            model="test-model", messages=MESSAGES, extra_headers={"x-request-id": "r-500"}
        )

    [ok] = await rows_of(gateway, "r-ok")
    assert ok["key_id"] == "team" and ok["route"] == "test-model" and ok["provider"] == "up"
    assert (ok["status"], ok["outcome"], ok["stream"], ok["attempts"]) == (200, "ok", False, 1)
    assert (ok["prompt_tokens"], ok["completion_tokens"]) == (1000, 500)
    assert ok["cost_usd"] == pytest.approx((1000 * 1 + 500 * 2) / 1e6)
    assert ok["duration_ms"] > 0 and ok["time"].endswith("Z") and ok["path"] == "/v1/chat/completions"
    assert ok["member"] is None and ok["messages"] is None  # conversations are not kept by default
    [streamed] = await rows_of(gateway, "r-stream")
    assert (streamed["stream"], streamed["outcome"], streamed["completion_tokens"]) == (True, "ok", 2)
    assert streamed["ttft_ms"] is not None and streamed["cost_usd"] == pytest.approx((1000 + 4) / 1e6)
    [missing] = await rows_of(gateway, "r-404")
    assert (missing["status"], missing["outcome"], missing["error"], missing["cost_usd"]) == (
        404,
        "rejected",
        "model_not_found",
        0.0,
    )
    [refused] = await rows_of(gateway, "r-401")
    assert (refused["status"], refused["key_id"], refused["attempts"]) == (401, "unknown", 0)
    [failed] = await rows_of(gateway, "r-500")
    assert (failed["status"], failed["outcome"], failed["cost_usd"]) == (500, "error", None)


async def test_a_cut_answer_costs_what_the_client_was_told_and_cached_tokens_cost_less(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    usage = {**USAGE, "prompt_tokens_details": {"cached_tokens": 600}}
    upstream.handler = json_handler(completion("one two three four five six seven eight", usage=usage))
    answer = await client(gateway).chat.completions.create(
        model="test-model", messages=MESSAGES, max_tokens=3, extra_headers={"x-request-id": "r-cut"}
    )
    assert answer.usage.completion_tokens == 3
    [row] = await rows_of(gateway, "r-cut")
    assert (row["completion_tokens"], row["cached_tokens"], row["truncated"]) == (3, 600, True)
    assert row["cost_usd"] == pytest.approx((400 * 1 + 600 * 0.5 + 3 * 2) / 1e6)


async def test_a_model_with_no_price_costs_null_and_is_counted(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    await client(gateway).chat.completions.create(
        model="unpriced", messages=MESSAGES, extra_headers={"x-request-id": "r-free"}
    )
    [row] = await rows_of(gateway, "r-free")
    assert row["cost_usd"] is None and row["prompt_tokens"] == 1000
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as answer:
        metrics = await answer.text()
    assert 'gateway_unpriced_requests_total{provider="up",route="unpriced"} 1.0' in metrics
    status, report = await admin(gateway, "GET", "/admin/usage", params={"group_by": "route"})
    assert status == 200
    by_route = {item["group"]: item for item in report["data"]}
    assert by_route["unpriced"]["cost_usd"] is None and by_route["unpriced"]["unpriced_requests"] == 1


async def test_a_known_model_is_priced_by_the_price_library(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Any
) -> None:
    """OpenAI's own base_url and gpt-4o: genai-prices' 2.5 USD per million input tokens, 1.25
    cached, 10 output (the upstream here is a fake one behind a mock transport's address)."""
    from gateway.config import ProviderConfig, Route, Target
    from gateway.config.model import Limits
    from gateway.policy.prices import PriceBook, Tokens

    book = PriceBook()
    route = Route("gpt-4o", (Target("openai"),), Limits())
    openai_provider = ProviderConfig("openai", "openai", "https://api.openai.com/v1")
    cost = book.cost(route, openai_provider, "gpt-4o", Tokens(prompt=1000, completion=100, cached=400))
    assert cost == pytest.approx((600 * 2.5 + 400 * 1.25 + 100 * 10) / 1e6)
    assert book.cost(route, ProviderConfig("lab", "openai", "http://127.0.0.1:9/v1"), "gpt-4o", Tokens(1, 1)) is None
    assert book.cost(route, ProviderConfig("demo", "mock"), "demo", Tokens(10, 10)) == 0.0


async def test_spend_shows_in_metrics_by_key_and_route(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    for _ in range(2):
        await client(gateway).chat.completions.create(model="test-model", messages=MESSAGES)
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as answer:
        metrics = await answer.text()
    assert 'gateway_spend_usd_total{key="team",route="test-model"} 0.004' in metrics
    for name in ("gateway_ledger_write_seconds", "gateway_ledger_batch_rows", "gateway_ledger_buffered_rows"):
        assert name in metrics
