"""The Responses API <-> chat completions translation (providers.responses) and the Responses
limiter (stream.responses_limiter), as pure code: table-driven, both ways, every answer
checked against OpenAI's schemas (../shared/openai-openapi/openapi.yaml)."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from conftest import assert_event_valid, assert_spec_valid
from fakes import chunk, completion

from gateway.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from gateway.providers.responses import ResponsesStream, base_response, chat_body, response_from_completion
from gateway.stream.responses_limiter import ResponsesLimiter, limit_response
from gateway.stream.tokens import Tokenizers

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CHAT_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": WEATHER_TOOL["parameters"],
        "description": "The weather in a city",
        "strict": True,
    },
}


# ---------------------------------------------------------------- requests: Responses -> chat


@pytest.mark.parametrize(
    ("request_body", "expected"),
    [
        (
            {"model": "m", "input": "Hello", "instructions": "Be brief.", "max_output_tokens": 50, "store": True},
            {
                "model": "m",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
            },
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "developer", "content": "Answer in French."},
                    {
                        "type": "message",
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "What is this?"},
                            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                        ],
                    },
                    {"type": "reasoning", "id": "rs_1", "summary": []},
                    {
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "Let me look.", "annotations": []}],
                    },
                    {
                        "type": "function_call",
                        "call_id": "call_1",
                        "name": "get_weather",
                        "arguments": '{"city":"Paris"}',
                    },
                    {
                        "type": "function_call",
                        "call_id": "call_2",
                        "name": "get_weather",
                        "arguments": '{"city":"Oslo"}',
                    },
                    {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
                    {
                        "type": "function_call_output",
                        "call_id": "call_2",
                        "output": [{"type": "input_text", "text": "rain"}],
                    },
                ],
                "tools": [WEATHER_TOOL],
                "tool_choice": {"type": "function", "name": "get_weather"},
                "parallel_tool_calls": False,
                "temperature": 0.2,
                "top_p": 0.9,
                "user": "u-1",
                "metadata": {"team": "search"},
                "include": ["message.output_text.logprobs"],
                "text": {
                    "format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": True}
                },
                "reasoning": {"effort": "low"},
                "stream": True,
                "vendor_extension": {"kept": 1},
            },
            {
                "model": "m",
                "messages": [
                    {"role": "developer", "content": "Answer in French."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": "Let me look.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                            },
                            {
                                "id": "call_2",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                            },
                        ],
                    },
                    {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                    {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
                ],
                "tools": [CHAT_WEATHER_TOOL],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                "parallel_tool_calls": False,
                "temperature": 0.2,
                "top_p": 0.9,
                "user": "u-1",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
                },
                "reasoning_effort": "low",
                "stream": True,
                "vendor_extension": {"kept": 1},
            },
        ),
        (
            {
                "model": "m",
                "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}],
                "text": {"format": {"type": "json_object"}, "verbosity": "low"},
            },
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                    }
                ],
                "response_format": {"type": "json_object"},
                "verbosity": "low",
            },
        ),
    ],
    ids=["text", "items-tools-and-options", "json-object"],
)
def test_requests_become_chat_completions(request_body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert chat_body(request_body) == expected


@pytest.mark.parametrize(
    ("request_body", "param", "words"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id", "keeps no responses"),
        ({"conversation": "conv_1"}, "conversation", "keeps no conversations"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt", "stored prompts"),
        ({"background": True}, "background", "background mode"),
        ({"truncation": "auto"}, "truncation", "cannot drop"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type", "built-in tools"),
        ({"tools": [WEATHER_TOOL, {"type": "file_search", "vector_store_ids": []}]}, "tools[1].type", "built-in tools"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice", "auto, none, required"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0]", "store to false"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type", "chat completions"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}]},
            "input[0].content[0].image_url",
            "file ids",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "https://x"}]}]},
            "input[0].content[0]",
            "file URLs",
        ),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "user, assistant"),
        ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id", "string"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": 5}]}, "input[0].output", "string"),
        ({"input": 5}, "input", "string or an array"),
        ({"input": []}, "input", "nothing to answer"),
        ({"text": {"format": {"type": "json_schema"}}}, "text.format", "name and a schema"),
        ({"instructions": ["a"]}, "instructions", "string"),
    ],
)
def test_what_a_chat_upstream_cannot_do_is_a_400_naming_the_field(
    request_body: dict[str, Any], param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        chat_body({"model": "m", "input": "hi", **request_body})
    assert raised.value.param == param and words in raised.value.message


# ---------------------------------------------------------------- answers: chat -> Responses

BASE_REQUEST = {"model": "m", "input": "hi", "tools": [WEATHER_TOOL], "metadata": {"a": "b"}, "temperature": 0.5}
USAGE = {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27, "prompt_tokens_details": {"cached_tokens": 4}}
CALL = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}


def base() -> dict[str, Any]:
    return base_response(BASE_REQUEST, model="gpt-4o-mini", max_output_tokens=100)


@pytest.mark.parametrize(
    ("answer", "status", "reason", "output"),
    [
        (completion("Hello there!", usage=USAGE), "completed", None, [("message", "Hello there!")]),
        (
            completion("Hel", finish_reason="length", usage=USAGE),
            "incomplete",
            "max_output_tokens",
            [("message", "Hel")],
        ),
        (
            completion("", finish_reason="content_filter", usage=USAGE),
            "incomplete",
            "content_filter",
            [("message", "")],
        ),
        (
            completion(None, finish_reason="tool_calls", tool_calls=[CALL], usage=USAGE),
            "completed",
            None,
            [("function_call", '{"city":"Paris"}')],
        ),
        (
            completion("Checking.", finish_reason="tool_calls", tool_calls=[CALL], usage=USAGE),
            "completed",
            None,
            [("message", "Checking."), ("function_call", '{"city":"Paris"}')],
        ),
    ],
    ids=["text", "cut", "filtered", "tool-call", "text-and-tool-call"],
)
def test_completions_become_responses(
    answer: dict[str, Any], status: str, reason: str | None, output: list[tuple[str, str]]
) -> None:
    response = response_from_completion(answer, base())
    assert_spec_valid("Response", response)
    assert response["status"] == status and response["object"] == "response"
    assert response["incomplete_details"] == ({"reason": reason} if reason else None)
    assert [(item["type"], texts_of(item)) for item in response["output"]] == output
    assert response["usage"] == {
        "input_tokens": 20,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 27,
    }
    assert response["store"] is False and response["metadata"] == {"a": "b"} and response["temperature"] == 0.5
    assert response["tools"] == [WEATHER_TOOL] and response["model"] == "gpt-4o-mini"
    if any(kind == "function_call" for kind, _ in output):
        call = response["output"][-1]
        assert (call["call_id"], call["name"], call["status"]) == ("call_9", "get_weather", "completed")


@pytest.mark.parametrize(
    ("request_fields", "echoed"),
    [
        (
            {"tools": [{"type": "function", "name": "f"}]},
            {"tools": [{"type": "function", "name": "f", "parameters": None, "strict": None}]},
        ),
        (
            {"tools": [{"type": "function", "name": "f", "parameters": "x", "strict": "yes", "extra": 1}]},
            {"tools": [{"type": "function", "name": "f", "parameters": None, "strict": None}]},
        ),
        ({"temperature": "hot", "top_p": True}, {"temperature": 1.0, "top_p": 1.0}),
        ({"temperature": None, "top_p": 0}, {"temperature": None, "top_p": 0}),
        ({"metadata": {"a": 1}}, {"metadata": {}}),
        ({"text": {"format": None, "verbosity": "loud"}}, {"text": {"format": {"type": "text"}}}),
        ({"text": {"verbosity": None}}, {"text": {"format": {"type": "text"}, "verbosity": None}}),
    ],
    ids=[
        "tool-without-parameters-or-strict",
        "tool-with-bad-ones",
        "bad-numbers",
        "null-and-zero",
        "bad-metadata",
        "bad-text",
        "null-verbosity",
    ],
)
def test_a_translated_response_echoes_only_what_a_response_may_hold(
    request_fields: dict[str, Any], echoed: dict[str, Any]
) -> None:
    """What the translation did not read went upstream unchecked (a lenient upstream, the mock,
    takes it): the Response echoes it only where OpenAI's Response schema allows it."""
    response = response_from_completion(
        completion("Hi", usage=USAGE),
        base_response({"model": "m", "input": "hi", **request_fields}, model="m", max_output_tokens=16),
    )
    assert_spec_valid("Response", response)
    assert {field: response[field] for field in echoed} == echoed


def texts_of(item: dict[str, Any]) -> str:
    if item["type"] == "function_call":
        return item["arguments"]
    return "".join(part.get("text", "") for part in item["content"])


def stream_of(chunks: list[dict[str, Any]], usage: dict[str, Any]) -> list[dict[str, Any]]:
    translator = ResponsesStream(base())
    encoded = [data for item in chunks for data in translator.add(copy.deepcopy(item))] + translator.end(usage)
    return [decode(data) for data in encoded]


def decode(data: bytes) -> dict[str, Any]:
    head, _, body = data.partition(b"\ndata: ")
    event = orjson.loads(body)
    assert head == b"event: " + event["type"].encode() and data.endswith(b"\n\n")
    return event


TOOL_STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Checking"}),
    chunk({"content": " now."}),
    chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({}, finish_reason="tool_calls"),
]


def test_a_streamed_answer_is_the_responses_event_sequence_and_ends_as_the_whole_answer_would() -> None:
    events = stream_of(TOOL_STREAM, USAGE)
    for event in events:
        assert_event_valid(event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    done = {event["type"]: event for event in events}
    assert done["response.output_text.done"]["text"] == "Checking now."
    assert done["response.function_call_arguments.done"]["arguments"] == '{"city":"Paris"}'
    assert done["response.function_call_arguments.done"]["name"] == "get_weather"
    whole = response_from_completion(
        completion("Checking now.", finish_reason="tool_calls", tool_calls=[CALL], usage=USAGE), base()
    )
    final = done["response.completed"]["response"]
    assert without_ids(final["output"]) == without_ids(whole["output"])
    assert final["usage"] == whole["usage"] and final["status"] == "completed"


def without_ids(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in item.items() if key != "id"} for item in output]


def test_a_stream_cut_for_length_ends_incomplete_and_a_refusal_is_its_own_part() -> None:
    events = stream_of(
        [chunk({"role": "assistant", "content": ""}), chunk({"refusal": "I can't"}), chunk({}, finish_reason="length")],
        {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    )
    for event in events:
        assert_event_valid(event)
    kinds = [event["type"] for event in events]
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["status"] == "incomplete"
    assert last["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't"}]


def test_an_empty_stream_still_starts_and_ends_the_response() -> None:
    events = stream_of([], {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3})
    assert [event["type"] for event in events] == ["response.created", "response.in_progress", "response.completed"]


# ---------------------------------------------------------------- the limiter of native Responses


def native_events(pieces: list[str]) -> list[dict[str, Any]]:
    """What an upstream that serves the Responses API streams: a message, written piece by piece."""
    response = {**base(), "status": "in_progress"}
    item = {"id": "msg_up", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": response},
        {"type": "response.in_progress", "response": response},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            "item_id": "msg_up",
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
    ]
    where = {"item_id": "msg_up", "output_index": 0, "content_index": 0}
    events += [{"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []} for piece in pieces]
    text = "".join(pieces)
    final_part = {**part, "text": text}
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": final_part},
        {
            "type": "response.output_item.done",
            "output_index": 0,
            "item": {**item, "status": "completed", "content": [final_part]},
        },
    ]
    usage = {"prompt_tokens": 9, "completion_tokens": 40, "total_tokens": 49}
    from gateway.stream.responses_state import responses_usage

    done = {**response, "status": "completed", "output": [events[-1]["item"]], "usage": responses_usage(usage)}
    events.append({"type": "response.completed", "response": done})
    return [{**event, "sequence_number": number} for number, event in enumerate(events)]


PIECES = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog."]


def test_the_native_limiter_passes_an_answer_within_its_budget_unchanged(tokenizers: Tokenizers) -> None:
    limiter = ResponsesLimiter(max_tokens=100, counter=tokenizers.for_model("gpt-4o"), prompt_tokens=lambda: 9)
    events = native_events(PIECES)
    passed = [limiter.limit(copy.deepcopy(event)) for event in events]
    assert passed == events and not limiter.truncated and limiter.all_finished
    assert limiter.end(limiter.usage()) == []
    assert limiter.usage()["completion_tokens"] == 40  # the upstream's own figures


def test_the_native_limiter_cuts_the_delta_that_crosses_and_closes_the_response(tokenizers: Tokenizers) -> None:
    counter = tokenizers.for_model("gpt-4o")
    limiter = ResponsesLimiter(max_tokens=4, counter=counter, prompt_tokens=lambda: 9)
    passed = []
    for event in native_events(["The quick", " brown fox jumps", " over"]):
        limited = limiter.limit(copy.deepcopy(event))
        if limited is not None:
            passed.append(limited)
        if limiter.done:
            break
    closing = [decode(data) for data in limiter.end(limiter.usage())]
    events = passed + closing
    for event in events:
        assert_event_valid(event)
    deltas = "".join(event["delta"] for event in events if event["type"] == "response.output_text.delta")
    assert deltas == "The quick brown fox" and counter.count(deltas) == 4
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert last["response"]["output"][0]["content"][0]["text"] == deltas
    assert last["response"]["usage"]["output_tokens"] == 4 and last["response"]["usage"]["input_tokens"] == 9


def test_a_whole_native_response_is_cut_the_same_way(tokenizers: Tokenizers) -> None:
    counter = tokenizers.for_model("gpt-4o")
    response = native_events(PIECES)[-1]["response"]
    response["output"].append(
        {"id": "fc_1", "type": "function_call", "status": "completed", "call_id": "c", "name": "f", "arguments": "{}"}
    )
    untouched = copy.deepcopy(response)
    assert limit_response(untouched, max_tokens=100, counter=counter, prompt_tokens=lambda: 9) == (False, False)
    truncated, changed = limit_response(response, max_tokens=3, counter=counter, prompt_tokens=lambda: 9)
    assert truncated and changed
    assert_spec_valid("Response", response)
    assert response["status"] == "incomplete" and response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert [item["type"] for item in response["output"]] == ["message"]  # the function call came after the cut
    assert response["output"][0]["content"][0]["text"] == "The quick brown"
    assert response["output"][0]["status"] == "incomplete"
    assert response["usage"]["output_tokens"] == 3 and response["usage"]["input_tokens"] == 9


def test_an_upstream_error_event_is_raised_redacted() -> None:
    from gateway.config import ProviderConfig
    from gateway.providers.openai import OpenAIProvider
    from gateway.stream.sse import SSEEvent

    provider = OpenAIProvider(
        ProviderConfig(name="up", kind="openai", base_url="http://x", api_key="sk-secret-0123456789")
    )
    events = provider.responses_events()
    with pytest.raises(UpstreamStatusError) as raised:
        events.translate(
            SSEEvent(
                orjson.dumps(
                    {
                        "type": "error",
                        "code": "rate_limit_exceeded",
                        "message": "slow down sk-secret-0123456789",
                        "sequence_number": 3,
                    }
                )
            )
        )
    assert raised.value.status == 429 and "sk-secret" not in raised.value.message
    failed = {"type": "response.failed", "response": {"error": {"code": "server_error", "message": "boom"}}}
    with pytest.raises(UpstreamStatusError) as raised:
        events.translate(SSEEvent(orjson.dumps(failed)))
    assert raised.value.status == 500
    with pytest.raises(UpstreamProtocolError):
        events.translate(SSEEvent(b'{"no": "type"}'))
