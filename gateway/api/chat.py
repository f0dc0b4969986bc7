"""POST /v1/chat/completions (OpenAI's chat completions API), streamed or not.

The endpoint's own part of the lifecycle: the request is held to its effective
max_tokens, sent through the target's adapter and transport, and its answer cut to
that budget whatever the upstream sends.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..pipeline.chunks import stream_chunks
from ..pipeline.exchange import complete, open_stream
from ..providers import UpstreamCall
from ..routing.dispatch import Attempt
from ..runtime import Snapshot
from ..stream.limiter import StreamLimiter
from ..stream.tokens import PromptTokens
from .chat_request import ChatRequest, parse_chat_request
from .lifecycle import Exchange, Reply, StreamStart


class ChatCompletions:
    """The chat completions endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> ChatRequest:
        return parse_chat_request(body, default_model=snapshot.config.default_model)

    async def attempt(self, exchange: Exchange, request: ChatRequest, planned: Attempt) -> Reply:
        snapshot, clock = exchange.snapshot, exchange.clock
        limits = planned.route.limits  # a fallback route holds the request to its own limits
        max_tokens = min(request.requested_max_tokens or limits.max_tokens, limits.max_tokens)
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
        prompt_tokens = PromptTokens(request.body["messages"], counter)
        clock.start_attempt(asyncio.get_running_loop().time(), limits)
        if not request.stream:
            return await complete(
                provider,
                transport,
                call,
                clock,
                counter=counter,
                prompt_tokens=prompt_tokens,
                transcript=exchange.transcript,
            )
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
            transcript=exchange.transcript,
        )
        started = StreamStart(upstream, limiter, chunks, b"")
        try:
            started.first = await anext(chunks)  # the answer's first chunk, with the role chunk held back before it
        except BaseException:
            await started.aclose()
            raise
        return started
