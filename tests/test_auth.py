"""Client keys: who may call, which models each key sees, and no open relay by default.

Through the real `openai` SDK: its AuthenticationError (401) and PermissionDeniedError (403).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import completion, json_handler
from test_cli import gateway_cli_check

from gateway.config import ConfigError, parse_config

SEARCH = "sk-gw-search-0123456789abcdef"
ADMIN_LIKE = "sk-gw-batch-fedcba9876543210"
MESSAGES = [{"role": "user", "content": "hi"}]


def keyed_tree(upstream_url: str) -> dict[str, Any]:
    tree = openai_route_config(upstream_url)
    tree["routes"].append({"model": "claude", "provider": "up"})
    tree["auth"] = {
        "keys": [
            {"id": "team-search", "key": SEARCH, "models": ["test-*", "demo"]},
            {"id": "batch", "key": "sha256:" + hashlib.sha256(ADMIN_LIKE.encode()).hexdigest()},
        ]
    }
    return tree


def client(gateway: Gateway, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0, timeout=10)


@pytest.fixture
async def keyed(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    upstream.handler = json_handler(completion("hello"))
    return await gateway_factory(keyed_tree(upstream.url))


async def test_a_known_key_is_served_and_others_are_refused_with_401(keyed: Gateway, upstream: Upstream) -> None:
    answer = await client(keyed, SEARCH).chat.completions.create(model="test-model", messages=MESSAGES)
    assert answer.choices[0].message.content == "hello"
    for wrong in ("sk-gw-not-a-key", SEARCH[:-1], "sha256:" + hashlib.sha256(SEARCH.encode()).hexdigest()):
        with pytest.raises(openai.AuthenticationError) as refused:
            await client(keyed, wrong).chat.completions.create(model="test-model", messages=MESSAGES)
        assert refused.value.code == "invalid_api_key"
    assert len(upstream.requests) == 1  # nothing refused reached the upstream


async def test_a_request_with_no_key_is_a_401_that_says_how_to_send_one(keyed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"model": "test-model", "messages": MESSAGES}
        async with http.post(f"{keyed.url}/v1/chat/completions", json=body) as response:
            error = (await response.json())["error"]
            assert response.status == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert error["code"] == "invalid_api_key" and "Authorization: Bearer" in error["message"]


@pytest.mark.parametrize("header", [b"Authorization: Bearer \xff\xfe\xfd", b"api-key: \xff\xfe\xc3"])
async def test_a_key_that_is_not_utf8_is_a_401_not_a_500(keyed: Gateway, upstream: Upstream, header: bytes) -> None:
    host, port = keyed.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}" % header
        )
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"401" and orjson.loads(body)["error"]["code"] == "invalid_api_key"
    assert not upstream.requests


async def test_azures_api_key_header_and_a_hashed_key_work(keyed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"model": "claude", "messages": MESSAGES}
        async with http.post(
            f"{keyed.url}/v1/chat/completions", json=body, headers={"api-key": ADMIN_LIKE}
        ) as response:
            assert response.status == 200


async def test_a_model_outside_the_keys_list_is_a_403_and_is_not_listed(keyed: Gateway) -> None:
    search = client(keyed, SEARCH)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        await search.chat.completions.create(model="claude", messages=MESSAGES)
    assert refused.value.code == "model_not_allowed" and "team-search" in refused.value.message
    with pytest.raises(openai.PermissionDeniedError):  # the same for a model that does not exist: nothing leaks
        await search.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert sorted(model.id for model in (await search.models.list()).data) == ["demo", "test-model"]
    with pytest.raises(openai.NotFoundError):
        await search.models.retrieve("claude")
    everything = sorted(model.id for model in (await client(keyed, ADMIN_LIKE).models.list()).data)
    assert everything == ["claude", "demo", "test-model"]


async def test_a_model_a_glob_route_serves_is_found_by_id_for_the_keys_that_may_use_it(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    tree = keyed_tree(upstream.url)
    tree["routes"].append({"model": "gpt-*", "provider": "up"})
    gateway = await gateway_factory(tree)
    found = await client(gateway, ADMIN_LIKE).models.retrieve("gpt-4o")  # the batch key may use every route
    assert (found.id, found.owned_by) == ("gpt-4o", "up")
    assert "gpt-4o" not in [model.id for model in (await client(gateway, ADMIN_LIKE).models.list()).data]
    for key, model in ((SEARCH, "gpt-4o"), (ADMIN_LIKE, "llama-3")):  # not the search key's; no route at all
        with pytest.raises(openai.NotFoundError):
            await client(gateway, key).models.retrieve(model)


async def test_health_ready_and_metrics_need_no_key(keyed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/health", "/ready", "/metrics", "/health/upstreams"):
            async with http.get(f"{keyed.url}{path}") as response:
                assert response.status == 200, path


async def test_refusals_are_counted_and_logged_by_key_id_never_by_secret(
    keyed: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    with pytest.raises(openai.AuthenticationError):
        await client(keyed, "sk-gw-wrong-0123456789").chat.completions.create(model="test-model", messages=MESSAGES)
    await client(keyed, SEARCH).chat.completions.create(model="test-model", messages=MESSAGES)
    lines = [record.fields for record in caplog.records if record.name == "gateway.access"]  # type: ignore[attr-defined]
    assert [(line["key"], line["status"]) for line in lines[-2:]] == [("unknown", 401), ("team-search", 200)]
    async with aiohttp.ClientSession() as http, http.get(f"{keyed.url}/metrics") as response:
        text = await response.text()
    assert 'code="401"' in text and 'key="unknown"' in text and 'key="team-search"' in text
    logged = orjson.dumps([record.__dict__.get("fields") for record in caplog.records], default=str).decode()
    for secret in (SEARCH, "sk-gw-wrong-0123456789", ADMIN_LIKE):
        assert secret not in text and secret not in logged


async def test_a_reload_applies_new_changed_and_revoked_keys(
    upstream: Upstream, gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    upstream.handler = json_handler(completion("hello"))
    tree = keyed_tree(upstream.url)
    path = tmp_path / "gateway.yaml"
    gateway = await gateway_factory(tree, path=path)
    await client(gateway, SEARCH).chat.completions.create(model="test-model", messages=MESSAGES)
    fresh = "sk-gw-fresh-00112233445566"
    tree["auth"]["keys"] = [
        {"id": "team-search", "key": SEARCH, "models": ["demo"]},  # changed: no longer test-*
        {"id": "fresh", "key": fresh},  # new; "batch" is revoked
    ]
    path.write_text(orjson.dumps(tree).decode())
    assert await gateway.core.reload()
    with pytest.raises(openai.PermissionDeniedError):
        await client(gateway, SEARCH).chat.completions.create(model="test-model", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        await client(gateway, ADMIN_LIKE).chat.completions.create(model="test-model", messages=MESSAGES)
    answer = await client(gateway, fresh).chat.completions.create(model="test-model", messages=MESSAGES)
    assert answer.choices[0].message.content == "hello"


def parse(tree: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return parse_config(tree, source="gw.yaml", env=env or {}, overrides={})


MOCK = {"providers": {"d": {"kind": "mock"}}, "routes": [{"model": "a", "provider": "d"}]}


def test_no_open_relay_a_gateway_beyond_loopback_needs_keys_or_says_open() -> None:
    for host in ("0.0.0.0", "::", "10.1.2.3", "gateway.internal"):
        with pytest.raises(ConfigError) as refused:
            parse({**MOCK, "server": {"host": host}})
        [problem] = refused.value.problems
        assert problem.startswith("gw.yaml: auth: the gateway would listen on") and "auth: {open: true}" in problem
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert parse({**MOCK, "server": {"host": host}}).auth.keys == ()
    assert parse({**MOCK, "server": {"host": "0.0.0.0"}, "auth": {"open": True}}).auth.open
    keyed = {**MOCK, "server": {"host": "0.0.0.0"}, "auth": {"keys": [{"id": "k", "key": "${GATEWAY_API_KEY}"}]}}
    assert [key.id for key in parse(keyed, {"GATEWAY_API_KEY": SEARCH}).auth.keys] == ["k"]


def test_an_empty_secret_leaves_its_key_out() -> None:
    """`key: ${VAR:-}` makes a key optional: unset, it is not a key (and beyond loopback, no keys is refused)."""
    tree = {**MOCK, "auth": {"keys": [{"id": "k", "key": "${GATEWAY_API_KEY:-}"}]}}
    assert parse(tree).auth.keys == ()
    with pytest.raises(ConfigError):
        parse({**tree, "server": {"host": "0.0.0.0"}})


def test_key_problems_name_their_key_path() -> None:
    tree = {
        **MOCK,
        "auth": {
            "keys": [
                {"id": "a", "key": SEARCH},
                {"id": "a", "key": ADMIN_LIKE},
                {"id": "b b", "key": "sk-gw-another-0123456789"},
                {"id": "c", "key": SEARCH},
                {"id": "d", "key": "sha256:abc"},
                {"id": "e", "key": "sk-gw-e-0123456789ab", "rpm": 0, "models": "gpt"},
                {"id": "f"},
            ]
        },
    }
    with pytest.raises(ConfigError) as refused:
        parse(tree)
    problems = "\n".join(refused.value.problems)
    for fragment in (
        "auth.keys[1].id: 'a' is already the id of auth.keys[0]",
        "auth.keys[2].id: must be 1 to 64 letters",
        "auth.keys[3].key: the same secret as auth.keys[0]",
        "auth.keys[4].key: sha256: must be followed by 64 hexadecimal digits",
        "auth.keys[5].rpm: must be at least 1",
        "auth.keys[5].models: must be a list",
        "auth.keys[6].key: is required",
    ):
        assert fragment in problems
    assert SEARCH not in problems


def test_a_short_key_is_warned_about_without_showing_it() -> None:
    config = parse({**MOCK, "auth": {"keys": [{"id": "k", "key": "letmein"}]}})
    assert config.warnings == ("gw.yaml: auth.keys[0].key: a key of only 7 characters is easy to guess",)


def test_check_refuses_an_open_relay(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(orjson.dumps({**MOCK, "server": {"host": "0.0.0.0"}}).decode())
    result = gateway_cli_check(config)
    assert result.returncode == 2 and "auth: {open: true}" in result.stderr
