"""One exchange with an upstream: send the adapter's request, bounded by the request's deadlines,
and turn an error status into the adapter's mapped error.

A non-streamed answer is read whole, translated and cut to the budget here; a
stream is handed on open, to pipeline.chunks, once its status is known.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, UpstreamTooLarge
from ..providers import Provider, UpstreamCall
from ..stream.limiter import limit_completion
from ..stream.tokens import TokenCounter
from ..upstream.base import Transport, UpstreamResponse
from .clock import Clock

ERROR_BODY_BYTES = 64 * 1024  # of an error status's body: its message is all the gateway keeps


def send(provider: Provider, transport: Transport, call: UpstreamCall, clock: Clock) -> Awaitable[UpstreamResponse]:
    """Build the request and start sending it: the caller awaits the transport itself
    (one coroutine less on every request's path) and bounds the wait."""
    request = provider.build_request(call)
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
    """Send a streaming request, bounded by the first-chunk and total deadlines."""
    deadline, kind = clock.next_deadline(streaming=True)
    try:
        async with asyncio.timeout_at(deadline):
            response = await send(provider, transport, call, clock)
            if failed(response):
                raise await status_error(provider, response)
            if is_json(response):
                raise await json_instead_of_stream(provider, response)
            return response
    except TimeoutError:
        raise clock.timeout(kind) from None


@dataclass(frozen=True, slots=True)
class Completed:
    body: bytes  # the chat.completion to send, encoded
    usage: Any
    truncated: bool


async def complete(
    provider: Provider,
    transport: Transport,
    call: UpstreamCall,
    clock: Clock,
    *,
    counter: TokenCounter,
    prompt_tokens: Callable[[], int],
) -> Completed:
    """A whole chat.completion, cut to the budget, bounded by the total deadline."""
    try:
        async with asyncio.timeout_at(clock.total_deadline):
            response = await send(provider, transport, call, clock)
            if failed(response):
                raise await status_error(provider, response)
            try:
                payload = await response.read(clock.limits.max_response_bytes)
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


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, or `retry-after` in seconds or as an HTTP date (RFC 9110, 10.2.3)."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(float(milliseconds) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
