"""POST /v1/responses (OpenAI's Responses API, `CreateResponse` in its API reference), streamed or not.

Routed by `model` through the same table, keys, retries, fallbacks, timeouts, metrics and
access log as chat completions (api.lifecycle), and held to the same max_tokens: the
smallest of the request's `max_output_tokens`, the route's and the gateway's
`max_tokens`, counted with tiktoken and cut exactly whatever the upstream sends.

Per target: an openai or azure upstream that serves the Responses API itself
(`responses_api`) gets the request as it came (with its model name and the effective
`max_output_tokens`), and its Response or events go on as they came, unless cut. Every
other upstream gets the request translated into chat completions (providers.responses),
and its answer comes back translated into a Response or the Responses event sequence.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from ..config import Limits, Route
from ..errors import InvalidRequest
from ..pipeline.chunks import stream_chunks
from ..pipeline.exchange import Completed, complete_limited, fetch, open_request_stream, open_stream
from ..providers import Provider, UpstreamCall
from ..providers.responses import ResponsesStream, base_response, chat_body, response_from_completion
from ..routing.dispatch import Attempt
from ..runtime import Gateway, Snapshot
from ..stream.limiter import StreamLimiter
from ..stream.responses_limiter import ResponsesLimiter, limit_response
from ..stream.responses_state import chat_usage
from ..stream.tokens import INLINE_CHARS, PromptTokens, TokenCounter, prompt_extras
from ..upstream.base import Transport
from .lifecycle import Exchange, NotForQuorumRoutes, Reply, StreamStart
from .parsing import model_of, positive_int, stream_of


@dataclass(frozen=True, slots=True)
class ResponsesRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    requested_max_tokens: int | None  # max_output_tokens

    @property
    def prompt(self) -> Any:
        """The instructions and input, as the client sent them (kept when ledger.store_messages is on)."""
        return {"instructions": self.body.get("instructions"), "input": self.body.get("input")}

    def completion_cap(self, limits: Limits) -> int:
        """The most output tokens its answer may hold under `limits`."""
        return min(self.requested_max_tokens or limits.max_tokens, limits.max_tokens)


def parse_responses_request(body: dict[str, Any], *, default_model: str | None) -> ResponsesRequest:
    """What routing and safety need; the rest is checked where the request is translated."""
    model = model_of(body, default_model=default_model)
    stream = stream_of(body)
    value = body.get("input")
    if value is not None and not isinstance(value, (str, list)):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    requested = body.get("max_output_tokens")
    if requested is not None and not positive_int(requested):
        raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
    return ResponsesRequest(body=body, model=model, stream=stream, requested_max_tokens=requested)


@dataclass(frozen=True, slots=True)
class Target:
    """One attempt's upstream, and what the request is held to there."""

    provider: Provider
    transport: Transport
    call: UpstreamCall
    counter: TokenCounter


class Responses:
    """The Responses endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> ResponsesRequest:
        return parse_responses_request(body, default_model=snapshot.config.default_model)

    async def reserve(self, exchange: Exchange, request: ResponsesRequest, route: Route) -> int:
        """The input's tokens, in the encoding of the route's first target, and its max_output_tokens."""
        counter = exchange.snapshot.tokenizers.for_model(route.upstream_model or request.model)
        prompt_tokens = PromptTokens(
            input_texts(request.body), counter, most_chars=exchange.body_bytes, extras=prompt_extras(request.body)
        )
        await prompt_tokens.ready()  # a long input is counted on a worker thread
        return prompt_tokens() + max_output_tokens(request, route.limits)

    async def attempt(self, exchange: Exchange, request: ResponsesRequest, planned: Attempt) -> Reply:
        snapshot = exchange.snapshot
        limits = planned.route.limits  # a fallback route holds the request to its own limits
        max_tokens = max_output_tokens(request, limits)
        exchange.headers["x-gateway-max-tokens"] = str(max_tokens)
        provider = snapshot.providers[planned.target.provider]
        native = provider.config.responses_api
        call = UpstreamCall(
            body=request.body if native else chat_body(request.body),  # a 400 before anything is sent
            model=planned.upstream_model,
            max_tokens=max_tokens,
            stream=request.stream,
            request_id=exchange.request_id,
            target=planned.target,
        )
        transport = snapshot.transports[planned.target.provider]
        target = Target(provider, transport, call, snapshot.tokenizers.for_model(call.model))
        exchange.clock.start_attempt(asyncio.get_running_loop().time(), limits)
        if native:
            return await forward(exchange, request, target)
        return await translate(exchange, request, target)

    async def convene(
        self, request: web.Request, gateway: Gateway, exchange: Exchange, parsed: Any, route: Route
    ) -> web.StreamResponse:
        """A quorum route answers chat completions and /api/v1/debates only."""
        raise NotForQuorumRoutes(route.model, "/v1/responses")


async def translate(exchange: Exchange, request: ResponsesRequest, target: Target) -> Reply:
    """The request as chat completions; the answer as a Response or the Responses events."""
    provider, call, clock = target.provider, target.call, exchange.clock
    transport = target.transport
    prompt_tokens = PromptTokens(call.body["messages"], target.counter, extras=prompt_extras(call.body))
    base = base_response(request.body, model=call.model, max_output_tokens=call.max_tokens)
    if not call.stream:
        limited = await complete_limited(
            provider, transport, call, clock, counter=target.counter, prompt_tokens=prompt_tokens
        )
        response = response_from_completion(limited.completion, base)
        return Completed(orjson.dumps(response), limited.completion.get("usage"), limited.truncated)
    upstream = await open_stream(provider, transport, call, clock)
    limiter = StreamLimiter(max_tokens=call.max_tokens, counter=target.counter, choices=1, prompt_tokens=prompt_tokens)
    events = ResponsesStream(base)
    chunks = stream_chunks(upstream, provider, limiter, clock, include_usage=False, output=events)
    return await begun(StreamStart(upstream, limiter, chunks, b"", events.error_event))


async def forward(exchange: Exchange, request: ResponsesRequest, target: Target) -> Reply:
    """The request as it came, to an upstream that serves the Responses API; its answer cut to the budget."""
    provider, call, clock = target.provider, target.call, exchange.clock
    transport = target.transport
    upstream_request = provider.responses_request(call)
    # when the upstream gives no usage
    prompt_tokens = PromptTokens(input_texts(request.body), target.counter, extras=prompt_extras(request.body))
    if not call.stream:
        payload = await fetch(provider, transport, upstream_request, clock)
        response = provider.translate_responses(payload)
        limit = functools.partial(
            limit_response, response, max_tokens=call.max_tokens, counter=target.counter, prompt_tokens=prompt_tokens
        )
        if len(payload) > INLINE_CHARS:  # a long answer is counted on a worker thread
            await prompt_tokens.ready()
            truncated, changed = await asyncio.to_thread(limit)
        else:
            truncated, changed = limit()
        body = orjson.dumps(response) if changed else payload
        return Completed(body, chat_usage(response.get("usage")), truncated)
    upstream = await open_request_stream(provider, transport, upstream_request, clock)
    limiter = ResponsesLimiter(max_tokens=call.max_tokens, counter=target.counter, prompt_tokens=prompt_tokens)
    chunks = stream_chunks(
        upstream,
        provider,
        limiter,
        clock,
        include_usage=False,
        translator=provider.responses_events(),
        output=limiter,
    )
    return await begun(StreamStart(upstream, limiter, chunks, b"", limiter.error_event))


async def begun(started: StreamStart) -> StreamStart:
    """The stream, once its answer has begun (what comes before it held back, so that an error
    until then is the attempt's, which dispatch may retry)."""
    try:
        started.first = await anext(started.chunks)
    except BaseException:
        await started.aclose()
        raise
    return started


def max_output_tokens(request: ResponsesRequest, limits: Limits) -> int:
    """The output tokens the request may have: its own limit, held to the route's."""
    return min(request.requested_max_tokens or limits.max_tokens, limits.max_tokens)


def input_texts(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's instructions and input as chat-like messages, for counting its tokens."""
    return [{"role": "system", "content": body.get("instructions")}, {"role": "user", "content": body.get("input")}]
