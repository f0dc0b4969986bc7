"""Real requests: correctness of one answer, and many slow streams held open."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import fixtures

HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {fixtures.API_KEY}"}


def _schema_validator(name: str):
    """jsonschema validator for one of OpenAI's schemas, when both are at hand."""
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        return None
    repo = Path(__file__).resolve().parent.parent
    for path in (
        repo.parent / "shared/openai-openapi/chat-schemas.json",
        Path("/work/shared/openai-openapi/chat-schemas.json"),
    ):
        if path.is_file():
            bundle = json.loads(path.read_text())
            return Draft202012Validator(dict(bundle, **{"$ref": f"#/$defs/{name}"}))
    return None


_VALIDATORS: dict[str, object] = {}


def schema_errors(name: str, instance: object) -> list[str] | None:
    """Schema violations (at most 3), or None when no validator is available."""
    if name not in _VALIDATORS:
        _VALIDATORS[name] = _schema_validator(name)
    validator = _VALIDATORS[name]
    if validator is None:
        return None
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in list(validator.iter_errors(instance))[:3]
    ]


def check_completion(status: int, content_type: str, raw: bytes) -> tuple[list[str], dict]:
    problems: list[str] = []
    if status != 200:
        return [f"status {status}: {raw[:300]!r}"], {}
    if not content_type.startswith("application/json"):
        problems.append(f"content type {content_type!r}")
    try:
        data = json.loads(raw)
    except ValueError:
        return [*problems, f"not JSON: {raw[:300]!r}"], {}
    if data.get("object") != "chat.completion":
        problems.append(f"object {data.get('object')!r}")
    try:
        choice = data["choices"][0]
        if choice["message"]["content"] != fixtures.TEXT:
            problems.append(f"content {choice['message']['content']!r}")
        if choice["message"].get("role") != "assistant":
            problems.append(f"role {choice['message'].get('role')!r}")
        if choice.get("finish_reason") != "stop":
            problems.append(f"finish_reason {choice.get('finish_reason')!r}")
    except (KeyError, IndexError, TypeError):
        problems.append(f"no choices[0].message: {raw[:300]!r}")
    return problems, _schema_info(schema_errors("CreateChatCompletionResponse", data))


def _schema_info(errors: list[str] | None) -> dict:
    """Violations of OpenAI's schema: reported beside the verdict, not in it."""
    if errors is None:
        return {}
    return {"schema_ok": not errors, **({"schema_problems": errors[:3]} if errors else {})}


def parse_sse(raw: bytes) -> list[str]:
    """The data fields of the events in an event stream."""
    events, data = [], []
    for line in raw.decode("utf-8", errors="replace").replace("\r\n", "\n").split("\n"):
        if line == "":
            if data:
                events.append("\n".join(data))
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        events.append("\n".join(data))
    return events


def check_stream(status: int, content_type: str, raw: bytes) -> tuple[list[str], dict]:
    if status != 200:
        return [f"status {status}: {raw[:300]!r}"], {}
    problems = []
    if not content_type.startswith("text/event-stream"):
        problems.append(f"content type {content_type!r}")
    events = parse_sse(raw)
    if not events or events[-1] != "[DONE]":
        problems.append(f"does not end with [DONE]: last {events[-1:]!r}")
    text, content_chunks, finish = [], 0, None
    bad_schema: list[str] | None = None
    for event in events:
        if event == "[DONE]":
            continue
        try:
            chunk = json.loads(event)
        except ValueError:
            problems.append(f"event not JSON: {event[:200]!r}")
            continue
        if chunk.get("object") != "chat.completion.chunk":
            problems.append(f"object {chunk.get('object')!r}")
        errors = schema_errors("CreateChatCompletionStreamResponse", chunk)
        if errors is not None:
            bad_schema = (bad_schema or []) + errors
        for choice in chunk.get("choices") or ():
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                text.append(piece)
                content_chunks += 1
            finish = choice.get("finish_reason") or finish
    joined = "".join(text)
    if joined != fixtures.TEXT:
        problems.append(f"text {joined!r}")
    if finish != "stop":
        problems.append(f"finish_reason {finish!r}")
    return problems, {"events": len(events), "content_chunks": content_chunks, **_schema_info(bad_schema)}


async def check_target(
    session: aiohttp.ClientSession,
    *,
    json_url: str,
    sse_url: str,
    models: dict[str, str] | None = None,
    headers: dict[str, dict[str, str]] | None = None,
) -> dict:
    """One real non-streaming and one streaming request, each checked whole. models and headers,
    by kind ("json", "sse"): the target's model names and extra headers, when it needs its own."""
    result: dict = {}
    models, headers = models or {}, headers or {}
    for kind, url, stream in (("json", json_url, False), ("stream", sse_url, True)):
        key = "sse" if stream else "json"
        model = models.get(key) or (fixtures.MODEL_SSE if stream else fixtures.MODEL_JSON)
        body = fixtures.request_body(model=model, stream=stream)
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers={**HEADERS, **headers.get(key, {})}) as resp:
                raw = await resp.read()
                status, ctype = resp.status, resp.headers.get("Content-Type", "")
        except (TimeoutError, aiohttp.ClientError) as exc:
            result[kind] = {"ok": False, "problems": [f"{type(exc).__name__}: {exc}"]}
            continue
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        check = check_stream if stream else check_completion
        problems, info = check(status, ctype, raw)
        result[kind] = {"ok": not problems, "problems": problems, "ms": elapsed_ms, **info}
    result["ok"] = all(v["ok"] for v in result.values())
    result["schema_ok"] = (
        None
        if any("schema_ok" not in v for v in result.values() if isinstance(v, dict))
        else all(v["schema_ok"] for v in result.values() if isinstance(v, dict))
    )
    return result


@dataclass
class HeldStreams:
    requested: int
    opened: int = 0
    finished_early: int = 0
    failed: Counter = field(default_factory=Counter)
    tasks: list = field(default_factory=list)
    all_settled: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def settled(self) -> int:
        return self.opened + sum(self.failed.values())

    def still_open(self) -> int:
        return self.opened - self.finished_early

    def summary(self) -> dict:
        return {
            "requested": self.requested,
            "opened": self.opened,
            "finished_early": self.finished_early,
            "failed": dict(self.failed),
            "pending": self.requested - self.settled,
        }


async def open_streams(
    session: aiohttp.ClientSession,
    url: str,
    *,
    model: str,
    count: int,
    max_tokens: int,
    open_timeout: float,
    concurrency: int = 250,
) -> HeldStreams:
    """Open count streams and keep reading them; returns once each sent its first event or failed."""
    held = HeldStreams(requested=count)
    gate = asyncio.Semaphore(concurrency)
    body = fixtures.request_body(model=model, stream=True, max_tokens=max_tokens)

    def settle() -> None:
        if held.settled >= count:
            held.all_settled.set()

    async def one() -> None:
        first = False
        await gate.acquire()
        try:
            async with session.post(url, data=body, headers=HEADERS) as resp:
                if resp.status != 200:
                    held.failed[f"status {resp.status}"] += 1
                    return
                async for line in resp.content:
                    if not first and line.startswith(b"data:"):
                        first = True
                        held.opened += 1
                        gate.release()
                        settle()
                if first:
                    held.finished_early += 1
                else:
                    held.failed["ended before any event"] += 1
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if first:
                held.finished_early += 1
            else:
                held.failed[type(exc).__name__] += 1
        finally:
            if not first:
                gate.release()
                settle()

    held.tasks = [asyncio.create_task(one()) for _ in range(count)]
    try:
        await asyncio.wait_for(held.all_settled.wait(), timeout=open_timeout)
    except TimeoutError:
        pass  # summary() counts them as pending
    return held


async def close_streams(held: HeldStreams) -> None:
    for task in held.tasks:
        task.cancel()
    await asyncio.gather(*held.tasks, return_exceptions=True)
