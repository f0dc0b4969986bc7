"""POST /v1/embeddings (OpenAI's embeddings API, `CreateEmbeddingRequest` in its API reference).

Routed by `model` through the same table, keys, retries, fallbacks, metrics and access
log as chat completions (api.lifecycle). The gateway checks `input`, `encoding_format`,
`dimensions` and `user`, forwards the body as it came (with the upstream's model name),
and sends the upstream's answer on as it came: float vectors and base64 strings alike.
The request's tokens are its input tokens: the upstream's `usage.prompt_tokens`, else the
gateway's own count (tiktoken, in the upstream model's encoding).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config import Limits, Route
from ..errors import InvalidRequest, UpstreamProtocolError
from ..pipeline.exchange import Completed, fetch
from ..providers import UpstreamCall
from ..routing.dispatch import Attempt
from ..runtime import Gateway, Snapshot
from ..stream.limiter import believable_count
from ..stream.tokens import INLINE_CHARS, count_input_tokens, embedding_inputs, input_chars
from .lifecycle import Exchange, NotForQuorumRoutes, Reply
from .parsing import model_of, positive_int

MAX_INPUTS = 2048  # items of an input array (OpenAI's limit)
ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True, slots=True)
class EmbeddingsRequest:
    body: dict[str, Any]
    model: str
    stream: bool = False  # embeddings are never streamed

    @property
    def prompt(self) -> Any:
        """The input, as the client sent it (kept when ledger.store_messages is on)."""
        return self.body.get("input")

    def completion_cap(self, limits: Limits) -> int:
        """An embedding has no completion tokens."""
        return 0


def parse_embeddings_request(body: dict[str, Any], *, default_model: str | None) -> EmbeddingsRequest:
    """The request, checked; raises InvalidRequest naming the bad field."""
    model = model_of(body, default_model=default_model)
    check_input(body.get("input"))
    encoding_format = body.get("encoding_format")
    if encoding_format is not None and encoding_format not in ENCODING_FORMATS:
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = body.get("dimensions")
    if dimensions is not None and not positive_int(dimensions):
        raise InvalidRequest("'dimensions' must be a positive integer.", param="dimensions")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    return EmbeddingsRequest(body=body, model=model)


def check_input(value: Any) -> None:
    """A non-empty string, an array of them, a token array, or an array of token arrays."""
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be an empty string.", param="input")
        return
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a string, an array of strings, an array of tokens or an array of token arrays.",
            param="input",
        )
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"'input' may hold at most {MAX_INPUTS} items.", param="input")
    if all(is_token(item) for item in value):
        return
    for index, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                raise InvalidRequest(f"'input[{index}]' must not be an empty string.", param=f"input[{index}]")
        elif not (isinstance(item, list) and item and all(is_token(token) for token in item)):
            raise InvalidRequest(
                f"'input[{index}]' must be a string or a non-empty array of tokens (integers).", param=f"input[{index}]"
            )
    if len({isinstance(item, str) for item in value}) > 1:
        raise InvalidRequest("'input' must hold only strings or only token arrays.", param="input")


def is_token(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class Embeddings:
    """The embeddings endpoint, as the lifecycle's `Endpoint`."""

    def parse(self, body: dict[str, Any], snapshot: Snapshot) -> EmbeddingsRequest:
        return parse_embeddings_request(body, default_model=snapshot.config.default_model)

    async def reserve(self, exchange: Exchange, request: EmbeddingsRequest, route: Route) -> int:
        """The input's tokens, in the encoding of the route's first target (embeddings make no others)."""
        counter = exchange.snapshot.tokenizers.for_model(route.upstream_model or request.model)
        inputs = request.body.get("input")
        if input_chars(inputs) > INLINE_CHARS:
            return await asyncio.to_thread(count_input_tokens, inputs, counter)
        return count_input_tokens(inputs, counter)

    async def attempt(self, exchange: Exchange, request: EmbeddingsRequest, planned: Attempt) -> Reply:
        snapshot, clock = exchange.snapshot, exchange.clock
        provider = snapshot.providers[planned.target.provider]
        call = UpstreamCall(
            body=request.body,
            model=planned.upstream_model,
            max_tokens=0,
            stream=False,
            request_id=exchange.request_id,
            target=planned.target,
        )
        upstream_request = provider.embeddings_request(call)  # Anthropic: a 400, before anything is sent
        clock.start_attempt(asyncio.get_running_loop().time(), planned.route.limits)
        payload = await fetch(provider, snapshot.transports[planned.target.provider], upstream_request, clock)
        answer = provider.translate_embeddings(payload)
        inputs = request.body.get("input")
        check_one_each(answer["data"], inputs)
        most = most_input_tokens(inputs, exchange.body_bytes)
        prompt_tokens = await input_tokens(answer.get("usage"), inputs, snapshot, call.model, most=most)
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 0, "total_tokens": prompt_tokens}  # priced as one
        return Completed(body=payload, usage=usage, truncated=False)

    async def convene(
        self, request: web.Request, gateway: Gateway, exchange: Exchange, parsed: Any, route: Route
    ) -> web.StreamResponse:
        """A quorum route answers chat completions and /api/v1/debates only."""
        raise NotForQuorumRoutes(route.model, "/v1/embeddings")


def check_one_each(data: list[Any], inputs: Any) -> None:
    """Raises UpstreamProtocolError unless the answer has one embedding for each input, indexed
    0 to N - 1: a client pairs them by index, and a missing one would pair them wrongly."""
    expected = len(embedding_inputs(inputs))
    if sorted(item["index"] for item in data) != list(range(expected)):
        raise UpstreamProtocolError(
            f"The upstream answered {len(data)} embeddings for {expected} inputs, or not indexed 0 to {expected - 1}."
        )


TOKENS_AROUND_AN_INPUT = 4  # what a tokenizer may add to each input (begin and end markers): BERT's add 2


def most_input_tokens(inputs: Any, body_bytes: int | None) -> int | None:
    """The most tokens any tokenizer could make of an embeddings `input` sent in a body of
    `body_bytes`: a token is at least a byte of text (or one of a token array, each at least a
    digit in the JSON), plus TOKENS_AROUND_AN_INPUT for each input. None when not known."""
    if body_bytes is None:
        return None
    return body_bytes + TOKENS_AROUND_AN_INPUT * len(embedding_inputs(inputs))


async def input_tokens(usage: Any, inputs: Any, snapshot: Snapshot, model: str, *, most: int | None = None) -> int:
    """The upstream's count of the input tokens when it gave one that could be true (from 0 to
    `most`), else the gateway's own (a long input is counted on a worker thread): a count no
    input could have must not reach a tokens-per-minute limit, a budget or the ledger."""
    counted = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if believable_count(counted) and (most is None or counted <= most):
        return counted
    counter = snapshot.tokenizers.for_model(model)
    if input_chars(inputs) > INLINE_CHARS:
        return await asyncio.to_thread(count_input_tokens, inputs, counter)
    return count_input_tokens(inputs, counter)
