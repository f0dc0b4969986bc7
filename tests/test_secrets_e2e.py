"""Secrets never leave, through real sockets: every way an upstream can echo a configured
secret in an error, checked in everything the gateway shows (test_secrets.py: the redactor)."""

from __future__ import annotations

import base64
import logging
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream
from fakes import chunk, sse_handler

from gateway.observability.logs import JsonFormatter, TextFormatter

MESSAGES = [{"role": "user", "content": "hi"}]
REDACTED = "[redacted]"

API_KEY = "sk-upstream-secret-key"
ANTHROPIC_KEY = "sk-ant-secret-key-42"
HEADER_SECRET = "org-header-secret-value"
URL_PASSWORD = "url-password-secret"
PROXY_PASSWORD = "proxy-password-secret"
BASIC = base64.b64encode(f"gwuser:{URL_PASSWORD}".encode()).decode()
SECRETS = (API_KEY, ANTHROPIC_KEY, HEADER_SECRET, URL_PASSWORD, PROXY_PASSWORD, BASIC)
ECHO = "".join(SECRETS)  # what an upstream echoes, in every field of its error


def secrets_config(url: str) -> dict[str, Any]:
    """OpenAI-compatible and Anthropic providers at the fake upstream, and one whose base_url holds
    a password (never called: its secret is redacted wherever an upstream echoes it)."""
    return {
        "providers": {
            "up": {"kind": "openai", "base_url": f"{url}/v1", "api_key": API_KEY, "headers": {"X-Org": HEADER_SECRET}},
            "claude": {"kind": "anthropic", "base_url": url, "api_key": ANTHROPIC_KEY},
            "other": {"kind": "openai", "base_url": f"http://gwuser:{URL_PASSWORD}@127.0.0.1:9/v1"},
        },
        "routes": [
            {"model": "test-model", "provider": "up"},
            {"model": "claude", "provider": "claude", "upstream_model": "claude-sonnet-4-5"},
            {"model": "other", "provider": "other"},
        ],
    }


def openai_error(status: int | None = None) -> dict[str, Any]:
    error = {"message": f"Bad key {ECHO}", "type": ECHO, "code": ECHO, "param": ECHO, "extra": {"nested": [ECHO]}}
    if status is not None:
        error["status"] = status
    return {"error": error}


def anthropic_error() -> dict[str, Any]:
    return {"type": "error", "error": {"type": ECHO, "message": f"Bad key {ECHO}"}, "request_id": ECHO}


def json_answer(body: dict[str, Any], status: int):
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers={"x-echo": "ok"})

    return handle


def escaped_json_answer(body: dict[str, Any], status: int):
    """The body with every letter of the secrets \\u-escaped, as JSON allows."""
    data = orjson.dumps(body).decode()
    for secret in SECRETS:
        data = data.replace(secret, "".join(f"\\u{ord(char):04x}" for char in secret))

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data.encode(), status=status, content_type="application/json")

    return handle


ANTHROPIC_START = {
    "type": "message_start",
    "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []},
}
WAYS = {  # how the upstream sends its error: (model, stream, handler, the client's status)
    "openai error status": ("test-model", False, json_answer(openai_error(), 401), 401),
    "openai error status, secrets \\u-escaped": ("test-model", False, escaped_json_answer(openai_error(), 401), 401),
    "openai error status, streamed request": ("test-model", True, json_answer(openai_error(), 401), 401),
    "openai error event first": ("test-model", True, sse_handler([openai_error(429)], done=False), 429),
    "openai error event mid-stream": (
        "test-model",
        True,
        sse_handler([chunk({"role": "assistant", "content": "Hi"}), openai_error()], done=False),
        200,
    ),
    "anthropic error status": ("claude", False, json_answer(anthropic_error(), 401), 401),
    "anthropic error event first": (
        "claude",
        True,
        sse_handler([b"event: error\ndata: " + orjson.dumps(anthropic_error()) + b"\n\n"], done=False),
        502,  # an error type Anthropic does not document
    ),
    "anthropic error event mid-stream": (
        "claude",
        True,
        sse_handler(
            [
                b"event: message_start\ndata: " + orjson.dumps(ANTHROPIC_START) + b"\n\n",
                b"event: content_block_start\ndata: "
                + orjson.dumps(
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
                )
                + b"\n\n",
                b"event: content_block_delta\ndata: "
                + orjson.dumps(
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}
                )
                + b"\n\n",
                b"event: error\ndata: " + orjson.dumps(anthropic_error()) + b"\n\n",
            ],
            done=False,
        ),
        200,
    ),
}


async def shown(gateway: Gateway, model: str, stream: bool, caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    """The client's status, and everything the gateway showed of one request: the response's
    headers and body, every gateway log line (access log included, in both formats), /metrics
    and /health/upstreams."""
    async with aiohttp.ClientSession() as http:
        body = {"model": model, "messages": MESSAGES, "stream": stream}
        async with http.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
            status = response.status
            seen = [str(list(response.headers.items())), await response.text()]
        for path in ("/metrics", "/health/upstreams", "/health"):
            async with http.get(f"{gateway.url}{path}") as response:
                seen.append(await response.text())
    records = [record for record in caplog.records if record.name.startswith("gateway")]
    assert any(record.name == "gateway.access" for record in records)
    for record in records:
        seen += [record.getMessage(), JsonFormatter().format(record), TextFormatter().format(record)]
    return status, "\n".join(seen)


@pytest.mark.parametrize("way", WAYS)
async def test_a_secret_an_upstream_echoes_in_any_field_of_an_error_is_shown_nowhere(
    upstream: Upstream,
    gateway_factory: GatewayFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://puser:{PROXY_PASSWORD}@127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    caplog.set_level(logging.DEBUG, logger="gateway")
    model, stream, handler, expected = WAYS[way]
    upstream.handler = handler
    gateway = await gateway_factory(secrets_config(upstream.url))
    status, everything = await shown(gateway, model, stream, caplog)
    assert status == expected
    for secret in SECRETS:
        assert secret not in everything, (way, secret)
    assert REDACTED in everything

    # what the SDK sees: the upstream's error, redacted, in every field
    client = gateway.client()
    with pytest.raises(openai.APIError) as raised:
        if stream:
            async for _ in await client.chat.completions.create(model=model, messages=MESSAGES, stream=True):
                pass
        else:
            await client.chat.completions.create(model=model, messages=MESSAGES)
    error = raised.value
    assert error.message.endswith(f"Bad key {REDACTED}")
    assert error.code == REDACTED
    assert not any(secret in str(error.body) for secret in SECRETS)


async def test_a_short_key_is_redacted_too(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    """A key of three characters is no secret worth the name, but it never leaves either: it
    garbles the messages it is redacted from (the config warns about it at load)."""
    tree = secrets_config(upstream.url)
    tree["providers"]["up"]["api_key"] = "Zq7"
    gateway = await gateway_factory(tree)
    upstream.handler = json_answer({"error": {"message": "Incorrect API key provided: Zq7.", "code": "Zq7"}}, 401)
    with pytest.raises(openai.AuthenticationError) as raised:
        await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.body["message"] == f"Incorrect API key provided: {REDACTED}."
    assert raised.value.code == REDACTED and "Zq7" not in str(raised.value.body)
