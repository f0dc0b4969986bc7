"""Anthropic behind the gateway, through real sockets: a fake Messages API, the real openai SDK."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream

from gateway.stream.tokens import Tokenizers

API_KEY = "sk-ant-test-key"
MODEL = "claude-sonnet-4-5"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
USAGE = {"input_tokens": 30, "cache_creation_input_tokens": 200, "cache_read_input_tokens": 1000, "output_tokens": 1}


@pytest.fixture
async def claude(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    """The gateway with the model `claude` routed to a fake Anthropic upstream."""
    return await gateway_factory(
        {
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "api_key": API_KEY}},
            "routes": [{"model": "claude", "provider": "claude", "upstream_model": MODEL}],
        }
    )


# ---------------------------------------------------------------- the fake Messages API


def anthropic_error(kind: str, message: str, status: int) -> web.Response:
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake"}
    return web.json_response(body, status=status)


def refusal_of(request: web.Request) -> web.Response | None:
    """What Anthropic answers a request it would refuse for its path or headers; None if it is fine."""
    if request.path != "/v1/messages":
        return anthropic_error("not_found_error", f"Not found: {request.path}", 404)
    if request.headers.get("x-api-key") != API_KEY or "Authorization" in request.headers:
        return anthropic_error("authentication_error", "invalid x-api-key", 401)
    if request.headers.get("anthropic-version") != "2023-06-01":
        return anthropic_error("invalid_request_error", "anthropic-version: header is required", 400)
    return None


def message_handler(content: list[dict[str, Any]], *, stop_reason: str = "end_turn", output_tokens: int = 7):
    async def handle(request: web.Request) -> web.StreamResponse:
        refusal = refusal_of(request)
        if refusal is not None:
            return refusal
        return web.json_response(
            {
                "id": "msg_e2e",
                "type": "message",
                "role": "assistant",
                "model": MODEL,
                "content": content,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": {**USAGE, "output_tokens": output_tokens},
            }
        )

    return handle


def stream_handler(events: Iterable[dict[str, Any]]):
    """Streams each event as Anthropic does, `event:` and `data:` lines, one write each."""
    payloads = [b"event: %s\ndata: %s\n\n" % (data["type"].encode(), orjson.dumps(data)) for data in events]

    async def handle(request: web.Request) -> web.StreamResponse:
        refusal = refusal_of(request)
        if refusal is not None:
            return refusal
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for payload in payloads:
            await response.write(payload)
        await response.write_eof()
        return response

    return handle


def paced_stream_handler(events: Iterable[dict[str, Any]], pause: float):
    """Like stream_handler, with `pause` seconds between events: a model that thinks aloud slowly."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        for data in events:
            await response.write(b"event: %s\ndata: %s\n\n" % (data["type"].encode(), orjson.dumps(data)))
            await asyncio.sleep(pause)
        await response.write_eof()
        return response

    return handle


def error_handler(kind: str, message: str, status: int):
    async def handle(request: web.Request) -> web.StreamResponse:
        return anthropic_error(kind, message, status)

    return handle


def message_start() -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_e2e",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": USAGE,
        },
    }


def text_block(index: int, pieces: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
        *(
            {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
            for piece in pieces
        ),
        {"type": "content_block_stop", "index": index},
    ]


def tool_block(index: int, tool_id: str, name: str, pieces: Iterable[str]) -> list[dict[str, Any]]:
    return [
        {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in pieces
        ),
        {"type": "content_block_stop", "index": index},
    ]


def ending(stop_reason: str, output_tokens: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def text_stream(
    pieces: Iterable[str], *, stop_reason: str = "end_turn", output_tokens: int = 7
) -> list[dict[str, Any]]:
    return [message_start(), {"type": "ping"}, *text_block(0, pieces), *ending(stop_reason, output_tokens)]


def sent_body(upstream: Upstream, position: int = -1) -> dict[str, Any]:
    return orjson.loads(upstream.requests[position]["body"])


async def collect(stream: Any) -> tuple[str, str | None, list[Any]]:
    content, finish, usages = "", None, []
    async for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return content, finish, usages


# ---------------------------------------------------------------- text


async def test_text_not_streamed(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = message_handler([{"type": "text", "text": "Sunny, 21 C."}])
    result = await claude.client().chat.completions.create(model="claude", messages=MESSAGES, max_tokens=50)
    assert result.choices[0].message.content == "Sunny, 21 C."
    assert result.choices[0].finish_reason == "stop"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (1230, 7, 1237)
    assert sent_body(upstream) == {
        "model": MODEL,
        "max_tokens": 50,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": MESSAGES[1]["content"]}]}],
    }
    headers = upstream.requests[0]["headers"]
    assert headers["x-request-id"] and "sk-client-key-never-forwarded" not in str(list(headers.items()))


async def test_text_streamed_with_usage(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = stream_handler(text_stream(["Sun", "ny, ", "21 C."], output_tokens=6))
    stream = await claude.client().chat.completions.create(
        model="claude", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    content, finish, usages = await collect(stream)
    assert (content, finish) == ("Sunny, 21 C.", "stop")
    assert [(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) for usage in usages] == [(1230, 6, 1236)]
    body = sent_body(upstream)
    assert body["stream"] is True and body["max_tokens"] == 4096 and "stream_options" not in body


async def test_a_stream_ending_without_message_stop_still_has_its_usage(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = stream_handler(text_stream(["Sunny."], output_tokens=3)[:-1])
    stream = await claude.client().chat.completions.create(
        model="claude", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    content, finish, usages = await collect(stream)
    assert (content, finish) == ("Sunny.", "stop")
    assert [(usage.prompt_tokens, usage.completion_tokens) for usage in usages] == [(1230, 3)]


async def test_a_stream_whose_usage_has_no_input_tokens_reports_the_gateways_count(
    upstream: Upstream, claude: Gateway
) -> None:
    """Not a prompt of 0 tokens, which would pass for a count: the gateway's own, as without streaming."""
    events = text_stream(["Sunny."], output_tokens=3)
    events[0]["message"]["usage"] = {"output_tokens": 1}
    upstream.handler = stream_handler(events)
    stream = await claude.client().chat.completions.create(
        model="claude", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    _, _, [usage] = await collect(stream)
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0


# ---------------------------------------------------------------- tools


async def test_tool_calls_not_streamed(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = message_handler(
        [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Lyon"}},
        ],
        stop_reason="tool_use",
    )
    result = await claude.client().chat.completions.create(
        model="claude", messages=MESSAGES, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
    calls = [(call.id, call.function.name, orjson.loads(call.function.arguments)) for call in choice.message.tool_calls]
    assert calls == [("toolu_1", "get_weather", {"city": "Paris"}), ("toolu_2", "get_weather", {"city": "Lyon"})]
    body = sent_body(upstream)
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["tools"] == [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}]


async def test_tool_calls_streamed_are_reassembled_by_the_sdk(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = stream_handler(
        [
            message_start(),
            *text_block(0, ["Checking", " both."]),
            *tool_block(1, "toolu_1", "get_weather", ["", '{"ci', 'ty": "Par', 'is"}']),
            {"type": "ping"},
            *tool_block(2, "toolu_2", "get_weather", ['{"city": ', '"Lyon"}']),
            *ending("tool_use", 40),
        ]
    )
    async with claude.client().chat.completions.stream(model="claude", messages=MESSAGES, tools=[WEATHER]) as stream:
        completion = await stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content == "Checking both."
    calls = [(call.id, call.function.name, call.function.arguments) for call in choice.message.tool_calls]
    assert calls == [("toolu_1", "get_weather", '{"city": "Paris"}'), ("toolu_2", "get_weather", '{"city": "Lyon"}')]


async def test_a_tool_round_trip_is_sent_as_tool_use_and_tool_result(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = message_handler([{"type": "text", "text": "Paris is at 18 C."}])
    messages = [
        *MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
    ]
    await claude.client().chat.completions.create(model="claude", messages=messages, tools=[WEATHER])
    assert sent_body(upstream)["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"}]},
    ]


# ---------------------------------------------------------------- stop reasons


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("a_reason_from_the_future", "stop"),
    ],
)
async def test_each_stop_reason(upstream: Upstream, claude: Gateway, stop_reason: str, finish_reason: str) -> None:
    client = claude.client()
    upstream.handler = message_handler([{"type": "text", "text": "Hi"}], stop_reason=stop_reason)
    result = await client.chat.completions.create(model="claude", messages=MESSAGES)
    assert result.choices[0].finish_reason == finish_reason
    upstream.handler = stream_handler(text_stream(["Hi"], stop_reason=stop_reason))
    _, finish, usages = await collect(
        await client.chat.completions.create(model="claude", messages=MESSAGES, stream=True)
    )
    assert finish == finish_reason
    assert usages == [], "usage goes out only when the client asked for it"


# ---------------------------------------------------------------- errors


async def test_overloaded_keeps_529(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = error_handler("overloaded_error", "Overloaded", 529)
    with pytest.raises(openai.InternalServerError) as raised:
        await claude.client().chat.completions.create(model="claude", messages=MESSAGES, stream=True)
    error = raised.value
    assert error.status_code == 529
    assert error.body == {
        "message": "Overloaded",
        "type": "service_unavailable_error",
        "param": None,
        "code": "overloaded_error",
    }


async def test_a_400_is_a_bad_request(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = error_handler("invalid_request_error", "temperature: range: 0..1", 400)
    with pytest.raises(openai.BadRequestError) as raised:
        await claude.client().chat.completions.create(model="claude", messages=MESSAGES, temperature=1.5)
    assert raised.value.status_code == 400 and "temperature" in raised.value.message


async def ask_claude(claude: Gateway, *, stream: bool) -> None:
    """One chat request to the route `claude`, its stream read to the end."""
    if stream:
        async for _ in await claude.client().chat.completions.create(model="claude", messages=MESSAGES, stream=True):
            pass
    else:
        await claude.client().chat.completions.create(model="claude", messages=MESSAGES)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_status_above_599_is_a_502_that_keeps_the_message(
    upstream: Upstream, claude: Gateway, stream: bool
) -> None:
    upstream.handler = error_handler("overloaded_error", "Overloaded", 999)
    with pytest.raises(openai.InternalServerError) as raised:
        await ask_claude(claude, stream=stream)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
    assert raised.value.body["message"] == (
        "The upstream sent an error with status 999, not an HTTP error status (400-599): Overloaded"
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_success_that_is_only_an_error_is_a_502_that_keeps_its_message(
    upstream: Upstream, claude: Gateway, stream: bool
) -> None:
    upstream.handler = error_handler("authentication_error", f"invalid x-api-key {API_KEY}", 200)
    with pytest.raises(openai.InternalServerError) as raised:
        await ask_claude(claude, stream=stream)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_protocol_error"
    assert raised.value.body["message"] == (
        "The upstream sent an error with status 200, not an HTTP error status (400-599): invalid x-api-key [redacted]"
    )


async def test_an_html_error_page_is_not_shown(upstream: Upstream, claude: Gateway) -> None:
    async def html(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html><h1>Bad Gateway</h1></html>", content_type="text/html")

    upstream.handler = html
    with pytest.raises(openai.InternalServerError) as raised:
        await claude.client().chat.completions.create(model="claude", messages=MESSAGES)
    assert raised.value.status_code == 502 and "<html>" not in str(raised.value.body)
    assert raised.value.body["message"] == "The upstream answered with HTTP 502."


async def test_an_error_event_mid_stream(upstream: Upstream, claude: Gateway) -> None:
    upstream.handler = stream_handler(
        [
            message_start(),
            *text_block(0, ["Sun", "ny"]),
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ]
    )
    stream = await claude.client().chat.completions.create(model="claude", messages=MESSAGES, stream=True)
    content = ""
    with pytest.raises(openai.APIError) as raised:
        async for chunk in stream:
            content += "".join(choice.delta.content or "" for choice in chunk.choices)
    assert content == "Sunny"
    assert raised.value.message == "Overloaded" and raised.value.code == "overloaded_error"


async def test_overloaded_after_message_start_is_retried(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    """message_start (a role chunk), a ping, then overloaded_error: no content went out, so it is retried."""
    overloaded = stream_handler(
        [message_start(), {"type": "ping"}, {"type": "error", "error": {"type": "overloaded_error", "message": "x"}}]
    )
    answers = [overloaded, stream_handler(text_stream(["Sunny."]))]

    async def handle(request: web.Request) -> web.StreamResponse:
        return await answers.pop(0)(request)

    upstream.handler = handle
    gateway = await gateway_factory(
        {
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "api_key": API_KEY}},
            "routes": [{"model": "claude", "provider": "claude", "upstream_model": MODEL, "retries": 1}],
        }
    )
    raw = await gateway.client().chat.completions.with_raw_response.create(
        model="claude", messages=MESSAGES, stream=True
    )
    assert raw.headers["x-gateway-attempts"] == "2"
    assert (await collect(raw.parse()))[:2] == ("Sunny.", "stop")


async def test_pings_and_thinking_keep_a_long_quiet_stream_alive(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """Thinking and pings make no OpenAI chunk, but they are the upstream at work: idle_timeout must not fire."""
    gateway = await gateway_factory(
        {
            "limits": {"idle_timeout": 0.3},
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "api_key": API_KEY}},
            "routes": [{"model": "claude", "provider": "claude", "upstream_model": MODEL}],
        }
    )
    thinking = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": f"step {i}. "}}
            for i in range(4)
        ),
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2lnbmF0dXJl"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "ping"},
    ]
    # 8 events of no chunk, 0.15 s apart: 1.2 s without a chunk, against an idle_timeout of 0.3 s
    upstream.handler = paced_stream_handler(
        [message_start(), *thinking, *text_block(1, ["Done."]), *ending("end_turn", 9)], 0.15
    )
    text, finish, _ = await collect(
        await gateway.client().chat.completions.create(model="claude", messages=MESSAGES, stream=True)
    )
    assert (text, finish) == ("Done.", "stop")


async def test_n_above_1_is_refused_before_any_upstream_request(upstream: Upstream, claude: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await claude.client().chat.completions.create(model="claude", messages=MESSAGES, n=2)
    assert raised.value.param == "n" and upstream.requests == []


# ---------------------------------------------------------------- max_tokens


async def test_a_stream_that_ignores_max_tokens_is_cut_exactly(
    upstream: Upstream, claude: Gateway, tokenizers: Tokenizers
) -> None:
    upstream.handler = stream_handler(text_stream([f" word{i}" for i in range(200)], output_tokens=400))
    stream = await claude.client().chat.completions.create(
        model="claude", messages=MESSAGES, stream=True, max_tokens=7, stream_options={"include_usage": True}
    )
    content, finish, usages = await collect(stream)
    assert tokenizers.for_model(MODEL).count(content) == 7
    assert finish == "length"
    assert sent_body(upstream)["max_tokens"] == 7
    assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (1230, 7)
    assert usages[0].prompt_tokens_details.cached_tokens == 1000  # what Anthropic said of the prompt stays


async def test_a_message_that_ignores_max_tokens_is_cut_exactly(
    upstream: Upstream, claude: Gateway, tokenizers: Tokenizers
) -> None:
    upstream.handler = message_handler(
        [{"type": "text", "text": "".join(f" word{i}" for i in range(200))}], output_tokens=400
    )
    result = await claude.client().chat.completions.create(model="claude", messages=MESSAGES, max_completion_tokens=9)
    assert tokenizers.for_model(MODEL).count(result.choices[0].message.content) == 9
    assert result.choices[0].finish_reason == "length"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (1230, 9)
    assert result.usage.prompt_tokens_details.cached_tokens == 1000
