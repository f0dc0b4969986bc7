"""The one lifecycle every model endpoint shares:

    read and parse the body -> route the model -> admit against budgets and rate limits
      -> dispatch attempts (retries, fallbacks) -> send the answer whole or relay its stream
      -> settle what the request used, count and log it once

An endpoint brings only what is its own (`Endpoint`): how to parse its body, how many
tokens it may use, how to make one attempt against a target, and how to answer from a
quorum route's council (api.council), which sends each of its calls through its member's
route the same way (`through_route`). The steps that concern every endpoint plug in here,
each at one place: who may call (server middleware), admission against limits (after
routing, before dispatch: budgets in `accept`, api.spending; then the rate limits in `run`,
policy.limiter: a refused request never reaches an upstream), and settling what was used
(in `run`'s end, whatever the outcome: the rate limits' ticket, then the record is counted,
logged and queued for the ledger, Gateway.settle); a step that concerns each upstream
call belongs in `through_route` (a council's calls: api.members).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiohttp import web

from ..config import ClientKey, Limits, Route, ServerConfig
from ..errors import (
    GatewayError,
    InvalidRequest,
    ModelNotAllowed,
    ModelNotFound,
    UpstreamError,
    UpstreamStatusError,
)
from ..observability.metrics import NO_KEY
from ..observability.record import RequestRecord, record_upstream_error
from ..pipeline.clock import Clock
from ..pipeline.exchange import Completed
from ..policy import Ticket
from ..routing.dispatch import Attempt, AttemptsExhausted, Served, dispatch
from ..runtime import Gateway, Snapshot
from ..server.errors import error_response
from ..server.event_stream import EventStream, write_bounded
from ..server.keys import CLIENT_KEY, GATEWAY, LOGGED
from ..server.records import request_record
from ..stream.sse import DONE, encode_json
from ..stream.tokens import PromptTokens, extras_json, prompt_extras
from ..stream.transcript import Transcript
from ..upstream.base import UpstreamResponse
from .parsing import parse_body, read_payload
from .spending import admit, price

JSON = "application/json"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before its response
INTERNAL_ERROR = 500
BOUND_BYTES = 2048  # a body up to this size reserves its bytes as prompt tokens, not its count: see most_tokens
PROMPT_FRAMING = 16  # tokens a prompt's count adds beyond its text: the Responses API's 11 are the most
T = TypeVar("T")


class RoutedRequest(Protocol):
    """What the lifecycle reads of a parsed request: the model to route, whether to stream,
    what the ledger keeps of it, and the most it may cost."""

    @property
    def model(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def prompt(self) -> Any:
        """What the client asked the model (chat: its messages), kept when ledger.store_messages is on."""
        ...

    @property
    def body(self) -> dict[str, Any]:
        """The request's JSON body, as it came."""
        ...

    def completion_cap(self, limits: Limits) -> int:
        """The most completion tokens an answer under `limits` may hold, all choices together."""
        ...


class StreamMeter(Protocol):
    """What the lifecycle reads of a stream's budget once it has ended (stream.limiter's
    StreamLimiter, stream.responses_limiter's ResponsesLimiter)."""

    @property
    def truncated(self) -> bool: ...

    @property
    def upstream_usage(self) -> dict[str, Any] | None: ...

    @property
    def delivered(self) -> bool: ...

    async def usage_ready(self) -> None: ...

    def usage(self) -> dict[str, Any]:
        """The stream's usage in chat completions' names (prompt_tokens, completion_tokens)."""
        ...


def chat_error_event(error: GatewayError) -> bytes:
    """The last event of a chat completions stream that broke: `data: {"error": {...}}`."""
    return encode_json(error.body())


@dataclass(slots=True)
class StreamStart:
    """A stream whose answer has begun (`first` holds its first chunk of content, refusal,
    tool call or finish reason, after any held back): from here on it belongs to the client.

    `error_event` encodes the last event that tells the client an error broke the stream off,
    in the endpoint's own event format."""

    upstream: UpstreamResponse
    limiter: StreamMeter
    chunks: AsyncGenerator[bytes, None]
    first: bytes
    error_event: Callable[[GatewayError], bytes] = chat_error_event

    async def aclose(self) -> None:
        """Stop the stages and drop the upstream connection (the upstream stops generating)."""
        await self.chunks.aclose()
        self.upstream.close()


Reply = Completed | StreamStart


@dataclass(slots=True)
class Kept:
    """What the ledger keeps of a request beyond its record when ledger.store_messages is on."""

    prompt: Any = None
    transcript: Transcript | None = None

    def conversation(self) -> tuple[Any, Any] | None:
        """The request's messages and the answer its client got, or None when not kept."""
        if self.transcript is None:
            return None
        return self.prompt, self.transcript.answer()


@dataclass(slots=True)
class Exchange:
    """One request on its way through the lifecycle: what every step reads and fills in."""

    request_id: str
    snapshot: Snapshot
    record: RequestRecord
    clock: Clock
    key: ClientKey | None  # the client's key; None when the gateway asks for none
    headers: dict[str, str] = field(default_factory=dict)  # x-gateway-* of the endpoint, x-ratelimit-*
    transcript: Transcript | None = None  # fed the answer as it goes out, when conversations are kept
    body_bytes: int | None = None  # the size of the request's body, its text's bound (None: not known)
    prompt_tokens: PromptTokens | None = None  # counted once: for admission, and for usage


class NotForQuorumRoutes(InvalidRequest):
    """An endpoint that a quorum route does not answer (it answers chat completions and debates)."""

    code = "not_for_quorum_routes"

    def __init__(self, route: str, endpoint: str) -> None:
        super().__init__(
            f"{route!r} is a quorum route: it answers /v1/chat/completions and /api/v1/debates, not {endpoint}.",
            param="model",
        )


class Endpoint(Protocol):
    """What a model endpoint brings to the lifecycle."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> RoutedRequest:
        """The request, checked; raises InvalidRequest naming the bad field."""
        ...

    async def reserve(self, exchange: Exchange, request: Any, route: Route) -> int:
        """The most tokens the request may use on `route`, prompt and completion: what a
        tokens-per-minute limit counts from admission until the request's real usage is known."""
        ...

    async def attempt(self, exchange: Exchange, request: Any, planned: Attempt) -> Reply:
        """One attempt at `planned`'s target: a whole answer, or a stream whose answer has
        begun. Raises UpstreamError when the attempt failed (dispatch decides what next)."""
        ...

    async def convene(
        self, request: web.Request, gateway: Gateway, exchange: Exchange, parsed: Any, route: Route
    ) -> web.StreamResponse:
        """The answer of a quorum route's council (the route has `quorum`); raises GatewayError
        for an error to answer with before the response has started."""
        ...


def handler(endpoint: Endpoint) -> Any:
    """The aiohttp handler that runs `endpoint` through the lifecycle."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await run(request, endpoint)

    return handle


async def run(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    gateway = request.app[GATEWAY]
    arrived = asyncio.get_running_loop().time()  # the deadlines run on the loop's clock
    request[LOGGED] = True
    client_key = request.get(CLIENT_KEY)
    record = request_record(
        request, time.perf_counter(), at=gateway.wall(), key=client_key.id if client_key is not None else NO_KEY
    )
    kept = Kept()
    ticket: Ticket | None = None  # what the rate limits counted: settled at the end, whatever happens
    try:
        try:
            snapshot = gateway.state  # this request keeps this snapshot to its end
            exchange, parsed, route = await accept(
                request, endpoint, gateway, snapshot, record, arrived, client_key, kept
            )
            ticket = await gateway.limiter.admit(
                client_key,
                route,
                ticket=record.request_id,
                tokens=lambda: endpoint.reserve(exchange, parsed, route),
                most_tokens=most_tokens(exchange, parsed, route),
            )
            if ticket is not None:
                exchange.headers.update(ticket.headers)
            response = await serve(request, endpoint, gateway, exchange, parsed, route)
        except AttemptsExhausted as exhausted:
            exc = exhausted.error
            record.attempts = exhausted.attempts
            exc.headers.update(retry_advice(exhausted))
            response = failure(exc, record, ticket)
        except GatewayError as exc:
            response = failure(exc, record, ticket)
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
    except Exception:  # a bug: the errors middleware answers 500, or the stream it broke off ends
        record.status = record.status or INTERNAL_ERROR
        record.error = record.error or "internal_error"
        raise
    finally:
        if ticket is not None:
            ticket.settle(record.tokens_used)
        gateway.settle(record, time.perf_counter(), conversation=kept.conversation())


def most_tokens(exchange: Exchange, parsed: RoutedRequest, route: Route) -> int | None:
    """A bound of the tokens the request may use that costs nothing to know, for a body of up
    to BOUND_BYTES: its bytes as prompt tokens (a token of a byte-level BPE is at least one
    byte of text) plus PROMPT_FRAMING (the tokens the count adds for each message and the
    reply, which a tiny body's JSON may not outweigh: the Responses API counts `{}` as 11),
    and its completion cap. None for a larger body (its prompt is counted: the bound would
    hold too much of a tokens-per-minute limit while it runs) or one whose size is not known."""
    if exchange.body_bytes is None or exchange.body_bytes > BOUND_BYTES:
        return None
    return prompt_bound(exchange.body_bytes, parsed.body) + parsed.completion_cap(route.limits)


def prompt_bound(body_bytes: int, body: dict[str, Any]) -> int:
    """A bound of a request's prompt tokens that needs no counting: its body's bytes plus
    PROMPT_FRAMING, plus the bytes of its extras (stream.tokens.prompt_extras) as the upstream
    gets them, which are counted as prompt too: orjson may write a number longer than the
    client did (1e15 as 1000000000000000.0)."""
    return body_bytes + PROMPT_FRAMING + len(extras_json(prompt_extras(body)))


def failure(exc: GatewayError, record: RequestRecord, ticket: Ticket | None) -> web.Response:
    """The error response; one of a request that was admitted still tells its rate limits."""
    record.fail(exc)
    if ticket is not None:
        exc.headers.update(ticket.headers)
    return error_response(exc)


def retry_advice(exhausted: AttemptsExhausted) -> dict[str, str]:
    """The headers that tell a client (the OpenAI SDK) whether to retry a failed request.

    When the gateway has retried or fallen back, `x-should-retry: false`: the SDK's own
    retries would multiply the gateway's. After one attempt the request was tried no more
    than a client would try the upstream itself, so the upstream's own hints go on.
    """
    advice = {"x-gateway-attempts": str(exhausted.attempts)}
    if exhausted.attempts > 1:
        advice["x-should-retry"] = "false"
    elif isinstance(exhausted.error, UpstreamStatusError):
        advice.update(exhausted.error.retry_hints)
    return advice


async def accept(
    request: web.Request,
    endpoint: Endpoint,
    gateway: Gateway,
    snapshot: Snapshot,
    record: RequestRecord,
    arrived: float,
    client_key: ClientKey | None,
    kept: Kept,
) -> tuple[Exchange, RoutedRequest, Route]:
    """Read and parse the request, route its model, check that the key may use it and that
    no budget of the key's or the route's is spent."""
    payload = await read_payload(request, snapshot.config.server)
    parsed = endpoint.parse(parse_body(payload), snapshot)
    record.stream = parsed.stream
    route = snapshot.table.resolve(parsed.model)
    names = (parsed.model,) if route is None else (parsed.model, route.model)
    if client_key is not None and not client_key.allows(*names):  # before 404: no route's existence leaks
        raise ModelNotAllowed(client_key.id, parsed.model)
    if route is None:
        raise ModelNotFound(parsed.model)
    record.route, record.provider = route.model, route.provider
    budget_headers = await admit(gateway, snapshot, client_key, route, parsed, len(payload), record)
    record.routed = True
    gateway.metrics.inflight_of(route.model).inc()
    clock = Clock(route.limits, arrived, asyncio.get_running_loop().time)
    exchange = Exchange(record.request_id, snapshot, record, clock, client_key, budget_headers, body_bytes=len(payload))
    if snapshot.config.ledger.store_messages:
        kept.prompt, kept.transcript = parsed.prompt, Transcript()
        exchange.transcript = kept.transcript
    return exchange, parsed, route


async def serve(
    request: web.Request,
    endpoint: Endpoint,
    gateway: Gateway,
    exchange: Exchange,
    parsed: RoutedRequest,
    route: Route,
) -> web.StreamResponse:
    """Dispatch the attempts (or convene a quorum route's council), then send the answer
    whole or relay its stream."""
    snapshot, record, clock = exchange.snapshot, exchange.record, exchange.clock
    if route.quorum is not None:
        return await endpoint.convene(request, gateway, exchange, parsed, route)
    try:
        served = await through_route(
            gateway, exchange, route, parsed.model, lambda planned: endpoint.attempt(exchange, parsed, planned)
        )
    finally:
        record.timing(clock)
    record.attempts = served.attempt.number
    headers = {
        **exchange.headers,
        "x-gateway-provider": served.attempt.target.provider,
        "x-gateway-upstream-model": served.attempt.upstream_model,
        "x-gateway-attempts": str(served.attempt.number),
    }
    if isinstance(served.result, Completed):
        record.truncated = served.result.truncated
        price(gateway, snapshot, record, served.attempt, served.result.usage)
        return web.Response(body=served.result.body, content_type=JSON, headers=headers)
    stream = served.result
    try:
        return await relay(request, stream, headers, gateway, record, snapshot.config.server)
    finally:
        await stream.aclose()
        record.timing(clock)
        record.truncated = stream.limiter.truncated
        if stream.limiter.upstream_usage or stream.limiter.delivered:
            await stream.limiter.usage_ready()
            price(gateway, snapshot, record, served.attempt, stream.limiter.usage())


def through_route(
    gateway: Gateway,
    exchange: Exchange,
    route: Route,
    requested_model: str,
    run: Callable[[Attempt], Awaitable[T]],
) -> Awaitable[Served[T]]:
    """Send a request through `route`: its weighted targets, retries, fallbacks and cooldowns
    (routing.dispatch), each attempt's target noted on the exchange's record and each failure
    counted. The one way to a route's upstreams, for a client's request and for each call of
    a council alike. Returns dispatch's coroutine (one coroutine less on every request's path):
    awaiting it raises AttemptsExhausted, or what `run` raises that is not an UpstreamError."""
    record = exchange.record

    def attempt(planned: Attempt) -> Awaitable[T]:
        record.provider, record.upstream_model = planned.target.provider, planned.upstream_model
        record.cost_usd = None  # an upstream was asked: unknown until its usage is priced
        return run(planned)

    return dispatch(
        route,
        requested_model,
        attempt,
        table=exchange.snapshot.table,
        board=gateway.board,
        deadline=exchange.clock.total_deadline,
        on_failure=lambda _, exc: record_upstream_error(gateway.metrics, record, exc),
    )


async def relay(
    request: web.Request,
    stream: StreamStart,
    headers: dict[str, str],
    gateway: Gateway,
    record: RequestRecord,
    server: ServerConfig,
) -> web.StreamResponse:
    """Write the stream to the client; an error after the start becomes a last error event.

    The bytes that end with [DONE] (often the whole stream, when it came in one read) go
    out with the end of the response in one write.
    """
    send_timeout = server.send_timeout
    response = EventStream(headers=headers, keepalive=server.sse_keepalive, send_timeout=send_timeout)
    await response.prepare(request)
    record.status = response.status
    try:
        data: bytes | None = stream.first
        try:
            while data is not None and not data.endswith(DONE):
                await write_bounded(request, response, data, send_timeout)
                data = await anext(stream.chunks, None)
        except GatewayError as exc:
            record.fail(exc)
            if isinstance(exc, UpstreamError):
                record_upstream_error(gateway.metrics, record, exc)
            data = stream.error_event(exc)
        await write_bounded(request, response, data or b"", send_timeout, last=True)
    except (ConnectionResetError, TimeoutError):  # the client went away, or stopped reading
        record.disconnected = True
    finally:
        response.stop_streaming()  # no more pings
    return response
