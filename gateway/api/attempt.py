"""What every chat attempt at a target starts with: the request held to its route's
max_tokens, the adapter's call, and the counters of its tokens. Shared by the chat
endpoint's attempts and by each call of a council (api.members).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import Limits, Route
from ..providers import Provider, UpstreamCall
from ..routing.dispatch import Attempt
from ..stream.tokens import PromptTokens, TokenCounter, prompt_extras
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
    max_tokens = effective_max_tokens(request, limits)
    exchange.headers["x-gateway-max-tokens"] = str(max_tokens)
    call = UpstreamCall(
        body=request.body,
        model=planned.upstream_model,
        max_tokens=max_tokens,
        stream=request.stream,
        request_id=exchange.request_id,
        target=planned.target,
        choices=request.choices,
    )
    counter = snapshot.tokenizers.for_model(call.model)
    exchange.clock.start_attempt(asyncio.get_running_loop().time(), limits)
    return Prepared(
        provider=snapshot.providers[planned.target.provider],
        transport=snapshot.transports[planned.target.provider],
        call=call,
        counter=counter,
        prompt_tokens=prompt_tokens(exchange, request, counter),
        max_tokens=max_tokens,
    )


def effective_max_tokens(request: ChatRequest, limits: Limits) -> int:
    """Completion tokens a choice may have: the request's own limit, held to the route's."""
    return min(request.requested_max_tokens or limits.max_tokens, limits.max_tokens)


def prompt_tokens(exchange: Exchange, request: ChatRequest, counter: TokenCounter) -> PromptTokens:
    """The request's prompt tokens in `counter`'s encoding, counted at most once (for its
    admission against a tokens-per-minute limit, and for its usage)."""
    counted = exchange.prompt_tokens
    if counted is None or counted.counter is not counter:
        counted = PromptTokens(
            request.body["messages"], counter, most_chars=exchange.body_bytes, extras=prompt_extras(request.body)
        )
        exchange.prompt_tokens = counted
    return counted


async def reserve_chat(exchange: Exchange, request: ChatRequest, route: Route) -> int:
    """The most tokens a chat request may use on `route`: the prompt's, in the encoding of the
    route's first target, and max_tokens for every choice."""
    counter = exchange.snapshot.tokenizers.for_model(route.upstream_model or request.model)
    counted = prompt_tokens(exchange, request, counter)
    await counted.ready()  # a long prompt is counted on a worker thread
    return counted() + request.choices * effective_max_tokens(request, route.limits)
