"""The OpenAI adapter as pure code: the shapes of the chunks and completions it passes on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakes import chunk, completion

from gateway.config import ProviderConfig
from gateway.errors import UpstreamProtocolError
from gateway.providers.openai import OpenAIProvider, OpenAIStreamTranslator
from gateway.stream.sse import SSEEvent

IDENTITY = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini"}
NO_IDENTITY = {"id": "", "object": "", "created": 0, "model": ""}
CONFIG = ProviderConfig(name="up", kind="openai", base_url="https://api.openai.com/v1", api_key="sk-test")
PROMPT_FILTER = {**NO_IDENTITY, "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}


def event(data: dict[str, Any] | bytes) -> SSEEvent:
    return SSEEvent(data if isinstance(data, bytes) else orjson.dumps(data))


def translated(*events: dict[str, Any] | bytes) -> tuple[list[list[dict[str, Any]]], list[bool]]:
    """The chunks of each event, and whether each was passed through as the event's own chunk."""
    translator = OpenAIStreamTranslator()
    chunks, verbatim = [], []
    for data in events:
        chunks.append(translator.translate(event(data)))
        verbatim.append(translator.passthrough)
    return chunks, verbatim


# ---------------------------------------------------------------- identity


def test_an_annotation_before_the_first_chunk_waits_for_the_streams_identity() -> None:
    role = chunk({"role": "assistant", "content": ""})
    chunks, verbatim = translated(PROMPT_FILTER, role, chunk({"content": "Hi"}))
    assert chunks[0] == []
    assert chunks[1] == [{**IDENTITY, "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}, role]
    assert chunks[2] == [chunk({"content": "Hi"})]
    assert verbatim[1:] == [False, True]  # the event that released it is re-encoded, the next goes as it came


def test_an_annotation_after_the_end_takes_the_streams_identity_and_a_delta() -> None:
    late = {
        **NO_IDENTITY,
        "usage": None,
        "choices": [{"index": 0, "finish_reason": None, "content_filter_results": {"hate": {"filtered": False}}}],
    }
    chunks, verbatim = translated(chunk({"content": "Hi"}), chunk({}, finish_reason="stop"), late)
    assert chunks[2] == [
        {
            **IDENTITY,
            "usage": None,
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": None,
                    "content_filter_results": {"hate": {"filtered": False}},
                }
            ],
        }
    ]
    assert verbatim == [True, True, False]


def test_annotations_that_never_see_an_identity_are_left_out() -> None:
    chunks, _ = translated(PROMPT_FILTER, b"[DONE]")
    assert chunks == [[], []]


@pytest.mark.parametrize(
    "events",
    [
        [{**NO_IDENTITY, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}],
        [PROMPT_FILTER] * 9,  # more than the few an upstream may send before its first chunk
    ],
    ids=["content with no identity", "too many annotations before the first chunk"],
)
def test_chunks_with_no_identity_before_the_first_are_a_protocol_error(events: list[dict[str, Any]]) -> None:
    with pytest.raises(UpstreamProtocolError):
        translated(*events)


# ---------------------------------------------------------------- the types of what a client reads


def with_choice(**fields: Any) -> dict[str, Any]:
    item = chunk({"content": "Hi"})
    item["choices"][0].update(fields)
    return item


BAD_CHUNKS: list[tuple[str, dict[str, Any]]] = [
    ("content a number", chunk({"content": 42})),
    ("content a list of parts", chunk({"content": [{"type": "text", "text": "Hi"}]})),
    ("refusal an object", chunk({"refusal": {"text": "no"}})),
    ("role a number", chunk({"role": 1})),
    ("tool_calls an object", chunk({"tool_calls": {"index": 0}})),
    ("a tool call with no index", chunk({"tool_calls": [{"function": {"arguments": "{}"}}]})),
    ("a tool call's index a string", chunk({"tool_calls": [{"index": "0"}]})),
    ("a tool call's id a number", chunk({"tool_calls": [{"index": 0, "id": 7}]})),
    ("a tool call's arguments an object", chunk({"tool_calls": [{"index": 0, "function": {"arguments": {}}}]})),
    ("a tool call's name a number", chunk({"tool_calls": [{"index": 0, "function": {"name": 1}}]})),
    ("a tool call's function a string", chunk({"tool_calls": [{"index": 0, "function": "f"}]})),
    ("delta a string", with_choice(delta="Hi")),
    ("no delta", {**chunk(), "choices": [{"index": 0, "finish_reason": None}]}),
    ("index a string", with_choice(index="0")),
    ("index a boolean", with_choice(index=True)),
    ("finish_reason a number", with_choice(finish_reason=1)),
    ("logprobs a list", with_choice(logprobs=[])),
    ("logprobs.content an object", with_choice(logprobs={"content": {}, "refusal": None})),
    ("a choice that is a string", {**chunk(), "choices": ["Hi"]}),
    ("choices an object", {**chunk(), "choices": {}}),
    ("no choices", {key: value for key, value in chunk().items() if key != "choices"}),
    ("id a number", {**chunk({"content": "Hi"}), "id": 1}),
    ("object another", {**chunk({"content": "Hi"}), "object": "chat.completion"}),
    ("created a string", {**chunk({"content": "Hi"}), "created": "1700000000"}),
    ("model null", {**chunk({"content": "Hi"}), "model": None}),
]


@pytest.mark.parametrize("bad", [case[1] for case in BAD_CHUNKS], ids=[case[0] for case in BAD_CHUNKS])
def test_a_chunk_of_the_wrong_shape_is_a_protocol_error(bad: dict[str, Any]) -> None:
    with pytest.raises(UpstreamProtocolError):
        translated(chunk({"role": "assistant", "content": ""}), bad)


GOOD_CHUNKS: list[tuple[str, dict[str, Any]]] = [
    (
        "nulls for absent fields (LiteLLM's)",
        chunk({"content": "Hi", "role": None, "tool_calls": None, "refusal": None}),
    ),
    ("content null with a tool call", chunk({"content": None, "tool_calls": [{"index": 0, "id": "c", "type": None}]})),
    ("fields the gateway does not know", chunk({"content": "Hi", "reasoning_content": 3}, extra=[1])),
    ("logprobs", with_choice(logprobs={"content": [{"token": "Hi"}], "refusal": None})),
    ("no choices, usage", {**chunk(), "choices": [], "usage": {"prompt_tokens": 1}}),
    ("n=2", {**chunk(), "choices": [chunk({"content": "a"}, index=i)["choices"][0] for i in (0, 1)]}),
]


@pytest.mark.parametrize("good", [case[1] for case in GOOD_CHUNKS], ids=[case[0] for case in GOOD_CHUNKS])
def test_a_chunk_of_the_right_shape_goes_on_as_it_came(good: dict[str, Any]) -> None:
    chunks, verbatim = translated(good)
    assert chunks == [[good]] and verbatim == [True]


def completion_with(**message: Any) -> bytes:
    body = completion("Hi")
    body["choices"][0]["message"].update(message)
    return orjson.dumps(body)


BAD_COMPLETIONS: list[tuple[str, bytes]] = [
    ("content a number", completion_with(content=42)),
    ("refusal a list", completion_with(refusal=["no"])),
    ("role a number", completion_with(role=1)),
    ("tool_calls a string", completion_with(tool_calls="call")),
    ("a tool call's arguments an object", completion_with(tool_calls=[{"id": "c", "function": {"arguments": {}}}])),
    ("no message", orjson.dumps({**completion(), "choices": [{"index": 0, "finish_reason": "stop"}]})),
    ("object a chunk's", orjson.dumps({**completion(), "object": "chat.completion.chunk"})),
    ("no choices", orjson.dumps({key: value for key, value in completion().items() if key != "choices"})),
]


@pytest.mark.parametrize("payload", [case[1] for case in BAD_COMPLETIONS], ids=[case[0] for case in BAD_COMPLETIONS])
def test_a_completion_of_the_wrong_shape_is_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        OpenAIProvider(CONFIG).translate_response(payload)


def test_a_completion_of_the_right_shape_is_taken_as_it_came() -> None:
    body = completion(None, tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}])
    body["choices"][0]["message"].update(function_call=None, audio=None, annotations=[])
    assert OpenAIProvider(CONFIG).translate_response(orjson.dumps(body)) == body
