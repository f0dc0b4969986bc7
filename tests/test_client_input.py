"""Bad client input gets a clear 4xx in OpenAI's error shape, never a 500, and never reaches an upstream."""

from __future__ import annotations

import asyncio
import gzip

import aiohttp
import orjson
import pytest
from conftest import Gateway, Upstream
from fakes import completion, json_handler

MESSAGES = [{"role": "user", "content": "hi"}]


async def post_raw(gateway: Gateway, body: bytes) -> tuple[int, dict]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        return response.status, await response.json(content_type=None)


@pytest.mark.parametrize("depth", [254, 255, 600, 1024, 1025, 5000])
async def test_one_depth_limit_for_nested_bodies(upstream: Upstream, routed: Gateway, depth: int) -> None:
    """Up to 254 levels (the body's own object included) reach the upstream; deeper is a 400 that says why."""
    upstream.handler = json_handler(completion("fine"))
    status, answer = await post_raw(routed, deep_text(depth))
    if depth <= 254:
        assert status == 200 and answer["choices"][0]["message"]["content"] == "fine"
    else:
        assert status == 400 and "nested more than 254 levels" in answer["error"]["message"]
        assert answer["error"]["type"] == "invalid_request_error" and not upstream.requests


def deep_text(depth: int) -> bytes:
    """A body `depth` levels deep: the object, then arrays inside each other (built as text)."""
    return b'{"model": "test-model", "messages": [{"role": "user", "content": "hi"}], "x": ' + (
        b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"
    )


@pytest.mark.parametrize("model", ["test-model\r\nX-Injected: 1", "test\nmodel", "bad\x00name", "del\x7f", "c1\x85"])
async def test_control_characters_in_the_model_are_a_400_before_any_upstream(
    upstream: Upstream, routed: Gateway, model: str
) -> None:
    upstream.handler = json_handler(completion("never"))
    status, answer = await post_raw(routed, orjson.dumps({"model": model, "messages": MESSAGES}))
    assert status == 400 and answer["error"]["param"] == "model" and "control characters" in answer["error"]["message"]
    assert not upstream.requests


RAW_REQUESTS = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "a 100 KB header": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
    "thousands of headers": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
    + b"".join(b"X-H%d: v\r\n" % i for i in range(5000))
    + b"\r\n",
    "a bad chunk size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "Content-Length with Transfer-Encoding": (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    ),
}


@pytest.mark.parametrize("raw", RAW_REQUESTS.values(), ids=RAW_REQUESTS.keys())
async def test_requests_the_http_parser_refuses_get_openais_error_shape(routed: Gateway, raw: bytes) -> None:
    host, port = routed.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(raw)
        await writer.drain()
        answer = await reader.read()  # the gateway closes the connection after it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400"
    assert b"content-type: application/json" in head.lower()
    error = orjson.loads(body)["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http_request"
    assert b"aaaa" not in body  # the request's bytes are not echoed


async def test_an_unknown_path_names_the_endpoints_that_exist(routed: Gateway) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{routed.url}/v1/chat/completion") as response:
        status, error = response.status, (await response.json())["error"]
    assert status == 404 and error["code"] == "not_found"
    assert "POST /v1/chat/completions" in error["message"] and "GET /v1/models" in error["message"]


async def test_a_wrong_method_names_the_allowed_ones(routed: Gateway) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{routed.url}/v1/chat/completions") as response:
        status, error, allow = response.status, (await response.json())["error"], response.headers["Allow"]
    assert status == 405 and "POST" in allow and "use POST" in error["message"]


@pytest.mark.parametrize("n", [0, 129, 1_000_000])
async def test_n_beyond_openais_range_is_a_400_before_any_upstream(upstream: Upstream, routed: Gateway, n: int) -> None:
    """OpenAI allows n from 1 to 128: a tiny request must not ask for a million answers."""
    upstream.handler = json_handler(completion("never"))
    status, answer = await post_raw(routed, orjson.dumps({"model": "test-model", "messages": MESSAGES, "n": n}))
    assert status == 400 and answer["error"]["param"] == "n" and "from 1 to 128" in answer["error"]["message"]
    assert not upstream.requests


async def test_a_body_that_does_not_decode_as_its_content_encoding_says_is_a_400(
    upstream: Upstream, routed: Gateway
) -> None:
    upstream.handler = json_handler(completion("fine"))
    url, body = f"{routed.url}/v1/chat/completions", orjson.dumps({"model": "test-model", "messages": MESSAGES})
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=gzip.compress(body), headers=headers) as response:
            assert response.status == 200  # a gzipped body is read
        async with http.post(url, data=b"not gzip at all", headers=headers) as response:
            status, error = response.status, (await response.json())["error"]
    assert status == 400 and error["code"] == "invalid_body" and error["type"] == "invalid_request_error"
    assert len(upstream.requests) == 1
