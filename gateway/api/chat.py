"""POST /v1/chat/completions (OpenAI's chat completions API), streamed or not.

The endpoint's own part of the lifecycle: the request is held to its effective
max_tokens, sent through the target's adapter and transport, and its answer cut to
that budget whatever the upstream sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..config import Limits, Route
from ..pipeline.chunks import stream_chunks
from ..pipeline.exchange import complete, open_stream
from ..providers import UpstreamCall
from ..routing.dispatch import Attempt
from ..runtime import Snapshot
from ..stream.limiter import StreamLimiter
from ..stream.tokens import PromptTokens, TokenCounter
from .chat_request import ChatRequest, parse_chat_request
from .lifecycle import Exchange, Reply, StreamStart


class ChatCompletions:
    """The chat completions endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> ChatRequest:
        return parse_chat_request(body, default_model=snapshot.config.default_model)

    async def reserve(self, exchange: Exchange, request: ChatRequest, route: Route) -> int:
        """The prompt's tokens, in the encoding of the route's first target, and max_tokens for every choice."""
        counter = exchange.snapshot.tokenizers.for_model(route.upstream_model or request.model)
        prompt_tokens = self.prompt_tokens(exchange, request, counter)
        await prompt_tokens.ready()  # a long prompt is counted on a worker thread
        return prompt_tokens() + request.choices * effective_max_tokens(request, route.limits)

    def prompt_tokens(self, exchange: Exchange, request: ChatRequest, counter: TokenCounter) -> PromptTokens:
        """The request's prompt tokens in `counter`'s encoding, counted at most once."""
        prompt_tokens = exchange.prompt_tokens
        if prompt_tokens is None or prompt_tokens.counter is not counter:
            messages = request.body["messages"]
            prompt_tokens = PromptTokens(messages, counter, most_chars=exchange.body_bytes)
            exchange.prompt_tokens = prompt_tokens
        return prompt_tokens

    async def attempt(self, exchange: Exchange, request: ChatRequest, planned: Attempt) -> Reply:
        snapshot, clock = exchange.snapshot, exchange.clock
        limits = planned.route.limits  # a fallback route holds the request to its own limits
        max_tokens = effective_max_tokens(request, limits)
        exchange.headers["x-gateway-max-tokens"] = str(max_tokens)
        provider = snapshot.providers[planned.target.provider]
        transport = snapshot.transports[planned.target.provider]
        call = UpstreamCall(
            body=request.body,
            model=planned.upstream_model,
            max_tokens=max_tokens,
            stream=request.stream,
            request_id=exchange.request_id,
            target=planned.target,
        )
        counter = snapshot.tokenizers.for_model(call.model)
        prompt_tokens = self.prompt_tokens(exchange, request, counter)
        clock.start_attempt(asyncio.get_running_loop().time(), limits)
        if not request.stream:
            return await complete(provider, transport, call, clock, counter=counter, prompt_tokens=prompt_tokens)
        upstream = await open_stream(provider, transport, call, clock)
        limiter = StreamLimiter(
            max_tokens=max_tokens, counter=counter, choices=request.choices, prompt_tokens=prompt_tokens
        )
        chunks = stream_chunks(
            upstream,
            provider,
            limiter,
            clock,
            include_usage=request.include_usage,
        )
        started = StreamStart(upstream, limiter, chunks, b"")
        try:
            started.first = await anext(chunks)  # the answer's first chunk, with the role chunk held back before it
        except BaseException:
            await started.aclose()
            raise
        return started


def effective_max_tokens(request: ChatRequest, limits: Limits) -> int:
    """Completion tokens a choice may have: the request's own limit, held to the route's."""
    return min(request.requested_max_tokens or limits.max_tokens, limits.max_tokens)
