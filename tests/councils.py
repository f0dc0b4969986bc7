"""Fakes for quorum routes: one fake upstream that answers each upstream model by script, and a
config whose member routes all lead to it (route `gpt` sends model `m-gpt`, and so on)."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from conftest import Gateway, Upstream
from fakes import chunk, completion, usage_chunk

PROMPT_TOKENS = 10  # every scripted answer's usage: 10 prompt tokens, one completion token a piece


@dataclass(frozen=True)
class Reply:
    """What a scripted model answers one call: `text` in pieces (a word each), or an error `status`;
    `first_delay` seconds between its role chunk and its first content, `delay` between pieces;
    `hang`: no content ever."""

    text: str = ""
    status: int | None = None
    first_delay: float = 0.0
    delay: float = 0.0
    hang: bool = False
    tool_calls: tuple[dict[str, Any], ...] = ()

    @property
    def pieces(self) -> list[str]:
        return re.findall(r"\S+\s*|\s+", self.text)


@dataclass
class Scripted:
    """The fake upstream's script: `answers[model]` is a text or a Reply (every call), or a list
    of them (the n-th call gets the n-th, the last repeated)."""

    upstream: Upstream
    answers: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    arrived: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # loop times
    began: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # first content out
    gone: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # the gateway hung up

    def __post_init__(self) -> None:
        self.upstream.handler = self.handle

    def last_message(self, model: str, call: int = -1) -> str:
        return self.calls[model][call]["messages"][-1]["content"]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        model = body["model"]
        loop = asyncio.get_running_loop()
        self.arrived[model].append(loop.time())
        self.calls[model].append(body)
        script = self.answers[model]
        if isinstance(script, list):
            script = script[min(len(self.calls[model]) - 1, len(script) - 1)]
        reply = script if isinstance(script, Reply) else Reply(script)
        try:
            return await self.reply(request, body, model, reply)
        except (asyncio.CancelledError, ConnectionResetError):
            self.gone[model].append(loop.time())
            raise

    async def reply(self, request: web.Request, body: dict[str, Any], model: str, reply: Reply) -> web.StreamResponse:
        usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": len(reply.pieces)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        if reply.status is not None:
            return web.json_response({"error": {"message": f"{model} is failing"}}, status=reply.status)
        if not body.get("stream"):
            answer = completion(reply.text, usage=usage, model=model)
            return web.json_response(answer)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(event(chunk({"role": "assistant", "content": ""})))
        if reply.hang:
            await asyncio.sleep(3600)
        if reply.first_delay:
            await asyncio.sleep(reply.first_delay)
        for position, piece in enumerate(reply.pieces):
            if position == 0:
                self.began[model].append(asyncio.get_running_loop().time())
            elif reply.delay:
                await asyncio.sleep(reply.delay)
            await response.write(event(chunk({"content": piece})))
        if reply.tool_calls:
            self.began[model].append(asyncio.get_running_loop().time())
            calls = [{"index": i, **call} for i, call in enumerate(reply.tool_calls)]
            await response.write(event(chunk({"tool_calls": calls})))
        finish = "tool_calls" if reply.tool_calls else "stop"
        await response.write(event(chunk({}, finish_reason=finish)))
        await response.write(event(usage_chunk(PROMPT_TOKENS, len(reply.pieces))))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def event(value: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"


def council_tree(
    url: str,
    strategy: str,
    *,
    members: tuple[str, ...] = ("gpt", "claude", "local"),
    judge: str | None = None,
    route: dict[str, Any] | None = None,
    member_routes: dict[str, dict[str, Any]] | None = None,
    **quorum: Any,
) -> dict[str, Any]:
    """A config: a provider `up` at the fake upstream, a route per member (and the judge), and `council`."""
    names = dict.fromkeys([*members, *([judge] if judge else [])])
    routes = [
        {"model": name, "provider": "up", "upstream_model": f"m-{name}", **(member_routes or {}).get(name, {})}
        for name in names
    ]
    settings = {"members": list(members), "strategy": strategy, **quorum}
    if judge:
        settings["judge"] = judge
    routes.append({"model": "council", "quorum": settings, **(route or {})})
    return {
        "providers": {"up": {"kind": "openai", "base_url": f"{url}/v1", "api_key": "sk-upstream-secret-key"}},
        "routes": routes,
    }


async def ask(gateway: Gateway, *, stream: bool, **options: Any) -> dict[str, Any]:
    """The council's answer through the OpenAI SDK: content, finish_reason, usage and quorum,
    read from the completion or from the chunks (the last one before [DONE] carries quorum)."""
    async with gateway.client() as client:
        return await ask_with(client, stream=stream, **options)


async def ask_with(client: Any, *, stream: bool, **options: Any) -> dict[str, Any]:
    options.setdefault("messages", [{"role": "user", "content": "What is the capital of France?"}])
    if not stream:
        result = await client.chat.completions.create(model="council", **options)
        choice = result.choices[0]
        return {
            "content": choice.message.content,
            "tool_calls": choice.message.tool_calls,
            "finish_reason": choice.finish_reason,
            "usage": result.usage.model_dump(exclude_none=True),
            "quorum": result.model_extra["quorum"],
        }
    stream_options = {"include_usage": True}
    chunks = [
        item
        async for item in await client.chat.completions.create(
            model="council", stream=True, stream_options=stream_options, **options
        )
    ]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c for c in chunks if (c.model_extra or {}).get("quorum")] == [chunks[-1]], "quorum on the last chunk"
    return {
        "content": content,
        "finish_reason": finish[-1],
        "usage": chunks[-1].usage.model_dump(exclude_none=True),
        "quorum": chunks[-1].model_extra["quorum"],
    }


async def debate_events(url: str, body: dict[str, Any], **headers: str) -> list[tuple[str, Any]]:
    """POST /api/v1/debates and read the raw event stream: (event name, parsed data) in order.
    Each event must be one `event:` line and one `data:` line."""
    async with aiohttp.ClientSession() as http, http.post(f"{url}/api/v1/debates", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.read()
    events = []
    for block in raw.decode().split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][7:], orjson.loads(lines[1][6:])))
    assert raw.endswith(b"\n\n"), "the stream ends with a whole event"
    return events
