"""The mock model's embeddings: deterministic vectors, in OpenAI's wire format
(`CreateEmbeddingResponse`, OpenAI's API reference "Embeddings").

The same input always gives the same vector: its numbers come from SHAKE-256 of the
input, scaled to unit length, `dimensions` of them (DEFAULT_DIMENSIONS when the
request names none). With `encoding_format: base64` each vector is its float32
numbers, little-endian, in base64, as OpenAI sends them; as float, the same float32
values as JSON numbers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import math
import struct
import sys
from array import array
from typing import Any

import orjson

from ..stream.tokens import INLINE_CHARS, TokenCounter, count_input_tokens, embedding_inputs, input_chars

DEFAULT_DIMENSIONS = 1536  # as text-embedding-3-small and ada-002
MAX_DIMENSIONS = 8192  # more is refused with a 400, as a real model refuses what it cannot give


def vector(item: str | list[int], dimensions: int) -> array[float]:
    """The unit vector of one input (a string or a token array), as float32 numbers."""
    raw = hashlib.shake_256(orjson.dumps(item)).digest(4 * dimensions)
    numbers = [value / 2**31 - 1.0 for value in struct.unpack(f"<{dimensions}I", raw)]  # in [-1, 1)
    norm = math.sqrt(sum(x * x for x in numbers)) or 1.0
    return array("f", (x / norm for x in numbers))


def encoded(values: array[float], encoding_format: str) -> list[float] | str:
    if encoding_format != "base64":
        return values.tolist()
    if sys.byteorder == "big":
        values = array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode()


class EmbeddingsResponse:
    """A whole answer (upstream.base.UpstreamResponse), made when the transport was asked."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.headers = {"Content-Type": "application/json"}
        self._payload = orjson.dumps(body)

    async def read(self, max_bytes: int) -> bytes:
        return self._payload

    async def read_chunk(self) -> bytes:
        payload, self._payload = self._payload, b""
        return payload

    def read_ready(self) -> bytes | None:
        return None

    def close(self) -> None:
        return None

    release = close


async def embeddings_response(body: dict[str, Any], counter: TokenCounter) -> EmbeddingsResponse:
    """The mock's answer to an embeddings request; long inputs are hashed and counted on a worker
    thread, so that the event loop serves the others meanwhile."""
    dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
    if not isinstance(dimensions, int) or dimensions > MAX_DIMENSIONS:
        error = {
            "message": f"The mock model gives at most {MAX_DIMENSIONS} dimensions.",
            "type": "invalid_request_error",
            "param": "dimensions",
            "code": None,
        }
        return EmbeddingsResponse(400, {"error": error})
    inputs = body.get("input")
    items = embedding_inputs(inputs)
    if input_chars(inputs) > INLINE_CHARS or len(items) * dimensions > INLINE_CHARS:
        return await asyncio.to_thread(answer, body, items, dimensions, counter)
    return answer(body, items, dimensions, counter)


def answer(
    body: dict[str, Any], items: list[str | list[int]], dimensions: int, counter: TokenCounter
) -> EmbeddingsResponse:
    encoding_format = str(body.get("encoding_format") or "float")
    tokens = count_input_tokens(body.get("input"), counter)
    data = [
        {"object": "embedding", "index": index, "embedding": encoded(vector(item, dimensions), encoding_format)}
        for index, item in enumerate(items)
    ]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = str(body.get("model") or "mock")
    return EmbeddingsResponse(200, {"object": "list", "data": data, "model": model, "usage": usage})
