"""Every chunk a client gets is a chunk: each event of realistic streams, through the gateway,
validates against OpenAI's CreateChatCompletionStreamResponse."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
import test_anthropic_e2e as claude
import test_azure as azure
from conftest import Gateway, GatewayFactory, Upstream, assert_valid, exact_tokenizers
from fakes import chunk, logprob_stream, sse_handler, text_stream

from gateway.upstream.mock import reply_tokens

MESSAGES = [{"role": "user", "content": "Tell me a story"}]
STORY = "Once upon a time, a gateway cut every stream at exactly the right token, and nobody noticed."
WORDS = [f" word{i}" for i in range(40)]
USAGE = {"stream_options": {"include_usage": True}}
AZURE_LATE_ANNOTATION = {  # Azure's asynchronous filter, after the finish: no identity, no delta
    "choices": [
        {
            "index": 0,
            "finish_reason": None,
            "content_filter_results": azure.FILTERS,
            "content_filter_offsets": {"check_offset": 4, "start_offset": 0, "end_offset": 7},
        }
    ],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "usage": None,
}


def tool_call_events() -> list[dict[str, Any]]:
    arguments = '{"query": "weather in Paris", "days": 3}'
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "search", "arguments": ""}}
    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        *(
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 5]}}]})
            for i in range(0, len(arguments), 5)
        ),
        chunk({}, finish_reason="tool_calls"),
    ]


def story_groups() -> list[list[str]]:
    tokens = reply_tokens(exact_tokenizers().for_model("gpt-4o-mini"), STORY)
    return [tokens[i : i + 2] for i in range(0, len(tokens), 2)]


def anthropic_events() -> list[dict[str, Any]]:
    thinking = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "c2ln"}},
        {"type": "content_block_stop", "index": 0},
    ]
    return [
        claude.message_start(),
        *thinking,
        *claude.text_block(1, ["Let me ", "check", "."]),
        *claude.tool_block(2, "toolu_1", "get_weather", ["", '{"city": ', '"Paris"}']),
        *claude.tool_block(3, "toolu_2", "now", [""]),
        *claude.ending("tool_use", 30),
    ]


CASES: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("openai text, usage", "test-model", lambda: sse_handler(text_stream(["Hel", "lo"], usage=(9, 2))), USAGE),
    ("openai text, no usage asked", "test-model", lambda: sse_handler(text_stream(["Hi"], usage=(9, 1))), {}),
    ("openai logprobs", "test-model", lambda: sse_handler(logprob_stream(story_groups())), {"logprobs": True}),
    ("openai tool calls", "test-model", lambda: sse_handler(tool_call_events()), USAGE),
    (
        "openai n=2",
        "test-model",
        lambda: sse_handler(text_stream(WORDS[:5], choices=2, usage=(9, 10))),
        {"n": 2, **USAGE},
    ),
    ("openai cut", "test-model", lambda: sse_handler(text_stream(WORDS, usage=(9, 80))), {"max_tokens": 5, **USAGE}),
    (
        "openai cut, logprobs",
        "test-model",
        lambda: sse_handler(logprob_stream(story_groups())),
        {"max_tokens": 5, **USAGE},
    ),
    (
        "openai n=2 cut",
        "test-model",
        lambda: sse_handler(text_stream(WORDS, choices=2)),
        {"n": 2, "max_tokens": 3, **USAGE},
    ),
    ("openai cut tool call", "test-model", lambda: sse_handler(tool_call_events()), {"max_tokens": 4}),
    (
        "azure, prompt filter and late annotation",
        "gpt-4o",
        lambda: azure.azure_stream([*azure.azure_text_stream(["Bon", "jour"]), AZURE_LATE_ANNOTATION]),
        USAGE,
    ),
    ("azure tool calls", "gpt-4o", lambda: azure.azure_stream(azure.TOOL_STREAM), USAGE),
    ("azure cut", "gpt-4o", lambda: azure.azure_stream(azure.azure_text_stream(WORDS)), {"max_tokens": 3, **USAGE}),
    ("anthropic thinking, text, tools", "claude", lambda: claude.stream_handler(anthropic_events()), USAGE),
    ("anthropic, no usage asked", "claude", lambda: claude.stream_handler(anthropic_events()), {}),
    (
        "anthropic cut",
        "claude",
        lambda: claude.stream_handler(claude.text_stream(WORDS, output_tokens=80)),
        {"max_tokens": 4, **USAGE},
    ),
]


@pytest.fixture
async def every_kind(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    """`test-model` to an OpenAI-compatible upstream, `gpt-4o` to Azure, `claude` to Anthropic: all the fake."""
    tree = azure.azure_tree(upstream.url)
    tree["providers"]["up"] = {"kind": "openai", "base_url": f"{upstream.url}/v1", "api_key": "sk-upstream-key"}
    tree["providers"]["claude"] = {"kind": "anthropic", "base_url": upstream.url, "api_key": claude.API_KEY}
    tree["routes"] += [
        {"model": "test-model", "provider": "up"},
        {"model": "claude", "provider": "claude", "upstream_model": claude.MODEL},
    ]
    return await gateway_factory(tree)


@pytest.mark.parametrize(("model", "handler", "options"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
async def test_every_chunk_validates_against_openais_schema(
    upstream: Upstream, every_kind: Gateway, model: str, handler: Any, options: dict[str, Any]
) -> None:
    upstream.handler = handler()
    body = {"model": model, "messages": MESSAGES, "stream": True, **options}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{every_kind.url}/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            raw = await response.read()
    events = [event for event in raw.split(b"\n\n") if event]
    assert events[-1] == b"data: [DONE]" and len(events) > 2
    for event in events[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        chunk_sent = orjson.loads(event[6:])
        assert "error" not in chunk_sent, chunk_sent
        assert_valid("CreateChatCompletionStreamResponse", chunk_sent)
