"""The built-in mock model: an upstream in process that needs nothing and behaves like a model.

It answers in OpenAI's wire format as a `Transport`, so that its replies flow
through the same adapter (providers.openai), parsing, limiting and encoding as a
real upstream's. The reply is deterministic (the provider's `reply:`, else REPLY),
streamed token by token at `tokens_per_second` (0: as fast as possible), cut at
max_tokens, and its usage is counted with tiktoken. It answers embeddings too
(upstream.mock_embeddings).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson

from ..config import ProviderConfig
from ..stream.sse import DONE, encode_json
from ..stream.tokens import PromptTokens, TokenCounter, Tokenizers, prompt_extras
from .base import UpstreamRequest
from .mock_embeddings import EmbeddingsResponse, embeddings_response

REPLY = (
    "Hello! I am the gateway's built-in mock model. I answer every request with this same reply, "
    "streamed token by token, so that you can try the gateway without an API key. "
    "Route a model to a real provider in gateway.yaml to talk to a real model."
)


class MockTransport:
    """The mock model of one `kind: mock` provider; its replies are made when they are read."""

    def __init__(self, config: ProviderConfig, tokenizers: Tokenizers) -> None:
        self._interval = 1.0 / config.tokens_per_second if config.tokens_per_second > 0 else 0.0
        self._text = config.reply or REPLY
        self._tokenizers = tokenizers
        self._replies: dict[str, list[str]] = {}  # the reply's tokens, by encoding

    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> MockResponse | EmbeddingsResponse:
        body = orjson.loads(request.body)
        counter = self._tokenizers.for_model(str(body.get("model") or "mock"))
        if request.url.endswith("/embeddings"):
            return await embeddings_response(body, counter)
        reply = self._replies.get(counter.name)
        if reply is None:
            reply = self._replies[counter.name] = reply_tokens(counter, self._text)
        prompt = PromptTokens(body.get("messages") or [], counter, extras=prompt_extras(body))
        await prompt.ready()  # a long prompt is counted on a worker thread
        return MockResponse(body, prompt(), reply, self._interval)

    async def aclose(self) -> None:
        return None


class MockResponse:
    status = 200

    def __init__(self, body: dict[str, Any], prompt_tokens: int, pieces: list[str], interval: float) -> None:
        self._body = body
        self._interval = interval
        self._model = str(body.get("model") or "mock")
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or len(pieces)
        self._finish_reason = "length" if len(pieces) > limit else "stop"
        self._tokens = pieces[:limit]
        self._prompt_tokens = prompt_tokens
        self._choices = int(body.get("n") or 1)
        self._streaming = bool(body.get("stream"))
        self._position = 0  # the next event of the stream
        self._due = 0.0  # when the next token is due
        self._base = {
            "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": self._model,
        }
        self.headers = {"Content-Type": "text/event-stream" if self._streaming else "application/json"}
        self._closed = False

    def _usage(self) -> dict[str, int]:
        completion = len(self._tokens) * self._choices
        return {
            "prompt_tokens": self._prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self._prompt_tokens + completion,
        }

    async def read(self, max_bytes: int) -> bytes:
        """The whole completion; the mock's answers are far below any cap."""
        if self._interval:
            await asyncio.sleep(self._interval * len(self._tokens))
        content = "".join(self._tokens)
        return orjson.dumps(
            {
                "id": f"chatcmpl-mock-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self._model,
                "choices": [
                    {
                        "index": index,
                        "message": {"role": "assistant", "content": content, "refusal": None},
                        "logprobs": None,
                        "finish_reason": self._finish_reason,
                    }
                    for index in range(self._choices)
                ],
                "usage": self._usage(),
            }
        )

    async def read_chunk(self) -> bytes:
        """The next event; a wait that is cancelled (a keep-alive ping, a timeout) loses nothing."""
        if not self._streaming or self._closed:
            return b""
        part = self._part(self._position)
        if part and self._interval and 1 <= self._position <= len(self._tokens):
            loop = asyncio.get_running_loop()
            await asyncio.sleep(max(self._due - loop.time(), 0.0))
            self._due = loop.time() + self._interval
        self._position += 1
        return part

    def read_ready(self) -> None:
        return None  # each event is made when it is read

    def close(self) -> None:
        self._closed = True

    release = close

    def _part(self, position: int) -> bytes:
        """Event `position` of the stream: the role chunk, one per token, the finish, usage, [DONE]."""
        tokens = len(self._tokens)
        if position == 0:
            self._due = asyncio.get_running_loop().time() + self._interval
            return self._chunk({"role": "assistant", "content": ""})
        if position <= tokens:
            return self._chunk({"content": self._tokens[position - 1]})
        if position == tokens + 1:
            return self._chunk({}, self._finish_reason)
        options = self._body.get("stream_options")
        wants_usage = isinstance(options, dict) and options.get("include_usage")
        if position == tokens + 2 and wants_usage:
            return encode_json({**self._base, "choices": [], "usage": self._usage()})
        if position == tokens + 2 + (1 if wants_usage else 0):
            return DONE
        return b""

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        return b"".join(
            encode_json(
                {
                    **self._base,
                    "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
                }
            )
            for index in range(self._choices)
        )


def reply_tokens(counter: TokenCounter, text: str) -> list[str]:
    """The reply split into the text of each of its tokens (an ASCII reply splits cleanly)."""
    pieces: list[str] = []
    for piece in counter.pieces(text):
        count = counter.count(piece)
        position = 0
        for n in range(1, count + 1):
            end = len(counter.prefix(piece, n))
            pieces.append(piece[position:end])
            position = end
    return [piece for piece in pieces if piece]
