"""POST /v1/chat/completions (OpenAI's chat completions API), streamed or not.

The endpoint's own part of the lifecycle: the request is held to its effective
max_tokens, sent through the target's adapter and transport, and its answer cut to
that budget whatever the upstream sends. A quorum route's request is answered by its
council instead (api.council).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import Route
from ..pipeline.chunks import stream_chunks
from ..pipeline.exchange import complete, open_stream
from ..routing.dispatch import Attempt
from ..runtime import Gateway, Snapshot
from ..stream.limiter import StreamLimiter
from .attempt import prepare, reserve_chat
from .chat_request import ChatRequest, parse_chat_request
from .council import answer_chat
from .lifecycle import Exchange, Reply, StreamStart


class ChatCompletions:
    """The chat completions endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> ChatRequest:
        return parse_chat_request(body, default_model=snapshot.config.default_model)

    async def reserve(self, exchange: Exchange, request: ChatRequest, route: Route) -> int:
        return await reserve_chat(exchange, request, route)

    async def attempt(self, exchange: Exchange, request: ChatRequest, planned: Attempt) -> Reply:
        clock = exchange.clock
        prepared = prepare(exchange, request, planned)
        provider, transport, call = prepared.provider, prepared.transport, prepared.call
        if not request.stream:
            return await complete(
                provider,
                transport,
                call,
                clock,
                counter=prepared.counter,
                prompt_tokens=prepared.prompt_tokens,
                transcript=exchange.transcript,
            )
        upstream = await open_stream(provider, transport, call, clock)
        limiter = StreamLimiter(
            max_tokens=prepared.max_tokens,
            counter=prepared.counter,
            choices=request.choices,
            prompt_tokens=prepared.prompt_tokens,
        )
        chunks = stream_chunks(
            upstream,
            provider,
            limiter,
            clock,
            include_usage=request.include_usage,
            transcript=exchange.transcript,
        )
        started = StreamStart(upstream, limiter, chunks, b"")
        try:
            started.first = await anext(chunks)  # the answer's first chunk, with the role chunk held back before it
        except BaseException:
            await started.aclose()
            raise
        return started

    async def convene(
        self, request: web.Request, gateway: Gateway, exchange: Exchange, parsed: ChatRequest, route: Route
    ) -> web.StreamResponse:
        return await answer_chat(request, gateway, exchange, parsed, route)
