"""The Node clients that call /v1/responses, against the gateway on loopback: the Vercel AI SDK's
default `openai(model)` (generateText, streamText, tools, usage) and @langchain/openai with
useResponsesApi, in front of a chat-only upstream, an Anthropic upstream and an upstream that
serves the Responses API. tests/node/clients.mjs drives them; its packages are installed here
(`npm ci`) when tests/node/node_modules is missing."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config, require_tool
from fakes import chunk, completion, usage_chunk
from test_anthropic_e2e import API_KEY as ANTHROPIC_KEY
from test_anthropic_e2e import MODEL as CLAUDE
from test_anthropic_e2e import ending, message_start, text_block, tool_block
from test_responses import events_handler
from test_responses_translation import native_events

NODE_DIR = Path(__file__).parent / "node"
ANSWER = "It is 21 degrees in Paris."
HELLO = "Hello from the upstream."
ALL = ("generate", "stream", "tools", "stream-tools")


@pytest.fixture(scope="session")
def node() -> str:
    """node, with the clients' packages installed (npm ci, from the committed package-lock.json)."""
    path = require_tool("node", "nodejs")
    if not (NODE_DIR / "node_modules").is_dir():
        npm = require_tool("npm", "npm")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600)
    return path


async def run_clients(node: str, gateway: Gateway, model: str, scenarios: tuple[str, ...]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        node,
        "clients.mjs",
        f"{gateway.url}/v1",
        model,
        *scenarios,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), 90)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    results = orjson.loads(out)
    errors = {name: result["error"] for name, result in results.items() if "error" in result}
    assert not errors, errors
    return results


def assert_ai_sdk_answers(results: dict[str, Any]) -> None:
    """The AI SDK's answers to the upstream's scripted replies: the text with its usage,
    whole and streamed, and the weather tool called, then answered, in two steps."""
    usage = {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    assert results["generate"] == {"text": HELLO, "finishReason": "stop", "usage": usage}
    assert results["stream"] == {"text": HELLO, "finishReason": "stop", "usage": usage}
    for name in ("tools", "stream-tools"):
        assert results[name]["calls"] == [{"name": "weather", "input": {"city": "Paris"}}], name
        assert results[name]["text"] == ANSWER and results[name]["steps"] == 2, name


def wants_tool(messages: list[dict[str, Any]], tools: Any) -> bool:
    """A fake model: it calls the tool once, then answers with what the tool said."""
    return bool(tools) and not any(message.get("role") in ("tool", "function") for message in messages)


# ---------------------------------------------------------------- a chat completions upstream


async def chat_upstream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
    tool = wants_tool(body["messages"], body.get("tools"))
    text = ANSWER if body.get("tools") else HELLO
    if not body.get("stream"):
        if tool:
            return web.json_response(completion(None, finish_reason="tool_calls", tool_calls=[call], usage=usage))
        return web.json_response(completion(text, usage=usage))
    events = [chunk({"role": "assistant", "content": ""})]
    if tool:
        events += [chunk({"tool_calls": [{"index": 0, **call}]}), chunk({}, finish_reason="tool_calls")]
    else:
        events += [chunk({"content": piece}) for piece in text.split(" ")[:1]]
        events += [chunk({"content": " " + piece}) for piece in text.split(" ")[1:]]
        events.append(chunk({}, finish_reason="stop"))
    events.append(usage_chunk(11, 7))
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(b"data: " + orjson.dumps(event) + b"\n\n")
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def test_ai_sdk_and_langchain_with_a_chat_only_upstream(
    node: str, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(openai_route_config(upstream.url))
    upstream.handler = chat_upstream
    results = await run_clients(node, gateway, "test-model", (*ALL, "langchain"))
    assert_ai_sdk_answers(results)
    for name in ("tools", "stream-tools"):
        assert results[name]["usage"] == {"inputTokens": 22, "outputTokens": 14, "totalTokens": 36}, name
    assert results["langchain"]["text"] == HELLO and results["langchain"]["streamed"] == HELLO
    assert results["langchain"]["usage"]["input_tokens"] == 11 and results["langchain"]["usage"]["output_tokens"] == 7
    # the tool's result went back as a tool message, after the assistant's call
    sent = [orjson.loads(request["body"])["messages"] for request in upstream.requests]
    assert any([m["role"] for m in messages][-2:] == ["assistant", "tool"] for messages in sent)


# ---------------------------------------------------------------- an Anthropic upstream


async def anthropic_upstream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    tool = wants_tool([{"role": "tool"} if has_tool_result(m) else m for m in body["messages"]], body.get("tools"))
    text = ANSWER if body.get("tools") else HELLO
    usage = {"input_tokens": 11, "output_tokens": 7}
    if not body.get("stream"):
        content = (
            [{"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]
            if tool
            else [{"type": "text", "text": text}]
        )
        message = {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": CLAUDE,
            "content": content,
            "stop_reason": "tool_use" if tool else "end_turn",
            "stop_sequence": None,
            "usage": usage,
        }
        return web.json_response(message)
    start = message_start()
    start["message"]["usage"] = {"input_tokens": 11, "output_tokens": 0}
    blocks = (
        tool_block(0, "toolu_1", "weather", ['{"city": ', '"Paris"}']) if tool else text_block(0, [text[:5], text[5:]])
    )
    events = [start, *blocks, *ending("tool_use" if tool else "end_turn", 7)]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for event in events:
        await response.write(b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event)))
    await response.write_eof()
    return response


def has_tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


async def test_ai_sdk_with_an_anthropic_upstream(
    node: str, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(
        {
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "api_key": ANTHROPIC_KEY}},
            "routes": [{"model": "claude", "provider": "claude", "upstream_model": CLAUDE}],
        }
    )
    upstream.handler = anthropic_upstream
    results = await run_clients(node, gateway, "claude", ALL)
    assert_ai_sdk_answers(results)


# ---------------------------------------------------------------- an upstream that serves the Responses API


def call_events() -> list[dict[str, Any]]:
    """A Responses stream that calls the weather tool."""
    events = native_events([])
    item = {
        "id": "fc_up",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "weather",
        "arguments": "",
    }
    done = {**item, "status": "completed", "arguments": '{"city":"Paris"}'}
    final = {**events[-1]["response"], "output": [done]}
    middle = [
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "fc_up",
            "output_index": 0,
            "delta": '{"city":"Paris"}',
        },
        {
            "type": "response.function_call_arguments.done",
            "item_id": "fc_up",
            "output_index": 0,
            "name": "weather",
            "arguments": done["arguments"],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": done},
    ]
    sequence = [events[0], events[1], *middle, {"type": "response.completed", "response": final}]
    return [{**event, "sequence_number": number} for number, event in enumerate(sequence)]


async def responses_upstream(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    items = body["input"] if isinstance(body["input"], list) else []
    tool = bool(body.get("tools")) and not any(item.get("type") == "function_call_output" for item in items)
    text = ANSWER if body.get("tools") else HELLO
    events = call_events() if tool else native_events([text[:5], text[5:]])
    if body.get("stream"):
        return await events_handler(events)(request)
    return web.json_response(events[-1]["response"])


async def test_ai_sdk_and_langchain_with_a_responses_upstream(
    node: str, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    tree = openai_route_config(upstream.url)
    tree["providers"]["up"]["responses_api"] = True
    gateway = await gateway_factory(tree)
    upstream.handler = responses_upstream
    results = await run_clients(node, gateway, "test-model", (*ALL, "langchain"))
    usage = {"inputTokens": 9, "outputTokens": 40, "totalTokens": 49}  # native_events' figures, passed on
    assert results["generate"] == {"text": HELLO, "finishReason": "stop", "usage": usage}
    assert results["stream"] == {"text": HELLO, "finishReason": "stop", "usage": usage}
    for name in ("tools", "stream-tools"):
        assert results[name]["calls"] == [{"name": "weather", "input": {"city": "Paris"}}], name
        assert results[name]["text"] == ANSWER and results[name]["steps"] == 2, name
    assert results["langchain"]["text"] == HELLO and results["langchain"]["streamed"] == HELLO
    assert all(request["path"] == "/v1/responses" for request in upstream.requests)
