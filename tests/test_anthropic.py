"""The Anthropic adapter as pure code: requests, responses, recorded streams and errors."""

from __future__ import annotations

import copy
import logging
from typing import Any

import orjson
import pytest

from gateway.config import ProviderConfig
from gateway.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from gateway.providers import create_provider
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import UpstreamCall
from gateway.stream.sse import SSEDecoder, SSEEvent

API_KEY = "sk-ant-test-key-0123456789"
CONFIG = ProviderConfig(
    name="claude",
    kind="anthropic",
    base_url="https://api.anthropic.com",
    api_key=API_KEY,
    headers={"anthropic-beta": "some-feature", "Authorization": "Bearer never-sent"},
)
USER = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def adapter() -> AnthropicProvider:
    return AnthropicProvider(CONFIG)


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, "detail": "low"}}


def user_turn(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "content": list(blocks)}


def build(body: dict[str, Any], *, max_tokens: int = 256, stream: bool = False) -> dict[str, Any]:
    call = UpstreamCall(body=body, model="claude-sonnet-4-5", max_tokens=max_tokens, stream=stream, request_id="req-1")
    return orjson.loads(adapter().build_request(call).body)


# ---------------------------------------------------------------- requests

REQUESTS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "system and developer messages join into system",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [text("Answer in French.")]},
                USER,
            ]
        },
        {"system": "Be brief.\n\nAnswer in French.", "messages": [user_turn(text(USER["content"]))]},
    ),
    (
        "an image as a data URL",
        {
            "messages": [
                {"role": "user", "content": [text("What is this?"), image_part("data:image/png;base64,iVBORw0KGgo=")]}
            ]
        },
        {
            "messages": [
                user_turn(
                    text("What is this?"),
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                )
            ]
        },
    ),
    (
        "an image by URL",
        {"messages": [{"role": "user", "content": [image_part("https://example.com/cat.jpg")]}]},
        {"messages": [user_turn({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}})]},
    ),
    (
        "tools, tool_choice auto",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "auto"},
        {
            "tools": [
                {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "input_schema": WEATHER["function"]["parameters"],
                }
            ],
            "tool_choice": {"type": "auto"},
        },
    ),
    (
        "a tool without parameters, no tool_choice",
        {"messages": [USER], "tools": [{"type": "function", "function": {"name": "now"}}]},
        {"tools": [{"name": "now", "input_schema": {"type": "object", "properties": {}}}]},
    ),
    (
        "tool_choice required",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "required"},
        {"tool_choice": {"type": "any"}},
    ),
    (
        "tool_choice none",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "none"},
        {"tool_choice": {"type": "none"}},
    ),
    (
        "tool_choice naming a function",
        {
            "messages": [USER],
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        },
        {"tool_choice": {"type": "tool", "name": "get_weather"}},
    ),
    (
        "parallel_tool_calls false alone",
        {"messages": [USER], "tools": [WEATHER], "parallel_tool_calls": False},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        "parallel_tool_calls false with required",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False},
        {"tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
    ),
    (
        "tool calls and their results; consecutive results and the next user message share one turn",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": "Let me look.",
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                        },
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                        },
                    ],
                },
                {"role": "tool", "tool_call_id": "call_a", "content": "18 C"},
                {"role": "tool", "tool_call_id": "call_b", "content": [text("21 C")]},
                {"role": "user", "content": "Which is warmer?"},
            ]
        },
        {
            "messages": [
                user_turn(text(USER["content"])),
                {
                    "role": "assistant",
                    "content": [
                        text("Let me look."),
                        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
                        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Lyon"}},
                    ],
                },
                user_turn(
                    {"type": "tool_result", "tool_use_id": "call_a", "content": "18 C"},
                    {"type": "tool_result", "tool_use_id": "call_b", "content": [text("21 C")]},
                    text("Which is warmer?"),
                ),
            ]
        },
    ),
    (
        "an assistant message with only tool calls",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_a", "type": "function", "function": {"name": "now", "arguments": ""}}],
                },
            ]
        },
        {
            "messages": [
                user_turn(text(USER["content"])),
                {"role": "assistant", "content": [{"type": "tool_use", "id": "call_a", "name": "now", "input": {}}]},
            ]
        },
    ),
    ("stop as a string", {"messages": [USER], "stop": "END"}, {"stop_sequences": ["END"]}),
    ("stop as a list", {"messages": [USER], "stop": ["END", "\n\nHuman:"]}, {"stop_sequences": ["END", "\n\nHuman:"]}),
    (
        "sampling and user passed on, fields without an Anthropic meaning dropped",
        {
            "messages": [USER],
            "temperature": 0.2,
            "top_p": 0.9,
            "user": "user-7",
            "seed": 1,
            "logprobs": True,
            "response_format": {"type": "json_object"},
            "frequency_penalty": 0.5,
            "stream_options": {"include_usage": True},
            "max_completion_tokens": 99,
            "n": 1,
        },
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 256,
            "messages": [user_turn(text(USER["content"]))],
            "temperature": 0.2,
            "top_p": 0.9,
            "metadata": {"user_id": "user-7"},
        },
    ),
]


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in REQUESTS], ids=[case[0] for case in REQUESTS])
def test_request_translation(body: dict[str, Any], expected: dict[str, Any]) -> None:
    before = copy.deepcopy(body)
    sent = build(body)
    assert body == before, "the client's request must not be changed"
    assert {key: sent.get(key) for key in expected} == expected
    assert sent["model"] == "claude-sonnet-4-5" and sent["max_tokens"] == 256
    if expected.get("model"):  # the case that lists every field
        assert sent == expected


def test_exact_body_streaming_and_headers() -> None:
    call = UpstreamCall(
        body={"messages": [USER], "max_tokens": 10},
        model="claude-sonnet-4-5",
        max_tokens=10,
        stream=True,
        request_id="req-42",
    )
    request = adapter().build_request(call)
    assert request.url == "https://api.anthropic.com/v1/messages"
    assert orjson.loads(request.body) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 10,
        "messages": [user_turn(text(USER["content"]))],
        "stream": True,
    }
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["x-api-key"] == API_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-request-id"] == "req-42"
    assert headers["anthropic-beta"] == "some-feature"
    assert headers["content-type"] == "application/json" and headers["accept"] == "text/event-stream"
    assert "authorization" not in headers


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("n above 1", {"messages": [USER], "n": 2}, "n"),
    (
        "tool arguments that are not JSON",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{not json"}}
                    ],
                },
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "tool arguments that are not an object",
        {
            "messages": [
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1]"}}],
                },
            ]
        },
        "messages[1].tool_calls[0].function.arguments",
    ),
    (
        "an image that is neither http nor data",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}]}
            ]
        },
        "messages[0].content[0].image_url.url",
    ),
    (
        "a data URL that is not base64",
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}
            ]
        },
        "messages[0].content[0].image_url.url",
    ),
    (
        "an unsupported part",
        {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        "messages[0].content[0]",
    ),
    ("an unknown role", {"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    (
        "a tool message without tool_call_id",
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages[0].tool_call_id",
    ),
    (
        "a tool_choice of no known shape",
        {"messages": [USER], "tools": [WEATHER], "tool_choice": "always"},
        "tool_choice",
    ),
    ("a tool that is not a function", {"messages": [USER], "tools": [{"type": "custom", "custom": {}}]}, "tools[0]"),
]


@pytest.mark.parametrize(("body", "param"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_requests_anthropic_cannot_take_are_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        build(body)
    assert raised.value.param == param and raised.value.status == 400


def test_registered_as_kind_anthropic() -> None:
    provider = create_provider(CONFIG)
    assert isinstance(provider, AnthropicProvider) and provider.config is CONFIG


# ---------------------------------------------------------------- responses


def message(content: list[dict[str, Any]], *, stop_reason: str | None = "end_turn", **usage: int) -> bytes:
    return orjson.dumps(
        {
            "id": "msg_0123",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 5, **usage},
        }
    )


def test_text_response() -> None:
    completion = adapter().translate_response(message([text("Hello"), text(" there!")]))
    assert isinstance(completion.pop("created"), int)
    assert completion == {
        "id": "chatcmpl-msg_0123",
        "object": "chat.completion",
        "model": "claude-sonnet-4-5",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there!", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def test_tool_use_response() -> None:
    payload = message(
        [
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
            {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_b", "name": "now", "input": {}},
        ],
        stop_reason="tool_use",
    )
    choice = adapter().translate_response(payload)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "toolu_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "toolu_b", "type": "function", "function": {"name": "now", "arguments": "{}"}},
        ],
    }


STOP_REASONS = [
    ("end_turn", "stop"),
    ("stop_sequence", "stop"),
    ("pause_turn", "stop"),
    ("max_tokens", "length"),
    ("model_context_window_exceeded", "length"),
    ("tool_use", "tool_calls"),
    ("refusal", "content_filter"),
]


@pytest.mark.parametrize(("stop_reason", "finish_reason"), STOP_REASONS)
def test_stop_reasons(stop_reason: str, finish_reason: str, caplog: pytest.LogCaptureFixture) -> None:
    completion = adapter().translate_response(message([text("x")], stop_reason=stop_reason))
    assert completion["choices"][0]["finish_reason"] == finish_reason
    assert not caplog.records


def test_an_unknown_stop_reason_is_stop_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.providers.anthropic"):
        completion = adapter().translate_response(message([text("x")], stop_reason="brand_new"))
    assert completion["choices"][0]["finish_reason"] == "stop"
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "brand_new" in caplog.records[0].getMessage()


def test_usage_counts_cache_tokens_in_the_prompt() -> None:
    payload = message(
        [text("x")], input_tokens=10, cache_creation_input_tokens=200, cache_read_input_tokens=3000, output_tokens=7
    )
    usage = adapter().translate_response(payload)["usage"]
    assert usage == {
        "prompt_tokens": 3210,
        "completion_tokens": 7,
        "total_tokens": 3217,
        "prompt_tokens_details": {"cached_tokens": 3000},
    }


@pytest.mark.parametrize(
    "payload", [b"<html>oops</html>", b"[]", b'{"type": "error", "error": {}}', b'{"type": "message"}']
)
def test_a_response_that_is_not_a_message(payload: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter().translate_response(payload)


# ---------------------------------------------------------------- streams

# A tool-use stream in the shape Anthropic's streaming documentation gives: a text block,
# a tool_use block filled by input_json_delta, a ping, message_delta with usage, message_stop.
RECORDED_STREAM = b"""event: message_start
data: {"type":"message_start","message":{"id":"msg_01Wx9pQ","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":472,"cache_creation_input_tokens":100,"cache_read_input_tokens":20,"output_tokens":2}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", let me check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01Ab","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Par"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"is\\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


def expected_chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-msg_01Wx9pQ",
        "object": "chat.completion.chunk",
        "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


EXPECTED_CHUNKS = [
    {
        **expected_chunk({"role": "assistant", "content": None}),  # the role and finish chunks carry the usage so far
        "usage": {
            "prompt_tokens": 592,
            "completion_tokens": 2,
            "total_tokens": 594,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    },
    expected_chunk({"content": "Okay"}),
    expected_chunk({"content": ", let me check."}),
    expected_chunk(
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01Ab",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        }
    ),
    expected_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Par'}}]}),
    expected_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'is"}'}}]}),
    {
        **expected_chunk({}, "tool_calls"),
        "usage": {
            "prompt_tokens": 592,
            "completion_tokens": 89,
            "total_tokens": 681,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    },
    {
        "id": "chatcmpl-msg_01Wx9pQ",
        "object": "chat.completion.chunk",
        "model": "claude-sonnet-4-5",
        "choices": [],
        "usage": {
            "prompt_tokens": 592,
            "completion_tokens": 89,
            "total_tokens": 681,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    },
]


def translate_stream(raw: bytes, *, read_size: int | None = None) -> tuple[list[dict[str, Any]], bool]:
    decoder = SSEDecoder()
    translator = adapter().stream_translator()
    size = read_size or len(raw)
    chunks: list[dict[str, Any]] = []
    for start in range(0, len(raw), size):
        for event in decoder.decode(raw[start : start + size]):
            chunks += translator.translate(event)
    for event in decoder.flush():
        chunks += translator.translate(event)
    return chunks, translator.finished


@pytest.mark.parametrize("read_size", [None, 1, 7, 64])
def test_recorded_stream_translates_into_chunks(read_size: int | None) -> None:
    chunks, finished = translate_stream(RECORDED_STREAM, read_size=read_size)
    assert finished
    created = {chunk.pop("created") for chunk in chunks}
    assert len(created) == 1 and isinstance(created.pop(), int)
    assert chunks == EXPECTED_CHUNKS


def event(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent(orjson.dumps(data), data.get("type"))


START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [],
        "usage": {"input_tokens": 5, "output_tokens": 1},
    },
}


def test_message_delta_usage_replaces_the_running_totals() -> None:
    translator = adapter().stream_translator()
    translator.translate(event(START))
    assert translator.translate(event({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 3}})) == []
    finish = translator.translate(
        event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "max_tokens"},
                "usage": {"input_tokens": 50, "cache_read_input_tokens": 4, "output_tokens": 9},
            }
        )
    )
    assert finish[0]["choices"][0]["finish_reason"] == "length"
    [usage_chunk] = translator.translate(event({"type": "message_stop"}))
    assert usage_chunk["usage"] == {
        "prompt_tokens": 54,
        "completion_tokens": 9,
        "total_tokens": 63,
        "prompt_tokens_details": {"cached_tokens": 4},
    }


def test_unknown_events_and_deltas_are_ignored() -> None:
    translator = adapter().stream_translator()
    translator.translate(event(START))
    for data in (
        {"type": "ping"},
        {"type": "some_future_event", "anything": [1]},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hmm"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "abc"}},
        {"type": "content_block_stop", "index": 0},
    ):
        assert translator.translate(event(data)) == []
    assert not translator.finished


OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@pytest.mark.parametrize(
    ("kind", "status", "openai_type"),
    [
        ("overloaded_error", 529, "service_unavailable_error"),
        ("rate_limit_error", 429, "rate_limit_error"),
        ("api_error", 500, "server_error"),
        ("invalid_request_error", 400, "invalid_request_error"),
        ("request_too_large", 413, "invalid_request_error"),
        ("authentication_error", 401, "invalid_request_error"),
        ("permission_error", 403, "invalid_request_error"),
        ("not_found_error", 404, "invalid_request_error"),
        ("something_new_error", 502, "server_error"),
    ],
)
def test_an_error_event_raises_with_the_status_of_its_type(kind: str, status: int, openai_type: str) -> None:
    """Anthropic's error type is kept as the code; the type is OpenAI's for that status."""
    translator = adapter().stream_translator()
    translator.translate(event(START))
    with pytest.raises(UpstreamStatusError) as raised:
        translator.translate(event({"type": "error", "error": {"type": kind, "message": f"Trouble with {API_KEY}"}}))
    error = raised.value
    assert (error.status, error.type, error.code) == (status, openai_type, kind)
    assert error.message == "Trouble with [redacted]"


def block_start(index: Any, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_start", "index": index, "content_block": block}


def block_delta(index: Any, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}
BAD_EVENTS: list[tuple[str, list[dict[str, Any]]]] = [
    ("a text delta that is a number", [block_start(0, text("")), block_delta(0, {"type": "text_delta", "text": 42})]),
    ("a text block's text a list", [block_start(0, {"type": "text", "text": ["Hi"]})]),
    (
        "partial_json an object",
        [block_start(0, TOOL_USE), block_delta(0, {"type": "input_json_delta", "partial_json": {}})],
    ),
    ("a tool_use id a number", [block_start(0, {**TOOL_USE, "id": 1})]),
    ("a tool_use with no name", [block_start(0, {key: v for key, v in TOOL_USE.items() if key != "name"})]),
    ("a block index a list", [block_start([0], TOOL_USE)]),
]


@pytest.mark.parametrize("events", [case[1] for case in BAD_EVENTS], ids=[case[0] for case in BAD_EVENTS])
def test_an_event_of_the_wrong_shape_is_a_protocol_error(events: list[dict[str, Any]]) -> None:
    translator = adapter().stream_translator()
    translator.translate(event(START))
    with pytest.raises(UpstreamProtocolError):
        for data in events:
            translator.translate(event(data))


@pytest.mark.parametrize(
    "message_fields", [{"model": 3}, {"id": None}, {"model": None}], ids=["model a number", "no id", "no model"]
)
def test_a_message_start_of_the_wrong_shape_is_a_protocol_error(message_fields: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter().stream_translator().translate(event({**START, "message": {**START["message"], **message_fields}}))


@pytest.mark.parametrize(
    "data",
    [block_start(0, text("Hi")), block_delta(0, {"type": "text_delta", "text": "Hi"}), {"type": "message_stop"}],
    ids=["content_block_start", "content_block_delta", "message_stop"],
)
def test_an_event_before_message_start_is_a_protocol_error(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter().stream_translator().translate(event(data))


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "text", "text": 42}],
        [{"type": "tool_use", "id": "toolu_1", "name": "now", "input": [1]}],
        [{"type": "tool_use", "id": None, "name": "now", "input": {}}],
        [{"type": "tool_use", "id": "toolu_1", "name": 5, "input": {}}],
    ],
    ids=["text a number", "input a list", "no id", "name a number"],
)
def test_a_message_of_the_wrong_shape_is_a_protocol_error(content: list[dict[str, Any]]) -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter().translate_response(message(content))


def test_a_message_with_no_model_is_a_protocol_error() -> None:
    payload = orjson.loads(message([text("Hi")]))
    del payload["model"]
    with pytest.raises(UpstreamProtocolError):
        adapter().translate_response(orjson.dumps(payload))


def test_an_event_that_is_not_json() -> None:
    with pytest.raises(UpstreamProtocolError):
        adapter().stream_translator().translate(SSEEvent(b"{oops", "message_start"))


# ---------------------------------------------------------------- errors


def test_overloaded_keeps_its_529() -> None:
    error = adapter().map_error(529, orjson.dumps(OVERLOADED))
    assert (error.status, error.message, error.type, error.code) == (
        529,
        "Overloaded",
        "service_unavailable_error",
        "overloaded_error",
    )
    assert error.body() == {
        "error": {
            "message": "Overloaded",
            "type": "service_unavailable_error",
            "param": None,
            "code": "overloaded_error",
        }
    }


def test_an_html_body_is_never_shown() -> None:
    error = adapter().map_error(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>")
    assert error.status == 502
    assert error.message == "The upstream answered with HTTP 502."
    assert "html" not in error.to_json().decode()


def test_the_api_key_is_redacted_from_error_messages() -> None:
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"invalid x-api-key {API_KEY}"}}
    error = adapter().map_error(401, orjson.dumps(body))
    assert error.message == "invalid x-api-key [redacted]" and error.code == "authentication_error"
