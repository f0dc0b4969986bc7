"""Each call of a council (a member in a round, or the judge), sent through its member's route
as any request is: that route's weighted targets, retries, fallbacks and cooldowns
(lifecycle.through_route), its limits (its rate limits too: a call over one is refused,
and left out as a failed member), and max_tokens no more than the council's.

Calls are always streamed upstream, so that a debate's members can be watched as they
answer and `fastest` knows when an answer begins; an attempt ends, as a client's stream
does, with the first chunk of the answer (content, refusal, tool call or finish reason),
so a failure before it is retried or falls back like any other.

Each call has its own record, counted under the member's route (metrics only: the
client's request writes the one access line), and listed on the client request's
record (`calls`) for the ledger.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from ..observability.record import CallRecord, RequestRecord, count, record_upstream_error
from ..pipeline.answers import answer_chunks
from ..pipeline.clock import Clock
from ..pipeline.exchange import open_stream
from ..policy import Ticket
from ..routing.dispatch import Attempt, AttemptsExhausted
from ..routing.quorum.answers import Answer
from ..runtime import Gateway
from ..stream.limiter import StreamLimiter
from ..upstream.base import UpstreamResponse
from .attempt import prepare, reserve_chat
from .chat_request import ChatRequest
from .lifecycle import CLIENT_CLOSED_REQUEST, Exchange, through_route
from .spending import admit, price

PLAIN_DROPPED = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "functions", "function_call")
NOT_FORWARDED = ("stream_options", "n")  # the client's, about its own answer: each call is one streamed choice
ANSWER_FIELDS = ("content", "refusal", "tool_calls")  # of a delta: what a council reads


@dataclass(slots=True)
class MemberStream:
    """A member's stream whose answer has begun; `held` are its chunks so far."""

    upstream: UpstreamResponse
    limiter: StreamLimiter
    chunks: AsyncGenerator[list[dict[str, Any]], None]
    held: list[dict[str, Any]] = field(default_factory=list)

    async def aclose(self) -> None:
        """Stop reading and drop the upstream connection (the upstream stops generating)."""
        await self.chunks.aclose()
        self.upstream.close()


async def member_attempt(exchange: Exchange, request: ChatRequest, planned: Attempt) -> MemberStream:
    """One attempt at `planned`'s target: returns once the answer has begun; raises UpstreamError
    when it failed before (dispatch decides what next)."""
    prepared = prepare(exchange, request, planned)
    clock = exchange.clock
    upstream = await open_stream(prepared.provider, prepared.transport, prepared.call, clock)
    limiter = StreamLimiter(
        max_tokens=prepared.max_tokens, counter=prepared.counter, choices=1, prompt_tokens=prepared.prompt_tokens
    )
    started = MemberStream(upstream, limiter, answer_chunks(upstream, prepared.provider, limiter, clock))
    try:
        async for chunks in started.chunks:
            started.held.extend(chunks)
            if limiter.begun:
                return started
        raise UpstreamProtocolError("The upstream's stream ended before its answer began.")
    except BaseException:
        await started.aclose()
        raise


class Members:
    """The council's calls (routing.quorum.council.MemberCall) for one client request."""

    def __init__(
        self, http: web.Request, gateway: Gateway, exchange: Exchange, request: ChatRequest, max_tokens: int
    ) -> None:
        """`exchange` is the client request's; `max_tokens` the council's limit for each answer."""
        self.http = http
        self.gateway = gateway
        self.exchange = exchange
        self.body = {key: value for key, value in request.body.items() if key not in NOT_FORWARDED}
        self.max_tokens = max_tokens
        self.calls: list[CallRecord] = []
        exchange.record.calls = self.calls

    async def __call__(
        self,
        answer: Answer,
        messages: list[Any],
        *,
        begun: Callable[[], bool],
        delta: Callable[[dict[str, Any]], None],
        plain: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        snapshot, parent = self.exchange.snapshot, self.exchange.record
        route = snapshot.table.by_name(answer.member)
        assert route is not None, "members and judges are exact routes (checked at load)"
        record = RequestRecord(
            request_id=parent.request_id,
            method=parent.method,
            path=parent.path,
            client=parent.client,
            started=time.perf_counter(),
            at=parent.at,
            route=route.model,
            provider=route.provider,
            key=parent.key,
            stream=True,
            routed=True,
        )
        self.gateway.metrics.inflight_of(route.model).inc()
        clock = Clock(route.limits, loop.time(), loop.time)
        exchange = Exchange(parent.request_id, snapshot, record, clock, self.exchange.key)
        body = {**self.body, "messages": messages, "stream": True}
        if plain:
            body = {key: value for key, value in body.items() if key not in PLAIN_DROPPED}
        request = ChatRequest(
            body=body,
            model=route.model,
            stream=True,
            requested_max_tokens=self.max_tokens,
            choices=1,
            include_usage=False,
        )
        stream: MemberStream | None = None
        served_attempt: Attempt | None = None
        ticket: Ticket | None = None  # the member route's own rate limits (the key's count the client's request)
        try:
            if route.budget is not None:  # the key's budget was held for the whole council (api.spending)
                await admit(self.gateway, snapshot, None, route, request, len(orjson.dumps(body)), record)
            ticket = await self.gateway.limiter.admit(
                None,
                route,
                ticket=f"{parent.request_id}/{answer.role}/{answer.member}/{answer.round}",
                tokens=lambda: reserve_chat(exchange, request, route),
            )
            served = await through_route(
                self.gateway, exchange, route, route.model, lambda planned: member_attempt(exchange, request, planned)
            )
            stream, served_attempt = served.result, served.attempt
            answer.provider, answer.model = served.attempt.target.provider, served.attempt.upstream_model
            record.status = 200
            if not begun():  # another answer began first (fastest): the council wants none of this one
                record.status, record.disconnected = CLIENT_CLOSED_REQUEST, True
                return
            clock.first_token_at = time.perf_counter()
            take(answer, stream.held, delta)
            async for chunks in stream.chunks:
                take(answer, chunks, delta)
        except AttemptsExhausted as exhausted:
            answer.failure = exhausted.error
            record.fail(exhausted.error)
            record.status = exhausted.error.status
        except GatewayError as exc:  # after the answer began; or refused before any attempt (a 400, a 429)
            answer.failure = exc
            record.fail(exc)
            if isinstance(exc, UpstreamError):
                record_upstream_error(self.gateway.metrics, record, exc)
            record.status = record.status or exc.status
        except asyncio.CancelledError:  # the client went away, the council's time ran out, or another won
            record.disconnected = True
            record.status = record.status or CLIENT_CLOSED_REQUEST
            raise
        finally:
            if stream is not None:
                stream.upstream.close()  # at once, whatever comes next: the upstream stops generating
            try:
                if stream is not None:
                    await self._settle(answer, stream, record, served_attempt)
            finally:
                if ticket is not None:
                    ticket.settle(record.tokens_used)
                if not answer.provider:  # it failed: the last target tried
                    answer.provider, answer.model = record.provider, record.upstream_model or ""
                answer.duration_ms = round((time.perf_counter() - record.started) * 1000)
                record.timing(clock)
                self.calls.append(CallRecord(answer.member, answer.role, answer.round, record))
                count(self.gateway.metrics, record, time.perf_counter())

    async def _settle(
        self, answer: Answer, stream: MemberStream, record: RequestRecord, served: Attempt | None
    ) -> None:
        """Stop reading the stream, and note what it used and cost: the upstream's usage, else
        the gateway's own count of what it delivered (a call stopped before its end included)."""
        await stream.aclose()
        limiter = stream.limiter
        answer.truncated = record.truncated = limiter.truncated
        if limiter.upstream_usage or limiter.delivered:
            await limiter.usage_ready()
            answer.usage = limiter.usage()
            price(self.gateway, self.exchange.snapshot, record, served, answer.usage)


def take(answer: Answer, chunks: list[dict[str, Any]], delta: Callable[[dict[str, Any]], None]) -> None:
    """Add the chunks' choice 0 to the answer, passing on each delta that carries some of it."""
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            if choice.get("index") != 0:
                continue
            value = choice.get("delta") or {}
            answer.add(value, choice.get("finish_reason"))
            part = {key: value[key] for key in ANSWER_FIELDS if value.get(key)}
            if part:
                delta(part)
