"""A quorum request in the ledger and against budgets, on SQLite and PostgreSQL: one row for
the request as its client saw it and one per upstream call, each priced; the key's budget is
charged (and held beforehand) for every call of the council, once; a member route's own
budget binds the calls made to it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import openai
import pytest
from conftest import GatewayFactory, Upstream
from councils import Reply, Scripted, council_tree
from test_ledger import ADMIN, CLIENT, FAST, MESSAGES, admin, client, rows_of
from test_limits_e2e import wait_for

PER_TOKEN = {"input": 0, "output": 1_000_000}  # 1 USD per completion token, prompts free


def priced_council(upstream: Upstream, ledger_url: str, *, key_budget: float, claude_budget: float | None = None):
    """synthesize over gpt and claude, judged by judge; every member route at PER_TOKEN and at
    most 10 tokens an answer, so the council can cost at most 3 calls x 10 USD."""
    member = {"price": PER_TOKEN, "max_tokens": 10}
    claude = {**member, **({"budget": {"usd": claude_budget, "period": "1d"}} if claude_budget is not None else {})}
    tree = council_tree(
        upstream.url,
        "synthesize",
        members=("gpt", "claude"),
        judge="judge",
        min_answers=1,
        member_routes={"gpt": member, "claude": claude, "judge": member},
    )
    tree["auth"] = {"keys": [{"id": "team", "key": CLIENT, "budget": {"usd": key_budget, "period": "1d"}}]}
    tree["auth"]["admin_key"] = ADMIN
    tree["ledger"] = {"url": ledger_url, **FAST}
    return tree


async def key_spend(gateway: Any) -> float:
    status, key = await admin(gateway, "GET", "/admin/keys/team")
    assert status == 200
    return key["spend"]["usd"]


async def test_a_council_is_one_row_and_a_row_per_call_and_the_key_pays_for_every_call_once(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    Scripted(upstream, {"m-gpt": "Paris", "m-claude": "Paris, France", "m-judge": "It is Paris."})
    gateway = await gateway_factory(priced_council(upstream, ledger_url, key_budget=100))
    answer = await client(gateway).chat.completions.with_raw_response.create(
        model="council", messages=MESSAGES, extra_headers={"x-request-id": "r-council"}
    )
    assert answer.headers["x-gateway-budget-remaining"] == "100.000000"
    rows = await rows_of(gateway, "r-council")
    [request] = [row for row in rows if row["member"] is None]
    calls = {row["member"]: row for row in rows if row["member"] is not None}
    assert set(calls) == {"gpt", "claude", "judge"}
    assert {member: (row["upstream_model"], row["completion_tokens"]) for member, row in calls.items()} == {
        "gpt": ("m-gpt", 1),
        "claude": ("m-claude", 2),
        "judge": ("m-judge", 3),
    }
    assert {member: row["cost_usd"] for member, row in calls.items()} == {"gpt": 1, "claude": 2, "judge": 3}
    assert all(row["key_id"] == "team" and row["route"] == row["member"] for row in calls.values())
    assert (request["route"], request["completion_tokens"], request["cost_usd"]) == ("council", 6, 6)
    spend = await key_spend(gateway)
    assert spend == 6  # the calls' cost, not twice over
    status, report = await admin(gateway, "GET", "/admin/usage", params={"group_by": "route"})
    assert status == 200
    by_route = {item["group"]: item for item in report["data"]}
    assert set(by_route) == {"council"} and by_route["council"]["requests"] == 1  # as the client saw it


async def test_while_a_council_sits_the_key_budget_is_held_for_every_call_it_may_make(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    """Three calls of at most 10 USD each: while the council sits, 30 USD of the key's 25 are
    held, so even one more call of 10 USD is refused as taken up by requests in flight."""
    script = Scripted(upstream, {"m-gpt": Reply(hang=True), "m-claude": "Paris", "m-judge": "Paris"})
    gateway = await gateway_factory(priced_council(upstream, ledger_url, key_budget=25))
    sdk = client(gateway)
    sitting = asyncio.create_task(sdk.chat.completions.create(model="council", messages=MESSAGES))
    await wait_for(lambda: script.calls["m-gpt"])
    with pytest.raises(openai.RateLimitError) as refused:
        await sdk.chat.completions.create(model="claude", messages=MESSAGES)
    assert refused.value.code == "insufficient_quota" and "taken up by requests in flight" in refused.value.message
    sitting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sitting
    await wait_for(lambda: script.gone["m-gpt"])  # the client gone, the council's calls are stopped


async def test_a_member_route_budget_leaves_that_member_out(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    script = Scripted(upstream, {"m-gpt": "Paris", "m-claude": "Paris", "m-judge": "It is Paris."})
    gateway = await gateway_factory(priced_council(upstream, ledger_url, key_budget=100, claude_budget=0.5))
    await client(gateway).chat.completions.create(  # 1 USD: claude's budget is spent
        model="claude", messages=MESSAGES, extra_headers={"x-request-id": "r-claude"}
    )
    await rows_of(gateway, "r-claude")
    answer = await client(gateway).chat.completions.create(
        model="council", messages=MESSAGES, extra_headers={"x-request-id": "r-left-out"}
    )
    quorum = answer.model_extra["quorum"]
    assert [(item["member"], item["error"]["code"]) for item in quorum["left_out"]] == [
        ("claude", "insufficient_quota")
    ]
    assert len(script.calls["m-claude"]) == 1 and answer.choices[0].message.content == "It is Paris."
    rows = await rows_of(gateway, "r-left-out")
    claude = next(row for row in rows if row["member"] == "claude")
    assert (claude["status"], claude["error"], claude["cost_usd"]) == (429, "insufficient_quota", 0)
