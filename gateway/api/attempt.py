"""What every chat attempt at a target starts with: the request held to its route's
max_tokens, the adapter's call, and the counters of its tokens. Shared by the chat
endpoint's attempts and by each call of a council (api.members).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..providers import Provider, UpstreamCall
from ..routing.dispatch import Attempt
from ..stream.tokens import PromptTokens, TokenCounter
from ..upstream.base import Transport
from .chat_request import ChatRequest
from .lifecycle import Exchange


@dataclass(frozen=True, slots=True)
class Prepared:
    provider: Provider
    transport: Transport
    call: UpstreamCall
    counter: TokenCounter  # in the upstream model's encoding
    prompt_tokens: PromptTokens
    max_tokens: int  # the effective limit, per choice


def prepare(exchange: Exchange, request: ChatRequest, planned: Attempt) -> Prepared:
    """The attempt at `planned`'s target, ready to send; starts the attempt's clock under its
    route's limits (a fallback route holds the request to its own)."""
    snapshot = exchange.snapshot
    limits = planned.route.limits
    max_tokens = min(request.requested_max_tokens or limits.max_tokens, limits.max_tokens)
    exchange.headers["x-gateway-max-tokens"] = str(max_tokens)
    call = UpstreamCall(
        body=request.body,
        model=planned.upstream_model,
        max_tokens=max_tokens,
        stream=request.stream,
        request_id=exchange.request_id,
        target=planned.target,
    )
    counter = snapshot.tokenizers.for_model(call.model)
    exchange.clock.start_attempt(asyncio.get_running_loop().time(), limits)
    return Prepared(
        provider=snapshot.providers[planned.target.provider],
        transport=snapshot.transports[planned.target.provider],
        call=call,
        counter=counter,
        prompt_tokens=PromptTokens(request.body["messages"], counter),
        max_tokens=max_tokens,
    )
