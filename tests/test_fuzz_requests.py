"""Fuzzing the client side: whatever body a client sends, the gateway answers it or refuses it
with a 4xx in OpenAI's error shape; never a 500, never a hang, never a half-written event.

Bodies are drawn by hypothesis around the chat completions request's real fields (so that
most of them get past the first checks) with wrong types, odd values and unknown fields
mixed in, and sent to the mock route and to an OpenAI-compatible fake upstream, streamed
and not.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import GatewayFactory, Upstream, openai_route_config
from fakes import sse_handler, text_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = (
    "model",
    "messages",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "stream_options",
    "temperature",
    "tools",
    "tool_choice",
    "stop",
    "user",
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
)
roles = st.sampled_from(["user", "system", "assistant", "tool", "developer", "", "nobody"]) | st.text(max_size=8)
contents = st.one_of(
    st.text(max_size=200),
    st.none(),
    st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]), "text": st.text(max_size=20)})
    ),
    json_values,
)
messages = st.lists(
    st.one_of(st.fixed_dictionaries({"role": roles, "content": contents}), json_values), min_size=0, max_size=4
)
models = st.sampled_from(["demo", "test-model", "missing-model", ""]) | st.text(max_size=20) | json_values
field_values = {
    "model": models,
    "messages": messages | json_values,
    "stream": st.booleans() | json_values,
    "max_tokens": st.integers(min_value=-5, max_value=50) | json_values,
    "max_completion_tokens": st.integers(min_value=-5, max_value=50) | json_values,
    "n": st.integers(min_value=-1, max_value=3) | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
}
bodies = st.dictionaries(
    st.sampled_from(FIELDS) | st.text(max_size=12),
    json_values,
    max_size=4,
).flatmap(
    lambda extra: st.fixed_dictionaries(
        {},
        optional=dict(field_values),
    ).map(lambda known: {**extra, **known})
)


def check_answer(status: int, content_type: str, raw: bytes) -> None:
    """An answer: 200 with a completion or a whole event stream, or a 4xx in OpenAI's error shape."""
    assert status < 500 or status in (502, 504), (status, raw[:300])  # 502: the fake upstream answers streams only
    if status == 200 and content_type.startswith("text/event-stream"):
        assert raw.endswith(b"\n\n"), raw[-200:]  # no half-written event
        events = [block for block in raw.split(b"\n\n") if block and not block.startswith(b":")]
        for event in events[:-1]:
            orjson.loads(event.removeprefix(b"data: "))
        assert events[-1] == b"data: [DONE]" or b'"error"' in events[-1], events[-1][:200]
        return
    body = orjson.loads(raw)
    if status == 200:
        assert body["object"] == "chat.completion" and isinstance(body["choices"], list)
        return
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
    assert 400 <= status < 500 or error["type"] == "server_error", (status, error)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/v1/chat/completions"])
async def test_any_body_gets_an_answer_or_a_4xx_in_openais_shape(
    upstream: Upstream, gateway_factory: GatewayFactory, path: str
) -> None:
    upstream.handler = sse_handler(text_stream(["Hel", "lo"]))
    tree = openai_route_config(upstream.url)
    tree["providers"]["demo"] = {"kind": "mock"}  # as fast as possible
    gateway = await gateway_factory(tree)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
        for body in drawn_bodies():
            data = json.dumps(body).encode()  # the stdlib's: integers of any size
            async with http.post(f"{gateway.url}{path}", data=data, headers=headers) as response:
                status, content_type, raw = (
                    response.status,
                    response.headers.get("Content-Type", ""),
                    await response.read(),
                )
            try:
                check_answer(status, content_type, raw)
            except (AssertionError, ValueError, KeyError, TypeError) as failed:
                raise AssertionError(f"body {data[:500]!r} got {status}: {raw[:500]!r}") from failed


def drawn_bodies(count: int = 200) -> list[dict[str, Any]]:
    """`count` bodies drawn by hypothesis, the same ones every run (derandomized); drawn up front,
    since hypothesis runs a test's examples itself and ours are sent from the event loop."""
    found: list[dict[str, Any]] = []

    @settings(
        max_examples=count, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(body=bodies)
    def draw(body: dict[str, Any]) -> None:
        found.append(body)

    draw()
    return found


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b"[]", b"null", b'"text"', b"1e400", b"\xff\xfe", b'{"model": "demo", "messages": [}', b"{}" * 10],
)
async def test_bodies_that_are_not_one_json_object_are_400s(routed_demo: Any, raw: bytes) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{routed_demo.url}/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
        ) as response,
    ):
        assert response.status == 400
        check_answer(response.status, response.headers["Content-Type"], await response.read())


@pytest.fixture
async def routed_demo(upstream: Upstream, gateway_factory: GatewayFactory) -> Any:
    return await gateway_factory(openai_route_config(upstream.url))
