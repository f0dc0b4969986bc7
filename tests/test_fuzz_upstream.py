"""Fuzzing the upstream side: whatever an upstream streams, the client gets whole chunks that
OpenAI's schema accepts, then [DONE] or one error event; never half an event, never a 500,
never a hang.

Streams are drawn by hypothesis from pieces real upstreams send (role, content, tool calls,
finish, usage, Azure's annotations, errors, pings, comments) and from broken ones (bad JSON,
wrong shapes, cut-off events, odd line endings), then split into TCP writes at random places.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from conftest import GatewayFactory, Upstream, assert_valid, openai_route_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MESSAGES = [{"role": "user", "content": "hi"}]


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fuzz",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
good_events = st.one_of(
    texts.map(lambda text: chunk({"content": text})),
    st.just(chunk({"role": "assistant", "content": ""})),
    st.builds(
        lambda name, arguments: chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
                ]
            }
        ),
        st.sampled_from(["lookup", "search"]),
        texts,
    ),
    st.sampled_from(["stop", "length", "tool_calls", "content_filter"]).map(lambda reason: chunk({}, reason)),
    st.just({**chunk({}), "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}),
    st.just({"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": []}),
)
broken_events = st.one_of(
    st.just(b'data: {"broken'),
    st.just(b"data: not json"),
    st.just(b"data: [1, 2]"),
    st.builds(lambda value: b"data: " + orjson.dumps(chunk({"content": value})), st.integers() | st.booleans()),
    st.just(b'data: {"error": {"message": "overloaded", "type": "server_error", "status": 503}}'),
    st.just(b'data: {"error": {"message": "odd", "status": 1000}}'),
    st.just(b": keep-alive comment"),
    st.just(b"event: ping"),
)
events = st.lists(st.one_of(good_events.map(lambda event: b"data: " + orjson.dumps(event)), broken_events), max_size=12)
streams = st.builds(
    lambda body, done, separator, splits: (body, done, separator, splits),
    events,
    st.booleans(),
    st.sampled_from([b"\n\n", b"\r\n\r\n", b"\n\n\n"]),
    st.lists(st.integers(min_value=1, max_value=64), max_size=8),
)


def drawn_streams(count: int = 150) -> list[tuple[list[bytes], bool, bytes, list[int]]]:
    """`count` upstream streams drawn by hypothesis, the same every run (derandomized)."""
    found: list[tuple[list[bytes], bool, bytes, list[int]]] = []

    @settings(
        max_examples=count, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(stream=streams)
    def draw(stream: tuple[list[bytes], bool, bytes, list[int]]) -> None:
        found.append(stream)

    draw()
    return found


def wire(body: list[bytes], done: bool, separator: bytes, splits: list[int]) -> list[bytes]:
    """The stream's bytes, cut into TCP writes at the given lengths."""
    data = b"".join(event + separator for event in body) + (b"data: [DONE]" + separator if done else b"")
    writes, position = [], 0
    for length in splits:
        if position < len(data):
            writes.append(data[position : position + length])
            position += length
    writes.append(data[position:])
    return [write for write in writes if write]


async def test_any_upstream_stream_reaches_the_client_as_whole_valid_chunks(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    current: list[bytes] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for write in current:
            await response.write(write)
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    upstream.handler = handle
    tree = openai_route_config(upstream.url, limits={"idle_timeout": 5, "first_token_timeout": 5, "timeout": 10})
    gateway = await gateway_factory(tree)
    body = {"model": "test-model", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        for stream in drawn_streams():
            current[:] = wire(*stream)
            async with http.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
                status, raw = response.status, await response.read()
            try:
                check(status, raw)
            except Exception as failed:  # the stream that broke it, with what the client got
                raise AssertionError(f"upstream wrote {current!r}; the client got {status}: {raw[:800]!r}") from failed


def check(status: int, raw: bytes) -> None:
    """A 200 event stream of whole chunks ending in [DONE] or one error event; or an error in OpenAI's shape."""
    assert status == 200 or (400 <= status < 600 and status != 500), status
    if status != 200:
        error = orjson.loads(raw)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        return
    assert raw.endswith(b"\n\n")
    blocks = [block for block in raw.split(b"\n\n") if block and not block.startswith(b":")]
    *chunks, last = blocks
    for block in chunks:
        assert block.startswith(b"data: ")
        assert_valid("CreateChatCompletionStreamResponse", orjson.loads(block[6:]))
    if last != b"data: [DONE]":
        assert set(orjson.loads(last[6:])["error"]) == {"message", "type", "param", "code"}
