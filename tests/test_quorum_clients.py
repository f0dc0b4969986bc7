"""Other clients read a council's answer as any other: LangChain's ChatOpenAI, and the Vercel AI SDK
(Node: tests/node, whose packages the `node_client` fixture installs with `npm ci`)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from conftest import Gateway, GatewayFactory, Upstream, require_tool
from councils import PROMPT_TOKENS, Scripted, council_tree

NODE_DIR = Path(__file__).resolve().parent / "node"
ANSWERS = {"m-gpt": "Paris.", "m-claude": "Lyon.", "m-local": "Nice.", "m-chair": "Paris is the capital of France."}
USAGE = {"prompt": 4 * PROMPT_TOKENS, "completion": 1 + 1 + 1 + 6}


@pytest.fixture
async def council(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    script = Scripted(upstream, answers=dict(ANSWERS))
    return await gateway_factory(council_tree(script.upstream.url, "synthesize", judge="chair"))


async def test_langchain_reads_the_councils_answer(council: Gateway) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=f"{council.url}/v1", api_key="unused", model="council", max_retries=0, timeout=10, stream_usage=True
    )
    message = await llm.ainvoke("What is the capital of France?")
    assert message.content == ANSWERS["m-chair"]
    assert message.response_metadata["finish_reason"] == "stop"
    usage = message.usage_metadata
    assert (usage["input_tokens"], usage["output_tokens"]) == (USAGE["prompt"], USAGE["completion"])
    chunks = [chunk async for chunk in llm.astream("What is the capital of France?")]
    assert "".join(chunk.content for chunk in chunks) == ANSWERS["m-chair"]
    streamed = sum(chunks[1:], chunks[0])
    assert streamed.usage_metadata["output_tokens"] == USAGE["completion"]


@pytest.fixture(scope="session")
def node_client() -> Path:
    """tests/node's packages (the Vercel AI SDK), installed by `npm ci` when missing or older than
    the lock file; the script that drives them."""
    require_tool("node", "nodejs")
    npm = require_tool("npm", "npm")
    installed = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not installed.exists() or installed.stat().st_mtime < lock.stat().st_mtime:
        import subprocess

        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, capture_output=True, timeout=300
        )
    return NODE_DIR / "client.mjs"


async def test_the_vercel_ai_sdk_reads_the_councils_answer(council: Gateway, node_client: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        require_tool("node", "nodejs"),
        str(node_client),
        f"{council.url}/v1",
        "council",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    result = json.loads(out)
    for read in (result["whole"], result["streamed"]):
        assert read["text"] == ANSWERS["m-chair"] and read["finishReason"] == "stop"
        assert (read["usage"]["inputTokens"], read["usage"]["outputTokens"]) == (USAGE["prompt"], USAGE["completion"])
    assert result["streamed"]["errors"] == []
