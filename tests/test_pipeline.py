"""The pipeline's reads from the upstream: what waits, for how long, and what does not; what is held back."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from fakes import chunk

from gateway.config import Limits, ProviderConfig
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.pipeline.chunks import HOLD_BACK_BYTES, stream_chunks, timed_read
from gateway.pipeline.clock import Clock
from gateway.providers import Provider, create_provider
from gateway.stream.limiter import StreamLimiter
from gateway.stream.tokens import Tokenizers


class BufferedResponse:
    """An upstream body that has `ready` bytes received; a read that waits hangs forever."""

    status = 200

    def __init__(self, ready: bytes | None) -> None:
        self.headers: dict[str, str] = {}
        self.ready = ready

    def read_ready(self) -> bytes | None:
        return self.ready

    async def read_chunk(self) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def release(self) -> None: ...

    def close(self) -> None: ...


def clock_started(seconds_ago: float, **limits: float) -> Clock:
    loop = asyncio.get_running_loop()
    return Clock(Limits(**limits), loop.time() - seconds_ago, loop.time)


async def test_bytes_already_received_are_read_without_waiting() -> None:
    clock = clock_started(0.0, first_token_timeout=0.05)
    assert await timed_read(BufferedResponse(b"data: x\n\n"), clock) == b"data: x\n\n"
    assert await timed_read(BufferedResponse(b""), clock) == b""  # the body's end, already seen


async def test_a_read_that_waits_is_bounded_by_the_nearest_limit() -> None:
    clock = clock_started(0.0, first_token_timeout=0.05)
    with pytest.raises(UpstreamTimeout) as raised:
        await timed_read(BufferedResponse(None), clock)
    assert raised.value.kind == "first_token"


async def test_bytes_already_received_past_the_total_limit_end_the_stream() -> None:
    """An upstream that never lets a read wait is still held to the total limit."""
    clock = clock_started(2.0, timeout=1.0)
    with pytest.raises(UpstreamTimeout) as raised:
        await timed_read(BufferedResponse(b"data: x\n\n"), clock)
    assert raised.value.kind == "total"


# ---------------------------------------------------------------- holding back what comes before the answer


class ScriptedResponse(BufferedResponse):
    """An upstream body that arrives in the given reads, one at a time, then ends."""

    def __init__(self, reads: list[bytes]) -> None:
        super().__init__(None)
        self.reads = [*reads, b""]

    def read_ready(self) -> bytes | None:
        return self.reads.pop(0) if self.reads else b""


def event(data: dict, name: str | None = None) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + b"data: " + orjson.dumps(data) + b"\n\n"


ROLE = event(chunk({"role": "assistant", "content": ""}))
HI = event(chunk({"content": "Hi"}))
FINISH = event(chunk({}, finish_reason="stop"))
FILTER_RESULTS = event({**chunk(), "choices": [], "prompt_filter_results": [{"prompt_index": 0}]})  # Azure's first
ERROR = event({"error": {"message": "overloaded", "type": "server_error", "status": 503}})
MESSAGE_START = event(
    {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3}}},
    "message_start",
)
PING = event({"type": "ping"}, "ping")
OVERLOADED = event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")


def provider_of(kind: str) -> Provider:
    return create_provider(ProviderConfig(name=kind, kind=kind, base_url="http://upstream.invalid", api_key="k"))


async def run_stream(kind: str, reads: list[bytes], tokenizers: Tokenizers) -> tuple[list[list[dict]], str | None]:
    """The pieces the pipeline yields, each as its chunks, and the code of the error it ended with."""
    counter = tokenizers.for_model("gpt-4o")
    limiter = StreamLimiter(max_tokens=100, counter=counter, choices=1, prompt_tokens=lambda: 1)
    chunks = stream_chunks(ScriptedResponse(reads), provider_of(kind), limiter, clock_started(0.0), include_usage=False)
    pieces: list[list[dict]] = []
    try:
        async for piece in chunks:
            pieces.append([orjson.loads(data[6:]) for data in piece.split(b"\n\n") if data and data != b"data: [DONE]"])
    except UpstreamError as exc:
        return pieces, exc.code or exc.type
    return pieces, None


def delta_of(piece: list[dict]) -> list[dict]:
    return [choice["delta"] for item in piece for choice in item["choices"]]


@pytest.mark.parametrize(
    ("kind", "reads", "error"),
    [
        ("openai", [ROLE, ERROR], "server_error"),  # a role chunk, then an error event
        ("openai", [ROLE], "upstream_protocol_error"),  # a role chunk, then the connection ends
        ("openai", [FILTER_RESULTS, ROLE, ERROR], "server_error"),
        ("anthropic", [MESSAGE_START, PING, OVERLOADED], "overloaded_error"),
        ("anthropic", [MESSAGE_START + PING + OVERLOADED], "overloaded_error"),  # all in one read
    ],
)
async def test_an_error_before_the_answer_began_yields_nothing(
    kind: str, reads: list[bytes], error: str, tokenizers: Tokenizers
) -> None:
    """Nothing has gone to the client: the attempt failed, and dispatch may try another."""
    assert await run_stream(kind, reads, tokenizers) == ([], error)


TOOL_CALL = {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f"}}]}


@pytest.mark.parametrize(
    ("reads", "first"),
    [
        ([ROLE, HI, FINISH], [{"role": "assistant", "content": ""}, {"content": "Hi"}]),
        ([FILTER_RESULTS, ROLE, HI, FINISH], [{"role": "assistant", "content": ""}, {"content": "Hi"}]),
        ([ROLE, FINISH], [{"role": "assistant", "content": ""}, {}]),  # a finish reason begins it too
        ([ROLE, event(chunk(TOOL_CALL)), FINISH], [{"role": "assistant", "content": ""}, TOOL_CALL]),
        ([ROLE, event(chunk({"refusal": "No."})), FINISH], [{"role": "assistant", "content": ""}, {"refusal": "No."}]),
        (  # what else an upstream streams before its content (vLLM's and DeepSeek's reasoning) is the answer too
            [ROLE, event(chunk({"reasoning_content": "Hm."})), FINISH],
            [{"role": "assistant", "content": ""}, {"reasoning_content": "Hm."}],
        ),
    ],
)
async def test_chunks_before_the_answer_go_out_with_its_first_chunk(
    reads: list[bytes], first: list[dict], tokenizers: Tokenizers
) -> None:
    pieces, error = await run_stream("openai", reads, tokenizers)
    assert error is None and delta_of(pieces[0]) == first
    if reads[0] is FILTER_RESULTS:
        assert pieces[0][0]["choices"] == [] and "prompt_filter_results" in pieces[0][0]


async def test_an_error_after_the_answer_began_follows_what_went_before(tokenizers: Tokenizers) -> None:
    for reads in ([ROLE, HI, ERROR], [ROLE + HI + ERROR]):  # in reads of their own, or in one
        pieces, error = await run_stream("openai", reads, tokenizers)
        assert [delta_of(piece) for piece in pieces] == [[{"role": "assistant", "content": ""}, {"content": "Hi"}]]
        assert error == "server_error"


async def test_what_is_held_back_is_bounded(tokenizers: Tokenizers) -> None:
    """An upstream that sends nothing but role chunks does not fill the gateway's memory: past
    HOLD_BACK_BYTES the stream starts, and an error after that ends it like any other."""
    roles = [ROLE * 64] * (HOLD_BACK_BYTES // len(ROLE * 64) + 1)
    pieces, error = await run_stream("openai", [*roles, ERROR], tokenizers)
    assert error == "server_error" and pieces and sum(map(len, pieces)) == 64 * len(roles)
