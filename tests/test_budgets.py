"""Budgets per key and per route, on SQLite and PostgreSQL: 429 insufficient_quota once spent,
until the period rolls over; x-gateway-budget-remaining on answers; within one request of the budget."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest
from conftest import FakeClock, GatewayFactory, Upstream
from fakes import completion, json_handler
from test_ledger import ADMIN, CLIENT, FAST, MESSAGES, admin, client, rows_of

from gateway.policy.budgets import window

DAY = 86400.0
MONDAY = 1_764_547_200.0  # 2025-12-01 00:00 UTC, a Monday and the first of a month


def budget_tree(upstream: Upstream, ledger_url: str, *, key_budget: Any = None, route_budget: Any = None) -> dict:
    """1 USD per completion token (prompts free), at most 10 completion tokens: a request holds
    10 USD while in flight; the upstream always answers 5 tokens (5 USD)."""
    route = {
        "model": "paid",
        "provider": "up",
        "max_tokens": 10,
        "price": {"input": 0, "output": 1_000_000},
    }
    if route_budget:
        route["budget"] = route_budget
    key: dict[str, Any] = {"id": "team", "key": CLIENT}
    if key_budget:
        key["budget"] = key_budget
    return {
        "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-upstream"}},
        "routes": [route, {"model": "free", "provider": "up"}],
        "auth": {"keys": [key], "admin_key": ADMIN},
        "ledger": {"url": ledger_url, **FAST},
    }


FIVE_TOKENS = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


async def ask(gateway: Any, request_id: str, model: str = "paid") -> Any:
    """One request; waits for its row, so that the next one sees its spend."""
    answer = await client(gateway).chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, extra_headers={"x-request-id": request_id}
    )
    await rows_of(gateway, request_id)
    return answer


async def test_a_spent_key_budget_is_a_429_insufficient_quota_until_the_period_rolls_over(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    upstream.handler = json_handler(completion("hello", usage=FIVE_TOKENS))
    clock = FakeClock()
    clock.now = MONDAY + 3600
    gateway = await gateway_factory(
        budget_tree(upstream, ledger_url, key_budget={"usd": 12, "period": "1d"}), wall=clock
    )
    remaining = []
    for number in range(3):  # 0, 5, 10 USD spent before each: all under 12
        answer = await ask(gateway, f"r{number}")
        remaining.append(answer.headers["x-gateway-budget-remaining"])
    assert remaining == ["12.000000", "7.000000", "2.000000"]
    with pytest.raises(openai.RateLimitError) as refused:
        await client(gateway).chat.completions.create(model="paid", messages=MESSAGES)
    error = refused.value
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert "the key 'team'" in error.message and "until 2025-12-02T00:00:00Z" in error.message
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-gateway-budget-remaining"] == "0"
    assert len(upstream.requests) == 3  # the refused request never reached the upstream
    status, key = await admin(gateway, "GET", "/admin/keys/team")
    assert status == 200 and key["spend"]["usd"] == 15 and key["spend"]["remaining_usd"] == 0
    assert key["spend"]["from"] == "2025-12-01T00:00:00Z" and key["spend"]["to"] == "2025-12-02T00:00:00Z"
    with pytest.raises(openai.RateLimitError):  # the key's budget binds it on every route
        await client(gateway).chat.completions.create(model="free", messages=MESSAGES)
    clock.now = MONDAY + DAY  # the next UTC day: a new window
    answer = await ask(gateway, "next-day")
    assert answer.headers["x-gateway-budget-remaining"] == "12.000000"


async def test_a_route_budget_binds_every_key_together(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    upstream.handler = json_handler(completion("hello", usage=FIVE_TOKENS))
    tree = budget_tree(upstream, ledger_url, route_budget={"usd": 8, "period": "month"})
    other = "sk-client-other-0123456789ab"
    tree["auth"]["keys"].append({"id": "other", "key": other})
    gateway = await gateway_factory(tree)
    await ask(gateway, "first")
    await ask(gateway, "second")  # 5 spent of 8: admitted, and the spend passes the budget by one request
    with pytest.raises(openai.RateLimitError) as refused:
        await client(gateway, other).chat.completions.create(model="paid", messages=MESSAGES)
    assert refused.value.code == "insufficient_quota" and "this route" in refused.value.message


async def test_requests_in_flight_hold_the_budget_so_concurrent_ones_cannot_overspend(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    """Twenty requests at once against a 25 USD budget, each able to cost 10: at most three can
    be in flight together, and the spend ends within one request's cost of the budget."""
    release = __import__("asyncio").Event()

    async def slow(request: Any) -> Any:
        await release.wait()
        return await json_handler(completion("hello", usage=FIVE_TOKENS))(request)

    upstream.handler = slow
    gateway = await gateway_factory(budget_tree(upstream, ledger_url, key_budget={"usd": 25, "period": "30d"}))
    sdk = client(gateway)
    asyncio = __import__("asyncio")
    tasks = [asyncio.create_task(sdk.chat.completions.create(model="paid", messages=MESSAGES)) for _ in range(20)]
    while len(upstream.requests) < 3 or sum(task.done() for task in tasks) < 17:
        await asyncio.sleep(0.01)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    served = [result for result in results if not isinstance(result, Exception)]
    refused = [result for result in results if isinstance(result, openai.RateLimitError)]
    assert len(served) == 3 and len(refused) == 17 and len(upstream.requests) == 3
    held = [error for error in refused if "taken up by requests in flight" in error.message]
    assert held and all(error.response.headers["retry-after"] == "1" for error in held)
    _, key = await admin(gateway, "GET", "/admin/keys/team")
    while key["spend"]["usd"] < 15:  # the three rows land within a batch interval
        await asyncio.sleep(0.02)
        _, key = await admin(gateway, "GET", "/admin/keys/team")
    assert key["spend"]["usd"] == 15


def test_periods_are_whole_utc_days_from_the_epoch_or_calendar_months() -> None:
    at = MONDAY + 5 * DAY + 3600  # 2025-12-06 01:00 UTC
    assert window("1d", at).start.isoformat() == "2025-12-06T00:00:00+00:00"
    assert window("month", at).start.isoformat() == "2025-12-01T00:00:00+00:00"
    assert window("month", at).end.isoformat() == "2026-01-01T00:00:00+00:00"
    thirty = window("30d", at)
    assert thirty.end_day - thirty.start_day == 30 and thirty.start_day % 30 == 0
    assert thirty.start_day * DAY <= at < thirty.end_day * DAY
    assert window("month", MONDAY + 30 * DAY).start.isoformat() == "2025-12-01T00:00:00+00:00"  # Dec 31


async def test_budgets_and_prices_are_checked_at_load(tmp_path: Any) -> None:
    from gateway.config import ConfigError, parse_config

    tree = {
        "providers": {"d": {"kind": "mock"}},
        "routes": [
            {"model": "a", "provider": "d", "price": {"input": -1, "output": "x"}, "budget": {"usd": 5, "period": "2w"}}
        ],
        "auth": {"keys": [{"id": "k", "key": CLIENT, "budget": {"period": "1d"}}]},
        "ledger": {"url": "mysql://x", "flush_interval": 0},
    }
    with pytest.raises(ConfigError) as refused:
        parse_config(tree, source="gw.yaml", env={}, overrides={})
    problems = "\n".join(refused.value.problems)
    for fragment in (
        "routes[0].price.input: must be a number of USD, at least 0, got -1",
        "routes[0].price.output: must be a number of USD",
        "routes[0].budget.period: must be Nd (a number of days: 1d, 7d, 30d) or month, got '2w'",
        "auth.keys[0].budget.usd: is required (USD)",
        "ledger.url: must be sqlite:///<path> or postgresql://user:password@host/database, got 'mysql://x'",
        "ledger.flush_interval: must be more than 0 seconds",
    ):
        assert fragment in problems, problems
    good = parse_config(
        {**tree, "routes": [{"model": "a", "provider": "d"}], "auth": {}, "ledger": {"url": "sqlite:data/l.db"}},
        source=str(tmp_path / "gateway.yaml"),
        env={},
        overrides={},
    )
    assert good.ledger.url == f"sqlite://{tmp_path}/data/l.db"  # relative: beside the config file
    absolute = parse_config(
        {**tree, "routes": [{"model": "a", "provider": "d"}], "auth": {}, "ledger": {}},
        source="/etc/gw/gateway.yaml",
        env={},
        overrides={},
    )
    assert absolute.ledger.url == "sqlite:///etc/gw/ledger.db"


async def test_the_admin_endpoints_404_without_an_admin_key_401_without_a_key_403_with_a_client_key(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Any
) -> None:
    tree = budget_tree(upstream, f"sqlite://{tmp_path}/l.db")
    keyed = await gateway_factory(tree)
    del tree["auth"]["admin_key"]
    unkeyed = await gateway_factory(tree)
    paths = [
        ("POST", "/admin/keys"),
        ("GET", "/admin/keys"),
        ("GET", "/admin/keys/team"),
        ("PATCH", "/admin/keys/team"),
        ("DELETE", "/admin/keys/team"),
        ("GET", "/admin/usage"),
        ("GET", "/admin/requests/x"),
    ]
    async with aiohttp.ClientSession() as http:
        for method, path in paths:
            async with http.request(method, f"{unkeyed.url}{path}", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
                assert r.status == 404 and (await r.json())["error"]["type"] == "invalid_request_error", path
            async with http.request(method, f"{keyed.url}{path}") as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "invalid_api_key", path
            async with http.request(method, f"{keyed.url}{path}", headers={"Authorization": f"Bearer {CLIENT}"}) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "admin_key_required", path
