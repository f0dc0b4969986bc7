"""Clients that misbehave on the wire: heads sent slowly, connections left idle, responses never read."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import sse_bytes, sse_handler, text_stream
from test_cli import sdk_client, start_gateway
from test_limits_e2e import wait_for

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def routed_tree(upstream: Upstream, gateway_factory: GatewayFactory) -> GatewayFactory:
    """The gateway with `test-model` at the fake upstream, and these `server:` settings."""

    async def make(server: dict[str, object]) -> Gateway:
        tree = openai_route_config(upstream.url)
        tree["server"] = server
        return await gateway_factory(tree)

    return make


async def stalled_client(url: str, body: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that sends its request and then reads nothing."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.transport.pause_reading()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    await writer.drain()
    return reader, writer


async def test_every_stalled_client_is_cut_at_send_timeout_and_its_upstream_closed(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """Twenty clients that never read an 11 MB stream each lose it at server.send_timeout, and the
    upstream sees every one of its connections closed."""
    tree = openai_route_config(upstream.url)
    tree["server"] = {"send_timeout": 1}
    tree["limits"] = {"max_tokens": 10_000_000}
    gateway = await gateway_factory(tree)
    piece = "lorem ipsum dolor sit amet, " * 146  # about 4 KiB
    upstream.handler = sse_handler(text_stream([piece] * 2700), done=False, hang_after=True)  # 11 MB, then silence
    body = orjson.dumps({"model": "test-model", "messages": MESSAGES, "stream": True})
    clients = [await stalled_client(gateway.url, body) for _ in range(20)]
    try:
        await wait_for(lambda: len(upstream.disconnects) == 20, timeout=20)
    finally:
        for _, writer in clients:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def rss_mib(pid: int) -> float:
    """A process's resident memory, MiB (/proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_stalled_clients_of_a_fast_upstream_give_their_memory_back(upstream: Upstream, tmp_path: Path) -> None:
    """A gateway process whose twenty clients stop reading an 11 MB stream that the upstream sends
    at once holds a bounded amount for them, and gives it back once they are cut off."""
    payload = b"".join(sse_bytes(text_stream(["lorem ipsum dolor sit amet, " * 146] * 2700), done=False))

    async def flood(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(payload)
        await asyncio.sleep(3600)  # then silence, until the gateway hangs up
        return response

    upstream.handler = flood
    config = tmp_path / "gateway.yaml"
    config.write_text(
        orjson.dumps(
            {
                "server": {"send_timeout": 2},
                "limits": {"max_tokens": 10_000_000},
                "providers": {"up": {"kind": "openai", "base_url": f"{upstream.url}/v1"}},
                "routes": [{"model": "test-model", "provider": "up"}],
            }
        ).decode()
    )
    process, url = start_gateway("--config", str(config))
    try:
        body = orjson.dumps({"model": "test-model", "messages": MESSAGES, "stream": True})
        await asyncio.to_thread(sdk_client(url).models.list)  # warm: encodings, first imports
        before = rss_mib(process.pid)
        clients = [await stalled_client(url, body) for _ in range(20)]
        await wait_for(lambda: len(upstream.requests) == 20, timeout=10)
        during = rss_mib(process.pid)
        await wait_for(lambda: len(upstream.disconnects) == 20, timeout=30)
        for _, writer in clients:
            writer.close()
        after = rss_mib(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(process.wait, 15)
    print(f"RSS before {before:.1f} MiB, during {during:.1f}, after {after:.1f}")
    assert after - before < 40, (before, during, after)


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_by_the_gateway(reader: asyncio.StreamReader) -> bytes:
    """Everything the gateway sent before it closed the connection (waits for the close)."""
    with contextlib.suppress(ConnectionResetError):
        return await asyncio.wait_for(reader.read(), timeout=10)
    return b""


async def test_a_request_head_sent_slowly_is_hung_up_on(routed_tree: GatewayFactory) -> None:
    """Slowloris: a head that is still incomplete after server.request_head_timeout loses its connection,
    and so does a connection that sends nothing; a whole head in time is served."""
    gateway = await routed_tree({"request_head_timeout": 0.5})
    slow_reader, slow = await connect(gateway.url)
    slow.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-A: ")  # and never the rest
    silent_reader, silent = await connect(gateway.url)
    started = asyncio.get_running_loop().time()
    assert await closed_by_the_gateway(slow_reader) == b""
    assert await closed_by_the_gateway(silent_reader) == b""
    assert asyncio.get_running_loop().time() - started >= 0.5
    reader, writer = await connect(gateway.url)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await closed_by_the_gateway(reader)).startswith(b"HTTP/1.1 200")
    for stream in (slow, silent, writer):
        stream.close()


async def test_a_body_that_stops_arriving_gets_a_408_in_time(routed_tree: GatewayFactory, upstream: Upstream) -> None:
    """A head that promises 100 bytes and a body that stops after 9: the answer comes after
    server.request_body_timeout, not whenever the client gives up, and nothing reaches an upstream."""
    gateway = await routed_tree({"request_body_timeout": 0.3})
    reader, writer = await connect(gateway.url)
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"model":'
    )
    started = asyncio.get_running_loop().time()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert asyncio.get_running_loop().time() - started >= 0.3
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    body = await reader.readexactly(length)
    assert head.startswith(b"HTTP/1.1 408") and orjson.loads(body)["error"]["code"] == "request_timeout"
    assert not upstream.requests
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_keepalive_timeout(routed_tree: GatewayFactory) -> None:
    gateway = await routed_tree({"keepalive_timeout": 0.5})
    reader, writer = await connect(gateway.url)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await closed_by_the_gateway(reader)  # the answer, then the close once idle
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"}")
    writer.close()


async def test_connections_over_max_connections_get_a_503_in_openais_shape(routed_tree: GatewayFactory) -> None:
    gateway = await routed_tree({"max_connections": 3, "request_head_timeout": 30})
    held = [await connect(gateway.url) for _ in range(3)]
    reader, writer = await connect(gateway.url)
    answer = await closed_by_the_gateway(reader)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and orjson.loads(body)["error"]["code"] == "too_many_connections"
    writer.close()
    _, first = held.pop()
    first.close()
    await first.wait_closed()
    await wait_for(lambda: True)  # one loop turn: the gateway sees the close
    reader, writer = await connect(gateway.url)  # room again
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await closed_by_the_gateway(reader)).startswith(b"HTTP/1.1 200")
    for _, stream in [*held, (reader, writer)]:
        stream.close()
