"""One exchange with an upstream: send the adapter's request, bounded by the request's deadlines,
and turn an error status into the adapter's mapped error.

A non-streamed answer is read whole, translated and cut to the budget here; a
stream is handed on open, to pipeline.chunks, once its status is known.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTooLarge
from ..providers import Provider, UpstreamCall
from ..stream.limiter import limit_completion
from ..stream.tokens import INLINE_CHARS, PromptTokens, TokenCounter
from ..stream.transcript import Transcript
from ..upstream.base import Transport, UpstreamRequest, UpstreamResponse
from .clock import Clock

ERROR_BODY_BYTES = 64 * 1024  # of an error status's body: its message is all the gateway keeps
INLINE_BYTES = INLINE_CHARS  # a longer completion is cut and counted on a worker thread
RETRY_HINT_CHARS = 64  # a longer retry-after or retry-after-ms is no hint, and is not passed on


def send(provider: Provider, transport: Transport, call: UpstreamCall, clock: Clock) -> Awaitable[UpstreamResponse]:
    """Build the chat request and start sending it: the caller awaits the transport itself
    (one coroutine less on every request's path) and bounds the wait."""
    return send_request(transport, provider.build_request(call), clock)


def send_request(transport: Transport, request: UpstreamRequest, clock: Clock) -> Awaitable[UpstreamResponse]:
    """Start sending a request the adapter built (chat, embeddings, responses)."""
    clock.upstream_sent_at = time.perf_counter()
    return transport.send(request, connect_timeout=clock.limits.connect_timeout)


def failed(response: UpstreamResponse) -> bool:
    """Whether the upstream's answer is not a success (2xx): an error status, or one no
    upstream should answer with (below 200: 1xx reach here only as 101, or as 99 and the like).
    Redirects never reach here (the transport refuses them)."""
    return not 200 <= response.status < 300


async def error_body(response: UpstreamResponse) -> bytes:
    """At most ERROR_BODY_BYTES of an answer that failed (b"" when it is larger); the connection
    is dropped after."""
    try:
        return await response.read(ERROR_BODY_BYTES)
    except UpstreamTooLarge:
        return b""
    finally:
        response.close()


async def status_error(provider: Provider, response: UpstreamResponse) -> UpstreamError:
    """An upstream's failed status, as the provider's mapped error (from at most ERROR_BODY_BYTES
    of its body: a larger one is answered by its status alone); a status that is not an HTTP
    error status (400-599) is a protocol error (providers.base.upstream_error)."""
    payload = await error_body(response)
    error = provider.map_error(response.status, payload)
    if isinstance(error, UpstreamStatusError):
        error.retry_after = parse_retry_after(response.headers)
        error.retry_hints = retry_hints(response.headers)
    return error


def is_json(response: UpstreamResponse) -> bool:
    """Whether the answer says it is JSON: to a streamed request, a whole body, not an event stream."""
    media_type = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    return media_type == "application/json"


async def json_instead_of_stream(provider: Provider, response: UpstreamResponse) -> UpstreamError:
    """A success in JSON to a streamed request: the upstream's error, when that is all it holds
    (the provider's translate_response raises it, redacted, its message kept), else a protocol error."""
    payload = await error_body(response)
    try:
        provider.translate_response(payload)
    except UpstreamError as error:
        return error
    return UpstreamProtocolError(
        "The upstream answered a streamed request with a whole completion, not an event stream."
    )


async def open_stream(provider: Provider, transport: Transport, call: UpstreamCall, clock: Clock) -> UpstreamResponse:
    """Send a streaming chat request, bounded by the first-chunk and total deadlines."""
    return await open_request_stream(provider, transport, provider.build_request(call), clock)


async def open_request_stream(
    provider: Provider, transport: Transport, request: UpstreamRequest, clock: Clock
) -> UpstreamResponse:
    """Send a streaming request the adapter built, bounded by the first-chunk and total deadlines;
    raises the provider's mapped error for a failed status, and for JSON instead of events."""
    deadline, kind = clock.next_deadline(streaming=True)
    try:
        async with asyncio.timeout_at(deadline):
            response = await send_request(transport, request, clock)
            if failed(response):
                raise await status_error(provider, response)
            if is_json(response):
                raise await json_instead_of_stream(provider, response)
            return response
    except TimeoutError:
        raise clock.timeout(kind) from None


@dataclass(frozen=True, slots=True)
class Completed:
    body: bytes  # the answer to send, encoded (JSON)
    usage: Any  # its usage in chat completions' names (prompt_tokens, completion_tokens), for the record
    truncated: bool


@dataclass(frozen=True, slots=True)
class LimitedCompletion:
    """A chat.completion as the upstream answered it, cut to the budget (in place)."""

    completion: dict[str, Any]
    payload: bytes  # the upstream's bytes, true to `completion` unless `changed`
    truncated: bool  # something was cut
    changed: bool  # the completion differs from the payload (cut, or usage made true)


async def complete(
    provider: Provider,
    transport: Transport,
    call: UpstreamCall,
    clock: Clock,
    *,
    counter: TokenCounter,
    prompt_tokens: Callable[[], int],
    transcript: Transcript | None = None,
) -> Completed:
    """A whole chat.completion, cut to the budget, bounded by the total deadline; `transcript`,
    when given, gets the completion as it goes out."""
    limited = await complete_limited(provider, transport, call, clock, counter=counter, prompt_tokens=prompt_tokens)
    completion = limited.completion
    if transcript is not None:
        transcript.add_completion(completion)
    body = limited.payload if provider.native_responses and not limited.changed else orjson.dumps(completion)
    return Completed(body=body, usage=completion.get("usage"), truncated=limited.truncated)


async def complete_limited(
    provider: Provider,
    transport: Transport,
    call: UpstreamCall,
    clock: Clock,
    *,
    counter: TokenCounter,
    prompt_tokens: Callable[[], int],
) -> LimitedCompletion:
    """A whole chat.completion, translated from the upstream's protocol and cut to the budget;
    bounded by the total deadline."""
    payload = await fetch(provider, transport, provider.build_request(call), clock)
    completion = provider.translate_response(payload)
    limit = functools.partial(
        limit_completion,
        max_tokens=call.max_tokens,
        counter=counter,
        prompt_tokens=prompt_tokens,
        choices=call.choices,
    )
    if len(payload) > INLINE_BYTES:  # a long answer is counted on a worker thread, not on the event loop
        if isinstance(prompt_tokens, PromptTokens):
            await prompt_tokens.ready()
        truncated, changed = await asyncio.to_thread(limit, completion)
    else:
        truncated, changed = limit(completion)
    return LimitedCompletion(completion, payload, truncated, changed)


async def fetch(provider: Provider, transport: Transport, request: UpstreamRequest, clock: Clock) -> bytes:
    """The whole answer to a request that is not streamed, at most `limits.max_response_bytes`,
    bounded by the total deadline; raises the provider's mapped error for a failed status,
    UpstreamTimeout("total") and UpstreamTooLarge."""
    try:
        async with asyncio.timeout_at(clock.total_deadline):
            response = await send_request(transport, request, clock)
            if failed(response):
                raise await status_error(provider, response)
            try:
                payload = await response.read(clock.limits.max_response_bytes)
            finally:
                response.release()
    except TimeoutError:
        raise clock.timeout("total") from None
    clock.upstream_done_at = time.perf_counter()
    return payload


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, or `retry-after` in seconds or as an HTTP date (RFC 9110, 10.2.3)."""
    milliseconds = seconds_in(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    if not value:
        return None
    seconds = seconds_in(value)
    if seconds is not None:
        return seconds
    when = http_date(value)
    return None if when is None else max(when - time.time(), 0.0)


def retry_hints(headers: Mapping[str, str]) -> dict[str, str]:
    """The upstream's `retry-after`, `retry-after-ms` and `x-should-retry`, as it sent them,
    for a client to follow when the gateway made one attempt; a value that is no hint
    (not a number, a date, `true` or `false`) is left out."""
    hints = {}
    milliseconds, after, should = (headers.get(name) for name in ("retry-after-ms", "retry-after", "x-should-retry"))
    if milliseconds and len(milliseconds) <= RETRY_HINT_CHARS and seconds_in(milliseconds) is not None:
        hints["retry-after-ms"] = milliseconds
    if after and len(after) <= RETRY_HINT_CHARS and (seconds_in(after) is not None or http_date(after) is not None):
        hints["retry-after"] = after
    if should in ("true", "false"):
        hints["x-should-retry"] = should
    return hints


def seconds_in(value: str | None) -> float | None:
    """A finite, non-negative number, or None."""
    try:
        number = float(value) if value else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def http_date(value: str) -> float | None:
    """An HTTP date as a Unix time, or None."""
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
