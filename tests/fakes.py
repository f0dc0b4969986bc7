"""What fake upstreams answer: OpenAI-shaped completions and chunk streams."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def completion(
    content: str | None = "Hello there!",
    *,
    finish_reason: str = "stop",
    tool_calls: list[Any] | None = None,
    usage: dict[str, int] | None = None,
    choices: int = 1,
    model: str = "gpt-4o-mini",
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {"index": i, "message": dict(message), "logprobs": None, "finish_reason": finish_reason}
            for i in range(choices)
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def chunk(
    delta: dict[str, Any] | None = None, *, index: int = 0, finish_reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": index, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}],
        **extra,
    }


def usage_chunk(prompt: int, completion_tokens: int) -> dict[str, Any]:
    body = chunk()
    body["choices"] = []
    body["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    return body


def text_stream(
    pieces: Iterable[str], *, finish_reason: str = "stop", usage: tuple[int, int] | None = None, choices: int = 1
) -> list[dict[str, Any]]:
    """A role chunk, one chunk per piece (per choice), a finish chunk, and maybe a usage chunk."""
    events = [chunk({"role": "assistant", "content": ""}, index=i) for i in range(choices)]
    for piece in pieces:
        events += [chunk({"content": piece}, index=i) for i in range(choices)]
    events += [chunk({}, index=i, finish_reason=finish_reason) for i in range(choices)]
    if usage:
        events.append(usage_chunk(*usage))
    return events


def logprobs(tokens: Iterable[str]) -> dict[str, Any]:
    """OpenAI's logprobs of a delta: one entry for each of its tokens."""
    entries = [
        {"token": token, "logprob": -0.25, "bytes": list(token.encode()), "top_logprobs": []} for token in tokens
    ]
    return {"content": entries, "refusal": None}


def logprob_stream(groups: Iterable[list[str]], *, finish_reason: str = "stop") -> list[dict[str, Any]]:
    """A role chunk, a chunk for each group of tokens with a logprobs entry for each, a finish chunk."""
    events = [chunk({"role": "assistant", "content": ""})]
    for tokens in groups:
        item = chunk({"content": "".join(tokens)})
        item["choices"][0]["logprobs"] = logprobs(tokens)
        events.append(item)
    events.append(chunk({}, finish_reason=finish_reason))
    return events


def sse_bytes(events: Iterable[dict[str, Any] | bytes], *, done: bool = True) -> list[bytes]:
    out = [item if isinstance(item, bytes) else b"data: " + orjson.dumps(item) + b"\n\n" for item in events]
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def sse_handler(
    events: Iterable[dict[str, Any] | bytes],
    *,
    done: bool = True,
    delay: float = 0.0,
    first_delay: float = 0.0,
    hang_after: bool = False,
) -> Handler:
    """Streams the events (each its own write), `delay` seconds apart; may hang at the end instead of closing."""
    payloads = sse_bytes(events, done=done)

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if first_delay:
            await asyncio.sleep(first_delay)
        for position, payload in enumerate(payloads):
            if position and delay:
                await asyncio.sleep(delay)
            await response.write(payload)
        if hang_after:
            await asyncio.sleep(3600)
        await response.write_eof()
        return response

    return handle


def json_handler(
    body: Any, *, status: int = 200, delay: float = 0.0, content_type: str = "application/json"
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if delay:
            await asyncio.sleep(delay)
        data = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
        return web.Response(body=data, status=status, content_type=content_type)

    return handle


def echo_completion_handler() -> Handler:
    """Answers a non-streaming request with a completion whose content is the request's JSON body."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(completion(body.decode()))

    return handle
