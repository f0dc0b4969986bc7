"""POST /api/v1/debates: a quorum route's council, watched live as a server-sent event stream.

The body is a chat completions body naming a quorum route (`stream` is not read: the
answer is always an event stream). Each event is an `event:` line with its name, then
one `data:` line of JSON:

    round          {"round": 1}                                  a round begins
    member.delta   {"round", "member", "content"}                a member's text as it streams
    member.done    {"round", "member", "finish_reason", "usage"}
    member.error   {"round", "member", "error": {"message", "code"}}   the member is left out
    verdict.delta  {"content"}                                   the final answer as it streams
    done           {"quorum": {...}, "usage": {...}}             last: the council's work, usage summed
    error          {"error": {"message", "type", "param", "code"}}   last, instead of done

Errors before the stream (a bad body, an unknown model or one that is not a quorum
route, a key that may not use it) are answered as any model endpoint's, in OpenAI's
error shape with their status.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web

from ..config import Route
from ..errors import GatewayError, InvalidRequest
from ..routing.dispatch import Attempt
from ..routing.quorum.council import Verdict
from ..routing.quorum.events import VerdictDelta
from ..runtime import Gateway, Snapshot
from ..server.event_stream import EventStream, write_bounded
from ..stream.sse import encode_named
from .attempt import reserve_chat
from .chat_request import ChatRequest, parse_chat_request
from .council import convene
from .lifecycle import Exchange, Reply


class Debates:
    """The debates endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> ChatRequest:
        request = parse_chat_request(body, default_model=snapshot.config.default_model)
        return dataclasses.replace(request, stream=True)

    async def reserve(self, exchange: Exchange, request: ChatRequest, route: Route) -> int:
        return await reserve_chat(exchange, request, route)

    async def attempt(self, exchange: Exchange, request: ChatRequest, planned: Attempt) -> Reply:
        """A route that is not a quorum route has nothing to debate: refused before anything is sent."""
        raise InvalidRequest(
            f"The model {request.model!r} is not a quorum route: /api/v1/debates needs a route with `quorum:`.",
            param="model",
            code="not_a_quorum_route",
        )

    async def convene(
        self, request: web.Request, gateway: Gateway, exchange: Exchange, parsed: ChatRequest, route: Route
    ) -> web.StreamResponse:
        sitting, _ = convene(request, gateway, exchange, parsed, route)
        record, server = exchange.record, exchange.snapshot.config.server
        response = EventStream(
            headers=exchange.headers, keepalive=server.sse_keepalive, send_timeout=server.send_timeout
        )
        async with sitting:
            await response.prepare(request)
            record.status = response.status
            try:
                try:
                    while not isinstance(item := await sitting.next(), Verdict):
                        if isinstance(item, VerdictDelta) and record.first_token_at is None:
                            record.first_token_at = time.perf_counter()  # the verdict's first text
                        event = encode_named(item.name, item.data())
                        await write_bounded(request, response, event, server.send_timeout)
                    usage = item.usage()
                    record.usage(usage)
                    record.truncated = item.final.truncated
                    done = encode_named("done", {"quorum": item.report(), "usage": usage})
                    await write_bounded(request, response, done, server.send_timeout, last=True)
                except GatewayError as exc:
                    record.fail(exc)
                    await write_bounded(
                        request, response, encode_named("error", exc.body()), server.send_timeout, last=True
                    )
            except (ConnectionResetError, TimeoutError):  # the client went away, or stopped reading
                record.disconnected = True
                sitting.outcome = "client_gone"
            finally:
                response.stop_streaming()
        return response
