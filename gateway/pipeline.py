"""The one place the stages are joined, in the order the data flows.

    provider.build_request -> transport.send -> read_chunk (timed)
      -> SSEDecoder.decode -> translator.translate -> StreamLimiter.limit -> encode -> client

Timeouts: `Clock` knows the request's deadlines; each read from the upstream waits
at most until the nearest one, and the limit that fires is named in the error.
Deadlines run on the event loop's clock; the moments the metrics observe are taken
with time.perf_counter(), since uvloop's loop.time() moves in whole milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .config import Limits
from .dispatch import parse_retry_after
from .errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from .limits import StreamLimiter, limit_completion
from .providers import Provider, UpstreamCall
from .providers.base import StreamTranslator
from .sse import DONE_DATA, PING, SSEDecoder, SSEEvent, encode_events
from .tokens import TokenCounter
from .upstream import UpstreamResponse


class Clock:
    """The deadlines of one request, on the event loop's clock."""

    __slots__ = (
        "attempt_started",
        "first_content_at",
        "last_chunk_at",
        "limits",
        "now",
        "started",
        "total_deadline",
        "upstream_done_at",
        "upstream_sent_at",
    )

    def __init__(self, limits: Limits, started: float, now: Callable[[], float]) -> None:
        self.limits = limits
        self.now = now  # the event loop's time()
        self.started = started
        self.attempt_started = started  # the first-chunk wait starts again with each attempt
        self.total_deadline = started + limits.timeout
        self.last_chunk_at: float | None = None  # None until the first chunk arrived
        # observed moments, on time.perf_counter()
        self.first_content_at: float | None = None  # when the first content went to the client
        self.upstream_sent_at: float | None = None
        self.upstream_done_at: float | None = None

    def start_attempt(self, now: float, limits: Limits) -> None:
        """A new attempt, under its route's limits (a fallback's may be tighter); the
        whole request's deadline never moves later."""
        self.limits = limits
        self.total_deadline = min(self.total_deadline, self.started + limits.timeout)
        self.attempt_started = now
        self.last_chunk_at = None

    def next_deadline(self, *, streaming: bool) -> tuple[float, str]:
        """When the current wait on the upstream must end, and the name of that limit."""
        if not streaming:
            return self.total_deadline, "total"
        if self.last_chunk_at is None:
            deadline, kind = self.attempt_started + self.limits.first_token_timeout, "first_token"
        else:
            deadline, kind = self.last_chunk_at + self.limits.idle_timeout, "idle"
        if self.total_deadline <= deadline:
            return self.total_deadline, "total"
        return deadline, kind

    def timeout(self, kind: str) -> UpstreamTimeout:
        seconds = {
            "first_token": self.limits.first_token_timeout,
            "idle": self.limits.idle_timeout,
            "total": self.limits.timeout,
            "connect": self.limits.connect_timeout,
        }[kind]
        return UpstreamTimeout(kind, seconds)


def send(provider: Provider, call: UpstreamCall, clock: Clock) -> Awaitable[UpstreamResponse]:
    """Build the request and start sending it: the caller awaits the transport itself
    (one coroutine less on every request's path) and bounds the wait."""
    request = provider.build_request(call)
    clock.upstream_sent_at = time.perf_counter()
    return provider.transport.send(request, connect_timeout=clock.limits.connect_timeout)


async def status_error(provider: Provider, response: UpstreamResponse) -> UpstreamError:
    """An upstream's error status, as the provider's mapped error."""
    try:
        payload = await response.read()
    finally:
        response.close()
    error = provider.map_error(response.status, payload)
    error.retry_after = parse_retry_after(response.headers)
    return error


async def open_stream(provider: Provider, call: UpstreamCall, clock: Clock) -> UpstreamResponse:
    """Send a streaming request, bounded by the first-chunk and total deadlines."""
    deadline, kind = clock.next_deadline(streaming=True)
    try:
        async with asyncio.timeout_at(deadline):
            response = await send(provider, call, clock)
            if response.status >= 400:
                raise await status_error(provider, response)
            return response
    except TimeoutError:
        raise clock.timeout(kind) from None


@dataclass(frozen=True, slots=True)
class Completed:
    body: bytes  # the chat.completion to send, encoded
    usage: Any
    truncated: bool


async def complete(
    provider: Provider, call: UpstreamCall, clock: Clock, *, counter: TokenCounter, prompt_tokens: Callable[[], int]
) -> Completed:
    """A whole chat.completion, cut to the budget, bounded by the total deadline."""
    try:
        async with asyncio.timeout_at(clock.total_deadline):
            response = await send(provider, call, clock)
            if response.status >= 400:
                raise await status_error(provider, response)
            try:
                payload = await response.read()
            finally:
                response.release()
    except TimeoutError:
        raise clock.timeout("total") from None
    clock.upstream_done_at = time.perf_counter()
    completion = provider.translate_response(payload)
    truncated, changed = limit_completion(
        completion, max_tokens=call.max_tokens, counter=counter, prompt_tokens=prompt_tokens
    )
    body = payload if provider.native_responses and not changed else orjson.dumps(completion)
    return Completed(body=body, usage=completion.get("usage"), truncated=truncated)


async def stream_chunks(
    response: UpstreamResponse,
    provider: Provider,
    limiter: StreamLimiter,
    clock: Clock,
    *,
    include_usage: bool,
    keepalive: float,
) -> AsyncIterator[bytes]:
    """The client's SSE bytes, one write per upstream read; ends with [DONE] or raises UpstreamError.

    Once the stream has started, a comment goes out whenever `keepalive` seconds pass
    without a write. The caller closes `response` when this ends early (an error, the client gone).
    """
    decoder = SSEDecoder()
    translator = provider.stream_translator()
    last_write: float | None = None  # None until the first bytes went out
    while True:
        data = await timed_read(response, clock, ping_at=None if last_write is None else last_write + keepalive)
        if data is None:
            last_write = clock.now()
            yield PING
            continue
        out: list[bytes] = []  # the data of the events to send, encoded together
        try:
            events = decoder.decode(data) if data else decoder.flush()
            started = clock.last_chunk_at is not None
            if translate_events(events, translator, limiter, out) or (started and events):
                # a chunk came; once started, any event is the upstream at work (pings, thinking)
                clock.last_chunk_at = clock.now()
        except UpstreamError:
            if out:  # what was good in this read still goes out, then the error
                yield encode_events(out)
            raise
        if translator.finished:
            response.release()  # never waits: [DONE] goes out at once
        elif limiter.done:
            response.close()  # the upstream ignored max_tokens: stop it generating
        elif not data:
            if not limiter.all_finished:
                if out:  # whole events that came before the end still go out, then the error
                    yield encode_events(out)
                raise UpstreamProtocolError("The upstream's stream ended before the answer was complete.")
        else:
            if out:
                last_write = clock.now()
                if clock.first_content_at is None and limiter.delivered:
                    clock.first_content_at = time.perf_counter()
                yield encode_events(out)
            continue
        clock.upstream_done_at = time.perf_counter()
        if clock.first_content_at is None and limiter.delivered:
            clock.first_content_at = clock.upstream_done_at
        if include_usage:
            out.append(orjson.dumps(limiter.usage_chunk()))
        out.append(DONE_DATA)
        yield encode_events(out)
        return


def translate_events(
    events: list[SSEEvent], translator: StreamTranslator, limiter: StreamLimiter, out: list[bytes]
) -> bool:
    """Translate and limit the events of one read, up to the end of the answer, and put
    the JSON of the chunks to send into `out`; returns whether any chunk came of them."""
    passthrough = translator.passthrough
    any_chunk = False
    for event in events:
        for chunk in translator.translate(event):
            any_chunk = True
            limited = limiter.limit(chunk)
            if limited is None:
                continue
            if passthrough and not limiter.changed and b"\n" not in event.data:
                out.append(event.data)  # nothing changed: the upstream's own bytes
            else:
                out.append(orjson.dumps(limited))
        if translator.finished or limiter.done:
            break
    return any_chunk


async def timed_read(response: UpstreamResponse, clock: Clock, *, ping_at: float | None = None) -> bytes | None:
    """The next bytes from the upstream; None when `ping_at` comes first (the read can be tried again).

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
    if ping_at is not None and ping_at < deadline:
        try:
            async with asyncio.timeout_at(ping_at):
                return await response.read_chunk()
        except TimeoutError:
            return None
    try:
        async with asyncio.timeout_at(deadline):
            return await response.read_chunk()
    except TimeoutError:
        raise clock.timeout(kind) from None
