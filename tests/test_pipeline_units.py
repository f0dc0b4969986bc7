"""pipeline.exchange and pipeline.chunks over the real transport, with aioresponses answering:
whole completions cut or passed on, streams turned into the client's SSE bytes, and the
errors of each. No sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from fakes import chunk, completion, sse_bytes, text_stream, usage_chunk
from mocked import MockedUpstreams

from gateway.config import Limits, ProviderConfig, UpstreamConfig
from gateway.errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTooLarge
from gateway.pipeline.chunks import stream_chunks
from gateway.pipeline.clock import Clock
from gateway.pipeline.exchange import Completed, complete, open_stream
from gateway.providers import UpstreamCall, create_provider
from gateway.stream.limiter import StreamLimiter
from gateway.stream.sse import DONE, SSEDecoder
from gateway.stream.tokens import TokenCounter, Tokenizers
from gateway.upstream.client import UpstreamClient

OPENAI = ProviderConfig(name="up", kind="openai", base_url="https://up.test/v1", api_key="sk-upstream-secret-0123")
ANTHROPIC = ProviderConfig(name="claude", kind="anthropic", base_url="https://claude.test", api_key="sk-ant-0123456789")
URLS = {"openai": "https://up.test/v1/chat/completions", "anthropic": "https://claude.test/v1/messages"}
CONFIGS = {"openai": OPENAI, "anthropic": ANTHROPIC}
MESSAGES = [{"role": "user", "content": "Say hello."}]
PROMPT_TOKENS = 9  # what the gateway counts for the prompt when the upstream gives no usage
TEXT = "Hello there! How are you today?"  # 8 tokens in o200k_base: Hello| there|!| How| are| you| today|?


@pytest.fixture
def upstreams() -> Iterator[MockedUpstreams]:
    with MockedUpstreams() as mocked:
        yield mocked


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient(UpstreamConfig())
    yield upstream_client
    await upstream_client.aclose()


@pytest.fixture
def counter(tokenizers: Tokenizers) -> TokenCounter:
    return tokenizers.for_model("gpt-4o-mini")


def new_clock(**limits: Any) -> Clock:
    loop = asyncio.get_running_loop()
    return Clock(Limits(**limits), loop.time(), loop.time)


def new_call(max_tokens: int, *, stream: bool) -> UpstreamCall:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": stream}
    return UpstreamCall(body=body, model="gpt-4o-mini", max_tokens=max_tokens, stream=stream, request_id="req-1")


async def complete_through(
    client: UpstreamClient, kind: str, counter: TokenCounter, *, max_tokens: int = 100, **limits: Any
) -> Completed:
    config = CONFIGS[kind]
    return await complete(
        create_provider(config),
        client.for_provider(config),
        new_call(max_tokens, stream=False),
        new_clock(**limits),
        counter=counter,
        prompt_tokens=lambda: PROMPT_TOKENS,
    )


async def stream_through(
    client: UpstreamClient,
    kind: str,
    counter: TokenCounter,
    received: list[bytes],
    *,
    max_tokens: int = 100,
    include_usage: bool = False,
    **limits: Any,
) -> None:
    """Open the stream and put each piece of the client's bytes into `received`, as they come."""
    config = CONFIGS[kind]
    provider = create_provider(config)
    clock = new_clock(**limits)
    upstream = await open_stream(provider, client.for_provider(config), new_call(max_tokens, stream=True), clock)
    limiter = StreamLimiter(max_tokens=max_tokens, counter=counter, choices=1, prompt_tokens=lambda: PROMPT_TOKENS)
    try:
        async for piece in stream_chunks(upstream, provider, limiter, clock, include_usage=include_usage):
            received.append(piece)
    finally:
        upstream.close()


def events_of(data: bytes) -> list[Any]:
    """The client's SSE bytes as JSON values, [DONE] as the string "[DONE]"."""
    decoder = SSEDecoder()
    events = decoder.decode(data) + decoder.flush()
    return [event.data.decode() if event.data == b"[DONE]" else orjson.loads(event.data) for event in events]


# ---------------------------------------------------------------- complete()

# A completion as an upstream writes it (spaces, its own key order): bytes orjson would not reproduce.
RECORDED = (
    b'{\n  "id": "chatcmpl-rec",\n  "object": "chat.completion",\n  "created": 1700000000,\n'
    b'  "model": "gpt-4o-mini",\n  "choices": [{"index": 0, "message": {"role": "assistant", "content": '
    b'"Hello there! How are you today?", "refusal": null}, "logprobs": null, "finish_reason": "stop"}],\n'
    b'  "usage": {"prompt_tokens": 11, "completion_tokens": 8, "total_tokens": 19}\n}\n'
)
ANTHROPIC_MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5",
    "content": [{"type": "text", "text": TEXT}],
    "stop_reason": "end_turn",
    "usage": {"input_tokens": 12, "output_tokens": 8},
}


@pytest.mark.parametrize(
    ("kind", "body", "max_tokens", "content", "finish_reason", "usage"),
    [
        pytest.param("openai", RECORDED, 8, TEXT, "stop", (11, 8, 19), id="openai: within the limit"),
        pytest.param("openai", RECORDED, 3, "Hello there!", "length", (11, 3, 14), id="openai: cut to 3"),
        pytest.param(
            "openai",
            orjson.dumps(completion(TEXT)),  # no usage
            100,
            TEXT,
            "stop",
            (PROMPT_TOKENS, 8, PROMPT_TOKENS + 8),
            id="openai: no usage, the gateway counts it",
        ),
        pytest.param("anthropic", orjson.dumps(ANTHROPIC_MESSAGE), 100, TEXT, "stop", (12, 8, 20), id="anthropic"),
        pytest.param(
            "anthropic", orjson.dumps(ANTHROPIC_MESSAGE), 1, "Hello", "length", (12, 1, 13), id="anthropic: cut to 1"
        ),
    ],
)
async def test_a_completion_is_cut_to_max_tokens_and_its_usage_made_true(
    client: UpstreamClient,
    upstreams: MockedUpstreams,
    counter: TokenCounter,
    kind: str,
    body: bytes,
    max_tokens: int,
    content: str,
    finish_reason: str,
    usage: tuple[int, int, int],
) -> None:
    """A whole completion over max_tokens is cut at a token boundary with finish_reason "length" and
    usage recounted (the upstream's prompt figure kept); one within it keeps content, reason and usage."""
    upstreams.post(URLS[kind], body=body)
    completed = await complete_through(client, kind, counter, max_tokens=max_tokens)
    sent = orjson.loads(completed.body)
    [choice] = sent["choices"]
    assert (choice["message"]["content"], choice["finish_reason"]) == (content, finish_reason)
    figures = sent["usage"]
    assert (figures["prompt_tokens"], figures["completion_tokens"], figures["total_tokens"]) == usage
    assert completed.usage == figures and completed.truncated == (finish_reason == "length")


async def test_a_completion_nothing_was_cut_from_goes_out_byte_for_byte(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """An OpenAI completion within max_tokens, with usage, is sent on as the upstream's own bytes."""
    upstreams.post(URLS["openai"], body=RECORDED)
    completed = await complete_through(client, "openai", counter, max_tokens=8)
    assert completed.body == RECORDED and not completed.truncated


@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "no content-length"])
async def test_a_completion_over_max_response_bytes_is_too_large(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter, content_length: bool
) -> None:
    """A body over limits.max_response_bytes is UpstreamTooLarge, whether its length was announced or not."""
    headers = {"Content-Length": str(len(RECORDED))} if content_length else {}
    upstreams.post(URLS["openai"], body=RECORDED, headers=headers)
    with pytest.raises(UpstreamTooLarge) as raised:
        await complete_through(client, "openai", counter, max_response_bytes=len(RECORDED) - 1)
    assert "limits.max_response_bytes" in raised.value.message


async def test_a_completion_at_exactly_max_response_bytes_is_read(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """The limit is inclusive: a body of exactly max_response_bytes is answered."""
    upstreams.post(URLS["openai"], body=RECORDED, headers={"Content-Length": str(len(RECORDED))})
    completed = await complete_through(client, "openai", counter, max_response_bytes=len(RECORDED))
    assert completed.body == RECORDED


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "open_stream"])
@pytest.mark.parametrize(
    ("kind", "status", "body", "message", "retry_after"),
    [
        pytest.param(
            "openai",
            429,
            {"error": {"message": "slow down sk-upstream-secret-0123"}},
            "slow down [redacted]",
            3.0,
            id="openai 429, key redacted",
        ),
        pytest.param(
            "openai",
            400,
            {"error": {"message": "bad 'messages'", "param": "messages"}},
            "bad 'messages'",
            None,
            id="openai 400",
        ),
        pytest.param(
            "anthropic",
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
            "Overloaded",
            3.0,
            id="anthropic 529",
        ),
    ],
)
async def test_an_error_status_raises_the_adapters_mapped_error(
    client: UpstreamClient,
    upstreams: MockedUpstreams,
    counter: TokenCounter,
    stream: bool,
    kind: str,
    status: int,
    body: dict[str, Any],
    message: str,
    retry_after: float | None,
) -> None:
    """An upstream's error status, streamed or not, is raised as the adapter's UpstreamStatusError with its
    status, message (redacted) and retry-after."""
    upstreams.post(
        URLS[kind], status=status, body=orjson.dumps(body), headers={"retry-after": "3"} if retry_after else {}
    )
    with pytest.raises(UpstreamStatusError) as raised:
        if stream:
            await stream_through(client, kind, counter, [])
        else:
            await complete_through(client, kind, counter)
    assert (raised.value.status, raised.value.message, raised.value.retry_after) == (status, message, retry_after)


# ---------------------------------------------------------------- streams

HELLO = text_stream(["Hello", " there"])  # role, two content chunks, finish "stop"
HELLO_USAGE = text_stream(["Hello", " there"], usage=(11, 2))  # and the upstream's usage chunk
CUT = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": ""}, finish_reason="length"),
]


def sse(events: list[dict[str, Any]], *, done: bool = True) -> bytes:
    return b"".join(sse_bytes(events, done=done))


@pytest.mark.parametrize(
    ("upstream", "max_tokens", "include_usage", "expected"),
    [
        pytest.param(sse(HELLO_USAGE), 100, False, sse(HELLO), id="the upstream's usage chunk is not asked for"),
        pytest.param(sse(HELLO_USAGE), 100, True, sse(HELLO_USAGE), id="include_usage: the upstream's figures"),
        pytest.param(sse(HELLO), 100, True, sse([*HELLO, usage_chunk(PROMPT_TOKENS, 2)]), id="include_usage: counted"),
        pytest.param(sse(HELLO, done=False), 100, False, sse(HELLO), id="a finished answer without [DONE]"),
        pytest.param(sse(HELLO_USAGE), 1, False, sse(CUT), id="cut to 1 token"),
        pytest.param(
            sse(HELLO_USAGE), 1, True, sse([*CUT, usage_chunk(PROMPT_TOKENS, 1)]), id="cut to 1 token, usage counted"
        ),
    ],
)
async def test_an_openai_stream_becomes_the_clients_sse_bytes_ending_with_done(
    client: UpstreamClient,
    upstreams: MockedUpstreams,
    counter: TokenCounter,
    upstream: bytes,
    max_tokens: int,
    include_usage: bool,
    expected: bytes,
) -> None:
    """A recorded OpenAI stream reaches the client as its own chunks, cut where max_tokens says, with the
    usage chunk only when asked for, and always ends with data: [DONE]."""
    upstreams.post(URLS["openai"], body=upstream, content_type="text/event-stream")
    received: list[bytes] = []
    await stream_through(client, "openai", counter, received, max_tokens=max_tokens, include_usage=include_usage)
    assert b"".join(received) == expected
    assert received[-1].endswith(DONE)


ANTHROPIC_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "claude-sonnet-4-5", "usage": {"input_tokens": 12, "output_tokens": 1}},
    },
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " there"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop"},
]
ANTHROPIC_STREAM = b"".join(
    b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event)) for event in ANTHROPIC_EVENTS
)


async def test_an_anthropic_stream_becomes_openai_chunks_ending_with_done(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """A recorded Anthropic stream reaches the client as chat.completion.chunks, the usage chunk (from
    Anthropic's figures) last before [DONE]."""
    upstreams.post(URLS["anthropic"], body=ANTHROPIC_STREAM, content_type="text/event-stream")
    received: list[bytes] = []
    await stream_through(client, "anthropic", counter, received, include_usage=True)
    *chunks, usage, done = events_of(b"".join(received))
    assert done == "[DONE]"
    assert all(item["object"] == "chat.completion.chunk" and item["id"] == "chatcmpl-msg_1" for item in chunks)
    deltas = [item["choices"][0]["delta"] for item in chunks]
    assert deltas == [
        {"role": "assistant", "content": None},
        {"content": "Hello"},
        {"content": " there"},
        {},
    ]  # content opens null: an answer of tool calls only stays null
    assert [item["choices"][0]["finish_reason"] for item in chunks] == [None, None, None, "stop"]
    assert not any("usage" in item for item in chunks)
    assert usage["choices"] == [] and usage["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 2,
        "total_tokens": 14,
    }


@pytest.mark.parametrize(
    ("upstream", "delivered"),
    [
        pytest.param(sse(HELLO[:-1], done=False), sse(HELLO[:-1], done=False), id="after whole events"),
        pytest.param(
            sse(HELLO[:-1], done=False) + sse(HELLO[-1:], done=False)[:40],
            sse(HELLO[:-1], done=False),
            id="in the middle of an event",
        ),
        pytest.param(
            sse(HELLO[:-1], done=False) + b"data: " + orjson.dumps(chunk({"content": "!"})) + b"\n",
            sse([*HELLO[:-1], chunk({"content": "!"})], done=False),
            id="after a last event with no blank line",
        ),
        pytest.param(sse([], done=False), b"", id="before any event"),
    ],
)
async def test_a_stream_ended_before_its_finish_is_a_protocol_error_after_the_good_chunks(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter, upstream: bytes, delivered: bytes
) -> None:
    """A stream that ends before its finish_reason delivers its whole events, then raises UpstreamProtocolError
    (never half an event, never [DONE])."""
    upstreams.post(URLS["openai"], body=upstream, content_type="text/event-stream")
    received: list[bytes] = []
    with pytest.raises(UpstreamProtocolError) as raised:
        await stream_through(client, "openai", counter, received)
    assert type(raised.value) is UpstreamProtocolError
    assert b"".join(received) == delivered


async def test_an_event_over_max_event_bytes_is_too_large(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """An upstream event over limits.max_event_bytes ends the stream with UpstreamTooLarge, none of it sent."""
    huge = chunk({"content": "x" * 2000})
    upstreams.post(URLS["openai"], body=sse([huge]), content_type="text/event-stream")
    received: list[bytes] = []
    with pytest.raises(UpstreamTooLarge) as raised:
        await stream_through(client, "openai", counter, received, max_event_bytes=1024)
    assert "limits.max_event_bytes" in raised.value.message
    assert received == []


async def test_whole_events_before_an_oversized_one_in_the_same_read_still_go_out(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """The chunks that came whole before an event over max_event_bytes reach the client before the error."""
    good = HELLO[:2]
    upstreams.post(URLS["openai"], body=sse([*good, chunk({"content": "x" * 2000})]), content_type="text/event-stream")
    received: list[bytes] = []
    with pytest.raises(UpstreamTooLarge):
        await stream_through(client, "openai", counter, received, max_event_bytes=1024)
    assert b"".join(received) == sse(good, done=False)


async def test_an_error_event_mid_stream_follows_the_good_chunks(
    client: UpstreamClient, upstreams: MockedUpstreams, counter: TokenCounter
) -> None:
    """An upstream's error event after good chunks raises its mapped error (status, message) after them."""
    error = {"error": {"message": "overloaded", "type": "server_error", "status": 503}}
    upstreams.post(URLS["openai"], body=sse([*HELLO[:2], error], done=False), content_type="text/event-stream")
    received: list[bytes] = []
    with pytest.raises(UpstreamError) as raised:
        await stream_through(client, "openai", counter, received)
    assert isinstance(raised.value, UpstreamStatusError)
    assert (raised.value.status, raised.value.message) == (503, "overloaded")
    assert b"".join(received) == sse(HELLO[:2], done=False)
