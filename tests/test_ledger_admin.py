"""Keys at run time, usage reports and stored conversations, through /admin, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from conftest import FakeClock, GatewayFactory, Upstream
from fakes import completion, echo_completion_handler, json_handler, sse_handler, text_stream
from test_ledger import CLIENT, MESSAGES, USAGE, admin, client, ledger_tree, rows_of


async def until(check: Any, timeout: float = 10.0) -> None:
    """Wait for `check()` (a coroutine function) to be true: keys and rows take up to a refresh."""
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def works(gateway: Any, key: str, model: str = "test-model") -> bool:
    try:
        await client(gateway, key).chat.completions.create(model=model, messages=MESSAGES)
    except (openai.AuthenticationError, openai.PermissionDeniedError):
        return False
    return True


async def test_keys_created_changed_and_revoked_at_run_time_work_beside_the_configs(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    body = {"id": "team-a", "models": ["test-*"], "rpm": 600, "budget": {"usd": 50, "period": "30d"}}
    status, created = await admin(gateway, "POST", "/admin/keys", json=body)
    assert status == 201
    secret = created.pop("key")
    assert secret.startswith("sk-gw-") and len(secret) > 40
    assert created["id"] == "team-a" and created["models"] == ["test-*"] and created["rpm"] == 600
    assert created["budget"] == {"usd": 50, "period": "30d"} and created["tpm"] is None
    assert await works(gateway, secret) and await works(gateway, CLIENT)  # the database's and the config's
    assert not await works(gateway, secret, "unpriced")  # outside its models: 403
    status, listed = await admin(gateway, "GET", "/admin/keys")
    assert [(key["id"], key["source"]) for key in listed["data"]] == [("team", "config"), ("team-a", "database")]
    status, again = await admin(gateway, "POST", "/admin/keys", json={"id": "team-a"})
    assert status == 409 and again["error"]["code"] == "key_exists"
    status, again = await admin(gateway, "POST", "/admin/keys", json={"id": "team"})
    assert status == 409  # the config's key
    status, kept = await admin(gateway, "DELETE", "/admin/keys/team")
    assert status == 409 and "gateway.yaml" in kept["error"]["message"] and await works(gateway, CLIENT)
    status, changed = await admin(gateway, "PATCH", "/admin/keys/team-a", json={"models": None, "budget": None})
    assert status == 200 and changed["models"] is None and changed["budget"] is None and changed["rpm"] == 600
    assert await works(gateway, secret, "unpriced")
    status, shown = await admin(gateway, "GET", "/admin/keys/team-a")
    assert status == 200 and shown["spend"]["period"] == "month" and shown["spend"]["remaining_usd"] is None
    await until(lambda: spend_is(gateway, "team-a", 0.002))
    status, revoked = await admin(gateway, "DELETE", "/admin/keys/team-a")
    assert status == 200 and revoked["revoked"] is True
    with pytest.raises(openai.AuthenticationError):
        await client(gateway, secret).chat.completions.create(model="test-model", messages=MESSAGES)
    status, gone = await admin(gateway, "DELETE", "/admin/keys/team-a")
    assert status == 404 and gone["error"]["code"] == "key_not_found"
    status, fresh = await admin(gateway, "POST", "/admin/keys", json={"id": "team-a"})  # a revoked id: a new secret
    assert status == 201 and fresh["key"] != secret and await works(gateway, fresh["key"])
    logged = " ".join(record.getMessage() + str(getattr(record, "fields", "")) for record in caplog.records)
    assert secret not in logged and fresh["key"] not in logged


async def spend_is(gateway: Any, key_id: str, usd: float) -> bool:
    _, shown = await admin(gateway, "GET", f"/admin/keys/{key_id}")
    return shown["spend"]["usd"] == pytest.approx(usd)


async def test_bad_admin_input_is_a_400_naming_the_field(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, f"sqlite://{tmp_path}/l.db"))
    for body, param in (
        ({"id": "bad id"}, "id"),
        ({"id": "a", "rpm": 0}, "rpm"),
        ({"id": "a", "tpm": 2**31}, "tpm"),  # beyond the 32-bit column: a 400, not PostgreSQL's 503
        ({"id": "a", "models": "gpt"}, "models"),
        ({"id": "a", "budget": {"usd": -1}}, "budget.usd"),
        ({"id": "a", "budget": {"usd": 1, "period": "1w"}}, "budget.period"),
        ({"id": "a", "key": "sk-mine"}, "key"),
    ):
        status, answer = await admin(gateway, "POST", "/admin/keys", json=body)
        assert status == 400 and answer["error"]["param"] == param, (body, answer)
    status, answer = await admin(gateway, "POST", "/admin/keys", data=b"{not json")
    assert status == 400 and answer["error"]["type"] == "invalid_request_error"
    for query, param in (({"group_by": "user"}, "group_by"), ({"from": "yesterday"}, "from")):
        status, answer = await admin(gateway, "GET", "/admin/usage", params=query)
        assert status == 400 and answer["error"]["param"] == param
    status, answer = await admin(gateway, "PATCH", "/admin/keys/none", json={"rpm": 5})
    assert status == 404 and answer["error"]["code"] == "key_not_found"


async def test_usage_is_reported_by_key_route_model_and_day(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    gateway = await gateway_factory(ledger_tree(upstream, ledger_url))
    for model, request_id in (("test-model", "u1"), ("test-model", "u2"), ("unpriced", "u3")):
        await client(gateway).chat.completions.create(
            model=model, messages=MESSAGES, extra_headers={"x-request-id": request_id}
        )
    await rows_of(gateway, "u3")
    await rows_of(gateway, "u2")
    status, by_key = await admin(gateway, "GET", "/admin/usage")
    assert status == 200 and by_key["group_by"] == "key"
    assert by_key["data"] == [
        {
            "group": "team",
            "requests": 3,
            "prompt_tokens": 3000,
            "completion_tokens": 1500,
            "cost_usd": pytest.approx(0.004),
            "unpriced_requests": 1,
        }
    ]
    _, by_model = await admin(gateway, "GET", "/admin/usage", params={"group_by": "model"})
    assert [(item["group"], item["requests"]) for item in by_model["data"]] == [("test-model", 2), ("unpriced", 1)]
    _, by_day = await admin(gateway, "GET", "/admin/usage", params={"group_by": "day"})
    assert [item["group"] for item in by_day["data"]] == [time.strftime("%Y-%m-%d", time.gmtime())]
    _, before = await admin(
        gateway, "GET", "/admin/usage", params={"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"}
    )
    assert before["data"] == []


async def test_conversations_are_kept_when_asked_and_deleted_after_their_retention(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    """The messages as sent and each answer as its client got it, cut included; then, a gateway
    started 31 days later deletes them and keeps the rows."""
    clock = FakeClock()
    clock.now = time.time()
    tree = ledger_tree(upstream, ledger_url, store_messages=True, retention_days=30)
    gateway = await gateway_factory(tree, wall=clock)
    upstream.handler = sse_handler(text_stream(["one", " two", " three", " four"], usage=(9, 4)))
    stream = await client(gateway).chat.completions.create(
        model="test-model", messages=MESSAGES, stream=True, max_tokens=2, extra_headers={"x-request-id": "talk"}
    )
    delivered = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    upstream.handler = echo_completion_handler()
    await client(gateway).chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": "ping"}], extra_headers={"x-request-id": "echo"}
    )
    [row] = await rows_of(gateway, "talk")
    assert row["messages"] == MESSAGES
    assert row["answer"] == [{"index": 0, "role": "assistant", "content": delivered, "finish_reason": "length"}]
    assert delivered == "one two"
    [echo] = await rows_of(gateway, "echo")
    assert echo["messages"] == [{"role": "user", "content": "ping"}] and "ping" in echo["answer"][0]["content"]

    later = FakeClock()
    later.now = clock.now + 31 * 86400
    restarted = await gateway_factory(tree, wall=later)

    async def forgotten() -> bool:
        [row] = await rows_of(restarted, "talk")
        return row["messages"] is None and row["answer"] is None

    await until(forgotten)


async def test_a_key_revoked_on_one_gateway_is_refused_by_another_on_the_same_ledger(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str
) -> None:
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    tree = ledger_tree(upstream, ledger_url)
    first, second = await gateway_factory(tree), await gateway_factory(tree)
    _, created = await admin(first, "POST", "/admin/keys", json={"id": "shared"})
    secret = created["key"]
    await until(lambda: works(second, secret))
    revoked_at = time.monotonic()
    status, _ = await admin(first, "DELETE", "/admin/keys/shared")
    assert status == 200

    async def refused() -> bool:
        return not await works(second, secret)

    await until(refused)
    assert time.monotonic() - revoked_at < 2  # key_refresh is 0.1 s here; 1 s by default


async def test_a_client_key_on_an_admin_endpoint_is_told_it_needs_the_admin_key(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    gateway = await gateway_factory(ledger_tree(upstream, f"sqlite://{tmp_path}/l.db"))
    async with aiohttp.ClientSession() as http:
        for key, status, code in (
            (CLIENT, 403, "admin_key_required"),
            ("sk-nobody-0123456789", 401, "invalid_api_key"),
        ):
            headers = {"Authorization": f"Bearer {key}"}
            async with http.get(f"{gateway.url}/admin/keys", headers=headers) as response:
                assert response.status == status and (await response.json())["error"]["code"] == code
    tree = ledger_tree(upstream, f"sqlite://{tmp_path}/l2.db")
    del tree["auth"]["admin_key"]
    off = await gateway_factory(tree)
    status, answer = await admin(off, "GET", "/admin/keys")
    assert status == 404 and "once auth.admin_key is set" in answer["error"]["message"]


async def test_a_reload_writes_the_rows_waiting(
    upstream: Upstream, gateway_factory: GatewayFactory, ledger_url: str, tmp_path: Path
) -> None:
    """With an hour between batches, the rows are written by the reload itself."""
    upstream.handler = json_handler(completion("hello", usage=USAGE))
    tree = ledger_tree(upstream, ledger_url, flush_interval=3600, batch_rows=1000)
    gateway = await gateway_factory(tree, path=tmp_path / "gateway.yaml")
    await client(gateway).chat.completions.create(
        model="test-model", messages=MESSAGES, extra_headers={"x-request-id": "before-reload"}
    )
    status, _ = await admin(gateway, "GET", "/admin/requests/before-reload")
    assert status == 404
    assert await gateway.core.reload()
    status, found = await admin(gateway, "GET", "/admin/requests/before-reload")
    assert status == 200 and found["data"][0]["status"] == 200


async def test_the_ledger_down_at_start_is_no_reason_not_to_serve(
    gateway_factory: GatewayFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`make run` in a folder it may not write: the gateway serves, the ledger says why it cannot."""
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    gateway = await gateway_factory(
        {
            "providers": {"demo": {"kind": "mock"}},
            "routes": [{"model": "demo", "provider": "demo"}],
            "ledger": {"url": f"sqlite://{blocked}/ledger.db", "buffer_rows": 2},
        }
    )
    sdk = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        assert (await sdk.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)).choices
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as answer:
        metrics = await answer.text()
    assert "gateway_ledger_up 0.0" in metrics and "gateway_ledger_dropped_rows_total 1.0" in metrics
    assert any("ledger: cannot open" in record.getMessage() for record in caplog.records)
    assert any("rows dropped (the buffer is full)" in record.getMessage() for record in caplog.records)


async def test_a_key_given_out_from_the_command_line_makes_an_open_gateway_ask_for_keys(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    """A gateway with no keys (on loopback) serves anyone, until the ledger holds a key: then
    every request needs one, as a gateway with keys in its file does."""
    import subprocess
    import sys

    tree = {
        "providers": {"demo": {"kind": "mock"}},
        "routes": [{"model": "demo", "provider": "demo"}],
        "ledger": {"url": f"sqlite://{tmp_path}/ledger.db", "key_refresh": 0.1},
    }
    gateway = await gateway_factory(tree)
    anyone = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key="anything", max_retries=0)
    assert (await anyone.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)).choices
    config = tmp_path / "gateway.yaml"
    config.write_text(orjson_dumps(tree))
    made = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway", "keys", "create", "--id", "first", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()

    async def closed() -> bool:
        try:
            await anyone.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)
        except openai.AuthenticationError:
            return True
        return False

    await until(closed)
    keyed = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    assert (await keyed.chat.completions.create(model="demo", messages=MESSAGES, max_tokens=2)).choices


def orjson_dumps(tree: dict[str, Any]) -> str:
    import orjson

    return orjson.dumps(tree).decode()
