"""HTTP in and out: validate, route, relay, write."""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from aiohttp_sse import EventSourceResponse

from . import __version__
from .errors import GatewayError, ModelNotFound, PayloadTooLarge, UpstreamError
from .keys import GATEWAY, REQUEST_ID
from .limits import StreamLimiter
from .middlewares import error_response
from .observe import RequestRecord, finish, record_upstream_error
from .pipeline import Clock, complete, open_upstream, stream_chunks
from .providers import UpstreamCall
from .routing import upstream_model_for
from .schema import parse_body, parse_chat_request
from .sse import encode_json
from .state import GatewayState

if TYPE_CHECKING:
    from .app import Gateway
from .tokens import count_prompt_tokens

JSON = "application/json"
SSE_PING_SECONDS = 15.0
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before its response


async def chat_completions(request: web.Request) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    loop = asyncio.get_running_loop()
    record = RequestRecord(
        request_id=request[REQUEST_ID], method=request.method, path=request.path, client=request.remote, started=loop.time()
    )
    try:
        response = await serve_chat(request, gateway, record)
        record.status = response.status
        return response
    except GatewayError as exc:
        record.status = exc.status
        record.fail(exc)
        if isinstance(exc, UpstreamError):
            record_upstream_error(gateway.metrics, record, exc)
        return error_response(exc)
    except asyncio.CancelledError:
        record.disconnected = True
        record.status = record.status or CLIENT_CLOSED_REQUEST
        raise
    finally:
        finish(gateway.metrics, record, loop.time())


async def serve_chat(request: web.Request, gateway: Gateway, record: RequestRecord) -> web.StreamResponse:
    state = gateway.state  # this request keeps this snapshot to its end
    payload = await read_payload(request, state.config.server.max_body_bytes)
    chat = parse_chat_request(parse_body(payload), default_model=state.config.default_model)
    record.stream = chat.stream
    route = state.table.resolve(chat.model)
    if route is None:
        raise ModelNotFound(chat.model)
    record.route, record.provider, record.routed = route.model, route.provider, True
    gateway.metrics.inflight.labels(route.model).inc()
    limits = route.limits
    max_tokens = min(chat.requested_max_tokens or limits.max_tokens, limits.max_tokens)
    call = UpstreamCall(
        body=chat.body,
        model=upstream_model_for(route, chat.model),
        max_tokens=max_tokens,
        stream=chat.stream,
        request_id=record.request_id,
    )
    record.upstream_model = call.model
    provider = state.providers[route.provider]
    counter = state.tokenizers.for_model(call.model)
    prompt_tokens = functools.partial(count_prompt_tokens, chat.body["messages"], counter)
    clock = Clock(limits, record.started)
    headers = {"x-gateway-max-tokens": str(max_tokens)}
    try:
        upstream = await open_upstream(provider, call, clock)
        try:
            if not chat.stream:
                completion, record.truncated = await complete(
                    provider, call, clock, upstream, counter=counter, prompt_tokens=prompt_tokens
                )
                record.usage(completion.get("usage"))
                return web.Response(body=orjson.dumps(completion), content_type=JSON, headers=headers)
            limiter = StreamLimiter(max_tokens=max_tokens, counter=counter, choices=chat.choices, prompt_tokens=prompt_tokens)
            try:
                chunks = stream_chunks(upstream, provider, limiter, clock, include_usage=chat.include_usage)
                try:
                    first = await anext(chunks)  # before this, errors still get a JSON response
                    return await relay(request, first, chunks, headers, gateway, record)
                finally:
                    await chunks.aclose()
            finally:
                record.truncated = limiter.truncated
                if limiter.upstream_usage or limiter.completion_tokens:
                    record.usage(limiter.usage())
        finally:
            upstream.close()
    finally:
        record.timing(clock)


async def relay(
    request: web.Request, first: bytes, chunks: Any, headers: dict[str, str], gateway: Gateway, record: RequestRecord
) -> web.StreamResponse:
    """Write the stream to the client; an error after the start becomes a last error event."""
    response = EventSourceResponse(headers=headers, allow_all_methods=True, ping_interval=SSE_PING_SECONDS)
    await response.prepare(request)
    record.status = response.status
    try:
        async with response:  # stops the keep-alive pings on the way out
            await response.write(first)
            try:
                async for data in chunks:
                    await response.write(data)
            except GatewayError as exc:
                record.fail(exc)
                if isinstance(exc, UpstreamError):
                    record_upstream_error(gateway.metrics, record, exc)
                await response.write(encode_json(exc.body()))
            await response.write_eof()
    except ConnectionResetError:  # the client went away between two writes
        record.disconnected = True
    return response


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


def model_object(state: GatewayState, model: str, provider: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": state.loaded_at, "owned_by": provider}


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
