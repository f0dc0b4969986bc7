"""Anthropic's streamed and non-streamed translations of the same answer are equal, field for field.

A stream of Anthropic events is translated into chunks, which are assembled into a
message the way OpenAI's SDKs assemble one; the same events are accumulated into the
Anthropic message they stand for, the way Anthropic's SDKs do, and that message is
translated as a non-streamed answer. The two completions must be equal: recorded
streams first (text, tool_use with and without input, input whole in
content_block_start, several blocks, thinking), then any stream hypothesis makes.

One field is compared for what it means rather than byte for byte: a tool call's
arguments. Streamed, they are the model's own JSON text (`{"city": "Paris"}`); not
streamed, Anthropic gives the parsed input, which the gateway writes as compact JSON
(`{"city":"Paris"}`). Both are compared as the JSON they encode.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any
from unittest import mock

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from test_anthropic_e2e import ending

from gateway.providers.anthropic import AnthropicStreamTranslator, completion_from_message
from gateway.stream.sse import SSEDecoder

NOW = 1_700_000_000
START_USAGE = {"input_tokens": 25, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 12, "output_tokens": 1}


# ---------------------------------------------------------------- the two sides


def sse(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


def streamed(raw: bytes, reads: list[int]) -> dict[str, Any]:
    """The chunks of the stream, read in pieces of the given sizes, assembled into a completion."""
    decoder, chunks = SSEDecoder(), []
    with mock.patch("gateway.providers.anthropic.time.time", return_value=NOW):
        translator = AnthropicStreamTranslator()
    position = 0
    for size in [*reads, len(raw)]:
        for event in decoder.decode(raw[position : position + size]):
            chunks += translator.translate(event)
        position += size
    for event in decoder.flush():
        chunks += translator.translate(event)
    assert translator.finished
    return assemble(chunks)


def not_streamed(events: list[dict[str, Any]]) -> dict[str, Any]:
    with mock.patch("gateway.providers.anthropic.time.time", return_value=NOW):
        return completion_from_message(accumulate(events))


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """Chunks into a chat.completion, by the rules of OpenAI's SDKs: a null is replaced by
    what comes next, strings are joined, tool calls are merged by their index."""
    first = chunks[0]
    message: dict[str, Any] = {"role": None, "content": None, "refusal": None}
    calls: dict[int, dict[str, Any]] = {}
    finish, usage = None, None
    for chunk in chunks:
        usage = chunk.get("usage", usage)
        for choice in chunk["choices"]:
            assert choice["index"] == 0
            finish = choice["finish_reason"] or finish
            for key, value in choice["delta"].items():
                if key == "tool_calls":
                    for call in value:
                        merge(calls.setdefault(call["index"], {}), {k: v for k, v in call.items() if k != "index"})
                elif isinstance(message.get(key), str) and isinstance(value, str):
                    message[key] += value
                elif message.get(key) is None:
                    message[key] = value
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    completion = {
        "id": first["id"],
        "object": "chat.completion",
        "created": first["created"],
        "model": first["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


def merge(into: dict[str, Any], delta: dict[str, Any]) -> None:
    for key, value in delta.items():
        if isinstance(value, dict):
            merge(into.setdefault(key, {}), value)
        elif isinstance(into.get(key), str) and isinstance(value, str):
            into[key] += value
        elif into.get(key) is None:
            into[key] = value


def accumulate(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The Anthropic message the events stand for, by the rules of Anthropic's SDKs: deltas
    append to their block; a tool's input is its joined input_json_deltas when any is not
    empty, else the input its content_block_start gave."""
    message: dict[str, Any] = {}
    buffers: dict[int, str] = {}
    for event in events:
        kind = event["type"]
        if kind == "message_start":
            message = copy.deepcopy(event["message"])
        elif kind == "content_block_start":
            message["content"].append(copy.deepcopy(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = message["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                buffers[event["index"]] = buffers.get(event["index"], "") + delta["partial_json"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
        elif kind == "message_delta":
            message.update(event["delta"])
            message["usage"].update({k: v for k, v in event["usage"].items() if v is not None})
    for index, buffer in buffers.items():
        if buffer:
            message["content"][index]["input"] = json.loads(buffer)
    return message


def comparable(completion: dict[str, Any]) -> dict[str, Any]:
    """The completion with each tool call's arguments as the JSON they encode."""
    completion = copy.deepcopy(completion)
    for call in completion["choices"][0]["message"].get("tool_calls") or ():
        call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return completion


def assert_equal_translations(events: list[dict[str, Any]], reads: list[int] | None = None) -> None:
    assert comparable(streamed(sse(events), reads or [])) == comparable(not_streamed(events))


# ---------------------------------------------------------------- recorded streams


def message_start(message_id: str = "msg_01", usage: dict[str, int] = START_USAGE) -> dict[str, Any]:
    message = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": dict(usage),
    }
    return {"type": "message_start", "message": message}


def block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_start", "index": index, "content_block": start},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


def text(index: int, *pieces: str, start: str = "") -> list[dict[str, Any]]:
    return block(index, {"type": "text", "text": start}, [{"type": "text_delta", "text": p} for p in pieces])


def tool(index: int, name: str, *pieces: str, start_input: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    start = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": start_input or {}}
    return block(index, start, [{"type": "input_json_delta", "partial_json": p} for p in pieces])


def thinking(index: int, *pieces: str) -> list[dict[str, Any]]:
    deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
    return block(
        index, {"type": "thinking", "thinking": ""}, [*deltas, {"type": "signature_delta", "signature": "c2ln"}]
    )


RECORDED: dict[str, list[dict[str, Any]]] = {
    "text": [message_start(), {"type": "ping"}, *text(0, "Hello", ", world."), *ending("end_turn", 6)],
    "a tool with input in deltas": [
        message_start(),
        *tool(0, "get_weather", "", '{"city": ', '"Paris", "unit": "c"}'),
        *ending("tool_use", 20),
    ],
    "a tool with no arguments": [message_start(), *tool(0, "now", ""), *ending("tool_use", 9)],
    "a tool with no arguments and no delta": [message_start(), *tool(0, "now"), *ending("tool_use", 9)],
    "a tool whose input comes whole in content_block_start": [
        message_start(),
        *tool(0, "get_weather", start_input={"city": "Lyon", "days": [1, 2]}),
        *ending("tool_use", 12),
    ],
    "text, then tools": [
        message_start(),
        *text(0, "Let me check ", "both."),
        *tool(1, "get_weather", '{"city": "Paris"}'),
        *tool(2, "now", ""),
        *tool(3, "get_weather", start_input={"city": "Lyon"}),
        *ending("tool_use", 40),
    ],
    "thinking, then text": [
        message_start(),
        *thinking(0, "The user ", "greets me."),
        *text(1, "Hi!"),
        *ending("end_turn", 30),
    ],
    "thinking, then a tool": [message_start(), *thinking(0, "Weather."), *tool(1, "now", ""), *ending("tool_use", 30)],
    "several text blocks": [
        message_start(),
        *text(0, "One. "),
        *text(1, "Two.", start="Then "),
        *ending("end_turn", 4),
    ],
    "an empty text block": [message_start(), *text(0), *ending("end_turn", 1)],
    "no content": [message_start(), *ending("end_turn", 0)],
    "a refusal": [message_start(), *text(0, "I can't"), *ending("refusal", 2)],
    "usage in message_delta": [
        message_start(usage={"input_tokens": 3, "output_tokens": 1}),
        *text(0, "Hi"),
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens", "stop_sequence": None},
            "usage": {"input_tokens": 30, "cache_read_input_tokens": 7, "output_tokens": 5},
        },
        {"type": "message_stop"},
    ],
}


def test_recorded_streams_translate_as_their_messages_do() -> None:
    for name, events in RECORDED.items():
        for reads in ([], [1] * 400, [7] * 200):
            try:
                assert_equal_translations(events, reads)
            except AssertionError as failure:
                raise AssertionError(f"{name}, reads of {reads[:1]}: {failure}") from None


def test_a_tool_with_no_arguments_has_the_arguments_of_an_empty_object() -> None:
    completion = streamed(sse(RECORDED["a tool with no arguments"]), [])
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"] == {"name": "now", "arguments": "{}"}


def test_a_tool_whose_input_comes_whole_keeps_it() -> None:
    completion = streamed(sse(RECORDED["a tool whose input comes whole in content_block_start"]), [])
    arguments = completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(arguments) == {"city": "Lyon", "days": [1, 2]}


def test_content_is_null_with_no_text_block_and_empty_with_an_empty_one() -> None:
    assert streamed(sse(RECORDED["a tool with no arguments"]), [])["choices"][0]["message"]["content"] is None
    assert streamed(sse(RECORDED["an empty text block"]), [])["choices"][0]["message"]["content"] == ""


# ---------------------------------------------------------------- any stream

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def pieces(draw: st.DrawFn, whole: str) -> list[str]:
    """`whole` split into pieces, empty ones included (Anthropic's first input_json_delta is often "")."""
    cuts = sorted(draw(st.lists(st.integers(0, len(whole)), max_size=5)))
    bounds = [0, *cuts, len(whole)]
    return [whole[a:b] for a, b in itertools.pairwise(bounds)]


@st.composite
def blocks(draw: st.DrawFn, index: int) -> list[dict[str, Any]]:
    kind = draw(st.sampled_from(["text", "tool deltas", "tool whole", "tool none", "thinking"]))
    if kind == "text":
        whole = draw(st.text(max_size=30))
        start = draw(st.sampled_from(["", whole[:3]]))
        return text(index, *draw(pieces(whole[len(start) :])), start=start)
    if kind == "thinking":
        return thinking(index, *draw(pieces(draw(st.text(max_size=20)))))
    name = draw(st.sampled_from(["get_weather", "now", "search"]))
    arguments = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3))
    if kind == "tool deltas":
        spacing = draw(st.sampled_from([(", ", ": "), (",", ":")]))
        return tool(index, name, *draw(pieces(json.dumps(arguments, separators=spacing))))
    if kind == "tool whole":
        return tool(index, name, *([""] if draw(st.booleans()) else []), start_input=arguments)
    return tool(index, name, *([""] if draw(st.booleans()) else []))


@st.composite
def anthropic_streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 4))
    events = [message_start(draw(st.sampled_from(["msg_a", "msg_0123"])))]
    for index in range(count):
        events += draw(blocks(index))
        if draw(st.booleans()):
            events.append({"type": "ping"})
    stop_reason = draw(
        st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn"])
    )
    return [*events, *ending(stop_reason, draw(st.integers(0, 500)))]


@settings(max_examples=300, deadline=None)
@given(events=anthropic_streams(), reads=st.lists(st.integers(1, 64), max_size=20))
def test_any_stream_translates_as_its_message_does(events: list[dict[str, Any]], reads: list[int]) -> None:
    assert_equal_translations(events, reads)
