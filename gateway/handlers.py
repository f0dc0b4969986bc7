"""HTTP in and out: validate, route, relay, write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from . import __version__
from .dispatch import Attempt, AttemptsExhausted, dispatch
from .errors import GatewayError, ModelNotFound, PayloadTooLarge, UpstreamError
from .keys import GATEWAY, LOGGED, REQUEST_ID
from .limits import StreamLimiter
from .middlewares import error_response
from .observe import RequestRecord, finish, record_upstream_error
from .pipeline import Clock, Completed, complete, open_stream, stream_chunks
from .providers import UpstreamCall
from .schema import parse_body, parse_chat_request
from .sse import DONE, encode_json
from .sse import HEADERS as SSE_HEADERS
from .state import GatewayState

if TYPE_CHECKING:
    from .app import Gateway
from .tokens import PromptTokens
from .upstream import UpstreamResponse

JSON = "application/json"
STALLED_CLIENT_BYTES = 64 * 1024  # aiohttp waits for the transport to drain above this
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before its response


@dataclass(slots=True)
class StreamStart:
    """A stream whose first chunk has arrived: from here on it belongs to the client."""

    upstream: UpstreamResponse
    limiter: StreamLimiter
    chunks: AsyncGenerator[bytes, None]
    first: bytes

    async def aclose(self) -> None:
        await self.chunks.aclose()
        self.upstream.close()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    arrived = asyncio.get_running_loop().time()  # the deadlines run on the loop's clock
    request[LOGGED] = True
    record = RequestRecord(
        request_id=request[REQUEST_ID],
        method=request.method,
        path=request.path,
        client=request.remote,
        started=time.perf_counter(),
    )
    try:
        try:
            state = gateway.state  # this request keeps this snapshot to its end
            with state.users:
                response = await serve_chat(request, gateway, state, record, arrived)
        except AttemptsExhausted as exhausted:
            exc = exhausted.error
            exc.headers.update({"x-should-retry": "false", "x-gateway-attempts": str(exhausted.attempts)})
            record.fail(exc)
            response = error_response(exc)
        except GatewayError as exc:
            record.fail(exc)
            response = error_response(exc)
        record.status = response.status
        if not response.prepared:  # send it now: counting and logging come after the last byte
            try:
                await response.prepare(request)
                await response.write_eof()
            except ConnectionResetError:  # the client is gone; nothing left to tell it
                record.disconnected = True
        return response
    except asyncio.CancelledError:
        record.disconnected = True
        record.status = record.status or CLIENT_CLOSED_REQUEST
        raise
    finally:
        finish(gateway.metrics, gateway.access_log, record, time.perf_counter())


async def serve_chat(
    request: web.Request, gateway: Gateway, state: GatewayState, record: RequestRecord, arrived: float
) -> web.StreamResponse:
    payload = await read_payload(request, state.config.server.max_body_bytes)
    chat = parse_chat_request(parse_body(payload), default_model=state.config.default_model)
    record.stream = chat.stream
    route = state.table.resolve(chat.model)
    if route is None:
        raise ModelNotFound(chat.model)
    record.route, record.provider, record.routed = route.model, route.provider, True
    gateway.metrics.inflight_of(route.model).inc()
    loop = asyncio.get_running_loop()
    clock = Clock(route.limits, arrived, loop.time)
    max_tokens_of: dict[int, int] = {}  # attempt number -> the limit it was held to

    async def attempt(planned: Attempt) -> StreamStart | Completed:
        record.provider, record.upstream_model = planned.target.provider, planned.upstream_model
        limits = planned.route.limits  # a fallback route holds the request to its own limits
        max_tokens = max_tokens_of[planned.number] = min(
            chat.requested_max_tokens or limits.max_tokens, limits.max_tokens
        )
        provider = state.providers[planned.target.provider]
        call = UpstreamCall(
            body=chat.body,
            model=planned.upstream_model,
            max_tokens=max_tokens,
            stream=chat.stream,
            request_id=record.request_id,
            target=planned.target,
        )
        counter = state.tokenizers.for_model(call.model)
        prompt_tokens = PromptTokens(chat.body["messages"], counter)
        clock.start_attempt(loop.time(), limits)
        if not chat.stream:
            return await complete(provider, call, clock, counter=counter, prompt_tokens=prompt_tokens)
        upstream = await open_stream(provider, call, clock)
        limiter = StreamLimiter(
            max_tokens=max_tokens, counter=counter, choices=chat.choices, prompt_tokens=prompt_tokens
        )
        chunks = stream_chunks(
            upstream,
            provider,
            limiter,
            clock,
            include_usage=chat.include_usage,
            keepalive=state.config.server.sse_keepalive,
        )
        started = StreamStart(upstream, limiter, chunks, b"")
        try:
            started.first = await anext(chunks)
        except BaseException:
            await started.aclose()
            raise
        return started

    try:
        served = await dispatch(
            route,
            chat.model,
            attempt,
            table=state.table,
            board=gateway.board,
            deadline=clock.total_deadline,
            on_failure=lambda _, exc: record_upstream_error(gateway.metrics, record, exc),
        )
    finally:
        record.timing(clock)
    headers = {
        "x-gateway-max-tokens": str(max_tokens_of[served.attempt.number]),
        "x-gateway-provider": served.attempt.target.provider,
        "x-gateway-upstream-model": served.attempt.upstream_model,
        "x-gateway-attempts": str(served.attempt.number),
    }
    if isinstance(served.result, Completed):
        record.truncated = served.result.truncated
        record.usage(served.result.usage)
        return web.Response(body=served.result.body, content_type=JSON, headers=headers)
    stream = served.result
    try:
        return await relay(
            request, stream.first, stream.chunks, headers, gateway, record, state.config.server.send_timeout
        )
    finally:
        await stream.aclose()
        record.timing(clock)
        record.truncated = stream.limiter.truncated
        if stream.limiter.upstream_usage or stream.limiter.delivered:
            record.usage(stream.limiter.usage())


class EventStreamResponse(web.StreamResponse):
    """A streamed response whose headers go out with its first bytes, in one write
    (as aiohttp's own web.Response does): the first chunk is written right after prepare()."""

    _send_headers_immediately = False


async def relay(
    request: web.Request,
    first: bytes,
    chunks: Any,
    headers: dict[str, str],
    gateway: Gateway,
    record: RequestRecord,
    send_timeout: float,
) -> web.StreamResponse:
    """Write the stream to the client; an error after the start becomes a last error event.

    The bytes that end with [DONE] (often the whole stream, when it came in one read) go
    out with the end of the response in one write.
    """
    response = EventStreamResponse(headers={**SSE_HEADERS, **headers})
    await response.prepare(request)
    record.status = response.status
    try:
        data: bytes | None = first
        try:
            while data is not None and not data.endswith(DONE):
                await write_bounded(request, response, data, send_timeout)
                data = await anext(chunks, None)
        except GatewayError as exc:
            record.fail(exc)
            if isinstance(exc, UpstreamError):
                record_upstream_error(gateway.metrics, record, exc)
            data = encode_json(exc.body())
        await write_bounded(request, response, data or b"", send_timeout, last=True)
    except (ConnectionResetError, TimeoutError):  # the client went away, or stopped reading
        record.disconnected = True
    return response


async def write_bounded(
    request: web.Request, response: web.StreamResponse, data: bytes, timeout: float, *, last: bool = False
) -> None:
    """Write (`last`: and end the response); a client that leaves STALLED_CLIENT_BYTES
    unread for `timeout` seconds is cut off. Only a write that can block pays for a timer.
    """
    write = response.write_eof if last else response.write
    transport = request.transport
    if transport is None or transport.get_write_buffer_size() + len(data) < STALLED_CLIENT_BYTES:
        await write(data)
        return
    try:
        async with asyncio.timeout(timeout):
            await write(data)
    except TimeoutError:
        transport.abort()
        raise


async def metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def read_payload(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"The request body is {request.content_length} bytes; the limit is {limit}.")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"The request body is over the limit of {limit} bytes.") from None


async def list_models(request: web.Request) -> web.Response:
    state = request.app[GATEWAY].state
    data = [model_object(state, route.model, route.provider) for route in state.table.exact_routes]
    return web.json_response({"object": "list", "data": data}, dumps=_dumps)


async def get_model(request: web.Request) -> web.Response:
    state = request.app[GATEWAY].state
    model = request.match_info["model"]
    for route in state.table.exact_routes:
        if route.model == model:
            return web.json_response(model_object(state, route.model, route.provider), dumps=_dumps)
    raise ModelNotFound(model)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__}, dumps=_dumps)


async def upstream_health(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY]
    targets = gateway.board.snapshot(gateway.state.table.routes)
    return web.json_response({"targets": targets}, dumps=_dumps)


async def ready(request: web.Request) -> web.Response:
    """200 while taking traffic, 503 while draining; never depends on an upstream's health."""
    if request.app[GATEWAY].draining:
        return web.json_response({"status": "draining"}, status=503, dumps=_dumps)
    return web.json_response({"status": "ready"}, dumps=_dumps)


def model_object(state: GatewayState, model: str, provider: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": state.loaded_at, "owned_by": provider}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
