"""The one place a stream's stages are joined, in the order the data flows.

transport response -> timed read -> SSEDecoder.decode -> translator.translate
  -> StreamLimiter.limit -> encode -> the client's bytes

A stream that does not go out as chat completion chunks (the Responses API's events)
brings its own output stage (`ChunkOutput`), and, when its upstream does not speak chat
completions either, its own translator and limiter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import orjson

from ..errors import UpstreamError, UpstreamProtocolError
from ..providers import Provider, StreamTranslator
from ..stream.limiter import StreamLimiter
from ..stream.sse import DONE_DATA, EventTooLarge, SSEDecoder, SSEEvent, encode_events
from ..stream.tokens import INLINE_CHARS
from ..stream.transcript import Transcript
from ..upstream.base import UpstreamResponse
from .clock import Clock

HOLD_BACK_BYTES = 64 * 1024  # of chunks held before the answer begins; past it the stream starts anyway


class ChunkLimiter(Protocol):
    """What the stream reads of its limiter (stream.limiter's StreamLimiter for chat chunks)."""

    @property
    def begun(self) -> bool: ...

    @property
    def done(self) -> bool: ...

    @property
    def changed(self) -> bool: ...

    @property
    def all_finished(self) -> bool: ...

    @property
    def delivered(self) -> bool: ...

    def limit(self, chunk: dict[str, Any]) -> dict[str, Any] | None: ...

    async def usage_ready(self) -> None: ...

    def usage(self) -> dict[str, Any]: ...


class ChunkOutput(Protocol):
    """How a stream's limited chunks go out when not as chat completion chunks."""

    def add(self, chunk: dict[str, Any]) -> list[bytes]:
        """The client's encoded events for one limited chunk (maybe none)."""
        ...

    def end(self, usage: dict[str, Any]) -> list[bytes]:
        """The events that end the stream, given its usage in chat completions' names."""
        ...


async def stream_chunks(
    response: UpstreamResponse,
    provider: Provider,
    limiter: ChunkLimiter,
    clock: Clock,
    *,
    include_usage: bool,
    translator: StreamTranslator | None = None,
    output: ChunkOutput | None = None,
    transcript: Transcript | None = None,
) -> AsyncGenerator[bytes, None]:
    """The client's SSE bytes, one piece per upstream read; ends with [DONE] (or, with `output`,
    with its end) or raises UpstreamError.

    `translator`: the upstream's events as chunks (default: the provider's chat stream
    translator); `output`: the client's events for the limited chunks (default: chat
    completion chunks, the upstream's own bytes where nothing changed).

    Chunks that come before the answer has begun (a role chunk, Azure's prompt filter
    results) are held back, and go out with its first chunk of content, refusal, tool
    call or finish reason (`StreamLimiter.begun`). Until then nothing is yielded, so an
    error is the attempt's failure, which dispatch may retry, not the end of a stream
    the client has seen start.

    The caller closes `response` when this ends early (an error, the client gone).
    `transcript`, when given, is fed every chunk as it goes out.
    """
    decoder = SSEDecoder(max_event_bytes=clock.limits.max_event_bytes)
    translator = translator or provider.stream_translator()
    encode = encode_events if output is None else b"".join
    out: list[bytes] = []  # the data of the events to send (with `output`: the events), encoded together
    flowing = False  # something has been yielded: chunks go out as they come
    while True:
        data = await timed_read(response, clock)
        too_large: EventTooLarge | None = None
        try:
            try:
                events = decoder.decode(data) if data else decoder.flush()
            except EventTooLarge as exc:  # the whole events before it still go out, then the error
                events, too_large = exc.complete, exc
            started = clock.last_chunk_at is not None
            if sum(len(event.data) for event in events) > INLINE_CHARS:
                # a long event is parsed and counted on a worker thread: the loop serves the others;
                # the translator and limiter are this request's alone, and it waits for the thread
                any_chunk = await asyncio.to_thread(
                    translate_events, events, translator, limiter, out, output, transcript
                )
            else:
                any_chunk = translate_events(events, translator, limiter, out, output, transcript)
            if any_chunk or (started and events):
                # a chunk came; once started, any event is the upstream at work (pings, thinking)
                clock.last_chunk_at = clock.now()
            if too_large is not None and not (translator.finished or limiter.done):
                raise too_large
        except UpstreamError:
            if out and (flowing or limiter.begun):  # what was good in this read still goes out, then the error
                yield encode(out)
            raise
        if translator.finished and limiter.all_finished:
            response.release()  # never waits: [DONE] goes out at once
        elif limiter.done:
            response.close()  # the upstream ignored max_tokens: stop it generating
        elif not data or translator.finished:  # the end, or [DONE] before every choice finished
            if not limiter.all_finished:
                if out and (flowing or limiter.begun):  # whole events before the end still go out, then the error
                    yield encode(out)
                raise UpstreamProtocolError("The upstream's stream ended before the answer was complete.")
        else:
            if out and (flowing or limiter.begun or sum(map(len, out)) > HOLD_BACK_BYTES):
                if clock.first_token_at is None and limiter.delivered:
                    clock.first_token_at = time.perf_counter()
                flowing = True
                yield encode(out)
                out = []
            continue
        clock.upstream_done_at = time.perf_counter()
        if clock.first_token_at is None and limiter.delivered:
            clock.first_token_at = clock.upstream_done_at
        if output is not None:
            await limiter.usage_ready()
            out += output.end(limiter.usage())
        else:
            if include_usage:
                assert isinstance(limiter, StreamLimiter), "a chat stream's limiter"
                await limiter.usage_ready()
                out.append(orjson.dumps(limiter.usage_chunk()))
            out.append(DONE_DATA)
        yield encode(out)
        return


def translate_events(
    events: list[SSEEvent],
    translator: StreamTranslator,
    limiter: ChunkLimiter,
    out: list[bytes],
    output: ChunkOutput | None = None,
    transcript: Transcript | None = None,
) -> bool:
    """Translate and limit the events of one read, up to the end of the answer, and put
    the JSON of the chunks to send (with `output`, its events) into `out`; returns whether
    any chunk came of them."""
    any_chunk = False
    for event in events:
        chunks = translator.translate(event)
        verbatim = translator.passthrough and b"\n" not in event.data
        for chunk in chunks:
            any_chunk = True
            limited = limiter.limit(chunk)
            if limited is None:
                continue
            if transcript is not None:
                transcript.add_chunk(limited)
            if output is not None:
                out += output.add(limited)
            elif verbatim and not limiter.changed:
                out.append(event.data)  # nothing changed: the upstream's own bytes
            else:
                out.append(orjson.dumps(limited))
        if translator.finished or limiter.done:
            break
    return any_chunk


async def timed_read(response: UpstreamResponse, clock: Clock) -> bytes:
    """The next bytes from the upstream, b"" at its end; raises UpstreamTimeout when the
    nearest deadline comes first.

    Bytes that have already arrived are taken at once: only a read that waits needs a
    timer (an upstream's whole answer often comes with its headers). The total limit
    holds either way.
    """
    ready = response.read_ready()
    if ready is not None:
        if clock.now() >= clock.total_deadline:
            raise clock.timeout("total")
        return ready
    deadline, kind = clock.next_deadline(streaming=True)
    try:
        async with asyncio.timeout_at(deadline):
            return await response.read_chunk()
    except TimeoutError:
        raise clock.timeout(kind) from None
