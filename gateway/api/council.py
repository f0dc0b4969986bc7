"""A quorum route's answer to a chat completion: its council convened (routing.quorum), each
call made through its member's route (api.members), and the verdict sent as an ordinary
OpenAI answer, with the council's work in one extra top-level field, `quorum`.

Not streamed: a `chat.completion` once the verdict is in. Streamed: the response starts
with the verdict's first delta, as a route's stream starts with its answer's first chunk,
so a council that fails before it is an error status (502 quorum_not_reached, ...); the
verdict then streams as the judge or `fastest`'s winner writes it (a vote's comes whole),
and the last chunk before [DONE] carries `quorum` (the usage chunk when the client asked
for usage, else the finish chunk). `usage` is summed over every upstream call.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from ..config import QUORUM_PROVIDER, Quorum, Route
from ..errors import GatewayError, InvalidRequest, QuorumNotReached, UpstreamTimeout
from ..observability.metrics import Metrics
from ..routing.quorum.council import Council, MemberCall, Verdict
from ..routing.quorum.events import Event, VerdictDelta
from ..runtime import Gateway
from ..server.event_stream import EventStream, write_bounded
from ..stream.sse import DONE_DATA, encode_events, encode_json
from .attempt import effective_max_tokens
from .chat_request import ChatRequest
from .lifecycle import JSON, Exchange
from .members import Members


class Sitting:
    """A council at work in a task of its own, until the loop's time `deadline`.

    `next()` gives its events in order, then its Verdict, or raises its error. Leaving the
    `async with` (the answer sent, an error, the client gone) cancels it, and so every call
    in flight, and counts it in the council's metrics; `outcome` is how it ended (one of
    metrics.COUNCIL_OUTCOMES), which the endpoint corrects once its answer has begun.
    """

    def __init__(
        self,
        quorum: Quorum,
        call: MemberCall,
        conversation: list[Any],
        deadline: float,
        *,
        route: Route,
        metrics: Metrics,
    ) -> None:
        self._queue: asyncio.Queue[Event | Verdict | BaseException] = asyncio.Queue()
        self.council = Council(quorum, call, self._queue.put_nowait)
        self.conversation = conversation
        self.deadline = deadline
        self.route = route
        self.metrics = metrics
        self.outcome = "error"
        self.verdict: Verdict | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sitting:
        self._task = asyncio.create_task(self._sit())
        return self

    async def _sit(self) -> None:
        try:
            async with asyncio.timeout_at(self.deadline):
                verdict = await self.council.run(self.conversation)
        except TimeoutError:
            self._queue.put_nowait(UpstreamTimeout("total", self.route.limits.timeout))
        except Exception as exc:  # the council's error (or a bug), for the endpoint to raise
            self._queue.put_nowait(exc)
        else:
            self._queue.put_nowait(verdict)

    async def next(self) -> Event | Verdict:
        """The council's next event, or its verdict (the last item); raises its error."""
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self.outcome = outcome_of(item, self.council)
            raise item
        if isinstance(item, Verdict):
            self.verdict, self.outcome = item, "ok"
        return item

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if isinstance(exc, asyncio.CancelledError):
            self.outcome = "client_gone"
        self.count()

    def count(self) -> None:
        quorum = self.route.quorum
        assert quorum is not None
        model, strategy = self.route.model, quorum.strategy
        self.metrics.council_requests.labels(model, strategy, self.outcome).inc()
        verdict = self.verdict
        if verdict is not None:
            self.metrics.council_rounds.labels(model, strategy).observe(len(verdict.rounds))
            if verdict.agreed is not None:
                self.metrics.council_agreement.labels(model, strategy, str(verdict.agreed).lower()).inc()


def outcome_of(exc: BaseException, council: Council) -> str:
    """The council outcome of an error that ended it."""
    if isinstance(exc, QuorumNotReached):
        return "too_few_answers"
    if isinstance(exc, UpstreamTimeout) and exc.kind == "total":
        return "timeout"
    if isinstance(exc, GatewayError) and council.judging:
        return "judge_failed"
    return "error"


def council_max_tokens(request: ChatRequest, route: Route) -> int:
    """The limit of each member's answer and of the final one: the request's, at most the route's.
    Raises InvalidRequest for more than one choice (a council answers one)."""
    if request.choices != 1:
        raise InvalidRequest("A quorum route answers with one choice: 'n' must be 1.", param="n")
    return effective_max_tokens(request, route.limits)


def convene(
    http: web.Request, gateway: Gateway, exchange: Exchange, request: ChatRequest, route: Route
) -> tuple[Sitting, int]:
    """The route's council, ready to sit, and its max_tokens."""
    quorum = route.quorum
    assert quorum is not None, "only a quorum route is convened"
    max_tokens = council_max_tokens(request, route)
    members = Members(http, gateway, exchange, request, max_tokens)
    deadline = exchange.clock.total_deadline
    sitting = Sitting(quorum, members, request.body["messages"], deadline, route=route, metrics=gateway.metrics)
    return sitting, max_tokens


async def answer_chat(
    http: web.Request, gateway: Gateway, exchange: Exchange, request: ChatRequest, route: Route
) -> web.StreamResponse:
    """The council's verdict as a chat completion, streamed or not (see the module's docstring)."""
    sitting, max_tokens = convene(http, gateway, exchange, request, route)
    record = exchange.record
    headers = {**exchange.headers, "x-gateway-max-tokens": str(max_tokens), "x-gateway-provider": QUORUM_PROVIDER}
    identity = {
        "id": f"chatcmpl-quorum-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
    }
    async with sitting:
        if not request.stream:
            while not isinstance(item := await sitting.next(), Verdict):
                pass
            record.usage(item.usage())
            record.truncated = item.final.truncated
            headers["x-gateway-attempts"] = str(len(item.calls))
            return web.Response(body=orjson.dumps(completion(identity, item)), content_type=JSON, headers=headers)
        return await stream_verdict(http, gateway, exchange, request, sitting, identity, headers)


async def stream_verdict(
    http: web.Request,
    gateway: Gateway,
    exchange: Exchange,
    request: ChatRequest,
    sitting: Sitting,
    identity: dict[str, Any],
    headers: dict[str, str],
) -> web.StreamResponse:
    """Wait for the verdict's first delta, then stream it; errors before it are raised (an
    error status), after it written as a last error event."""
    record, server = exchange.record, exchange.snapshot.config.server
    item = await sitting.next()
    while not isinstance(item, (VerdictDelta, Verdict)):
        item = await sitting.next()
    response = EventStream(headers=headers, keepalive=server.sse_keepalive, send_timeout=server.send_timeout)
    await response.prepare(http)
    record.status, record.first_token_at = response.status, time.perf_counter()
    first = True
    try:
        try:
            while not isinstance(item, Verdict):
                if isinstance(item, VerdictDelta):
                    delta = {"role": "assistant", **item.delta} if first else item.delta
                    first = False
                    await write_bounded(http, response, encode_json(chunk(identity, delta)), server.send_timeout)
                item = await sitting.next()
        except GatewayError as exc:
            sitting.outcome = "broken"
            record.fail(exc)
            await write_bounded(http, response, encode_json(exc.body()), server.send_timeout, last=True)
            return response
        record.usage(item.usage())
        record.truncated = item.final.truncated
        ending = last_chunks(identity, item, include_usage=request.include_usage, role=first)
        await write_bounded(
            http, response, encode_events([*map(orjson.dumps, ending), DONE_DATA]), server.send_timeout, last=True
        )
    except (ConnectionResetError, TimeoutError):  # the client went away, or stopped reading
        record.disconnected = True
        sitting.outcome = "client_gone"
    finally:
        response.stop_streaming()
    return response


def chunk(identity: dict[str, Any], delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    """A `chat.completion.chunk` of the verdict's one choice."""
    return {**identity, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def last_chunks(identity: dict[str, Any], verdict: Verdict, *, include_usage: bool, role: bool) -> list[dict[str, Any]]:
    """The finish chunk, and the usage chunk when asked for; `quorum` on the last of them.
    `role`: no delta has gone out yet (an empty answer), so the finish chunk carries the role."""
    finish = chunk(identity, {"role": "assistant"} if role else {}, verdict.final.finish_reason or "stop")
    ending = [finish]
    if include_usage:
        ending.append({**identity, "choices": [], "usage": verdict.usage()})
    ending[-1]["quorum"] = verdict.report()
    return ending


def completion(identity: dict[str, Any], verdict: Verdict) -> dict[str, Any]:
    """The verdict as OpenAI's `chat.completion`, with `quorum`."""
    final = verdict.final
    message: dict[str, Any] = {
        "role": "assistant",
        "content": final.content if final.content or not final.tool_calls else None,
        "refusal": final.refusal,
    }
    if final.tool_calls:
        message["tool_calls"] = [
            {key: value for key, value in call.items() if key != "index"} for call in final.tool_calls
        ]
    return {
        **identity,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": final.finish_reason or "stop"}],
        "usage": verdict.usage(),
        "quorum": verdict.report(),
    }
