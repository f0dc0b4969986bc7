"""The upstream client as a user meets it, through the gateway and the real SDK on loopback
sockets: a real HTTP proxy (tinyproxy), the connection limit, the caps on what an upstream
sends, and a pooled connection the upstream closed."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
import trustme
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config, require_tool
from fakes import Handler, chunk, completion, json_handler, sse_bytes, sse_handler, text_stream
from test_limits_e2e import collect, wait_for
from test_metrics import samples, samples_now, value
from test_upstream import ok

from gateway.observability.logs import LineFormatter

MESSAGES = [{"role": "user", "content": "hi"}]
PROXY_USER, PROXY_PASSWORD = "user", "secretpass"
PROXY_NAME = "gateway-test-proxy"  # what tinyproxy puts in the Via header it adds
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARIABLES = ("NO_PROXY", "no_proxy")


def sdk(gateway: Gateway) -> openai.AsyncOpenAI:
    """An SDK client that talks to the gateway directly, whatever *_PROXY the test sets."""
    return gateway.client(http_client=openai.DefaultAsyncHttpxClient(trust_env=False))


# -- a real HTTP proxy


@dataclass
class Proxy:
    """tinyproxy on loopback, asking for Basic auth as PROXY_USER / PROXY_PASSWORD."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, password: str = PROXY_PASSWORD) -> str:
        return f"http://{PROXY_USER}:{password}@127.0.0.1:{self.port}"

    def requests_seen(self) -> list[str]:
        """The request lines tinyproxy logged, e.g. `POST http://127.0.0.1:1234/v1/chat/completions HTTP/1.1`."""
        text = self.log.read_text() if self.log.exists() else ""
        return [
            line.split("): ", 1)[1] for line in text.splitlines() if line.startswith("CONNECT") and "Request (" in line
        ]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_tinyproxy(binary: str, folder: Path) -> Proxy:
    """tinyproxy in the foreground on a free port, once it accepts connections."""
    port = free_port()
    log = folder / "tinyproxy.log"
    config = folder / "tinyproxy.conf"
    config.write_text(
        f"Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\n"
        f'LogFile "{log}"\nLogLevel Info\nPidFile "{folder / "tinyproxy.pid"}"\n'
        f'Allow 127.0.0.1\nBasicAuth {PROXY_USER} {PROXY_PASSWORD}\nViaProxyName "{PROXY_NAME}"\n'
    )
    output = (folder / "tinyproxy.out").open("wb")
    process = subprocess.Popen([binary, "-d", "-c", str(config)], stdout=output, stderr=subprocess.STDOUT)
    output.close()
    proxy = Proxy(process, port, log)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proxy
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                proxy.stop()
                details = (folder / "tinyproxy.out").read_text() + (log.read_text() if log.exists() else "")
                raise RuntimeError(f"tinyproxy did not start listening on {port}:\n{details}") from None
            time.sleep(0.01)  # polls the port; tinyproxy gives no other sign that it listens


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Proxy]:
    """A running tinyproxy; stopped after the test, whatever happens in it."""
    binary = require_tool("tinyproxy", "tinyproxy")
    folder = tmp_path / "proxy"
    folder.mkdir()
    for attempt in range(3):  # the free port may be taken before tinyproxy binds it
        try:
            proxy = start_tinyproxy(binary, folder)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean proxy environment: no *_PROXY and no NO_PROXY but what the test sets, before
    it starts the gateway (whose upstream client reads them once, when it is made)."""
    for name in PROXY_VARIABLES + NO_PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def ask(gateway: Gateway) -> str | None:
    async with sdk(gateway) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    return reply.choices[0].message.content


async def test_requests_go_through_the_proxy_named_by_http_proxy(
    upstream: Upstream, gateway_factory: GatewayFactory, tinyproxy: Proxy, proxy_env: pytest.MonkeyPatch
) -> None:
    """With trust_env on (the default), HTTP_PROXY with credentials routes the request via that proxy."""
    upstream.handler = json_handler(completion("via the proxy"))
    proxy_env.setenv("HTTP_PROXY", tinyproxy.url())  # read when the gateway starts
    gateway = await gateway_factory(openai_route_config(upstream.url))
    assert await ask(gateway) == "via the proxy"
    [request] = upstream.requests
    assert PROXY_NAME in request["headers"].get("Via", "")  # tinyproxy added it on the way
    assert "Proxy-Authorization" not in request["headers"]  # the proxy's credentials end at the proxy
    assert tinyproxy.requests_seen() == [f"POST {upstream.url}/v1/chat/completions HTTP/1.1"]


async def test_no_proxy_bypasses_the_proxy(
    upstream: Upstream, gateway_factory: GatewayFactory, tinyproxy: Proxy, proxy_env: pytest.MonkeyPatch
) -> None:
    """A host in NO_PROXY is reached directly, though HTTP_PROXY is set."""
    upstream.handler = json_handler(completion("direct"))
    proxy_env.setenv("HTTP_PROXY", tinyproxy.url())
    proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    gateway = await gateway_factory(openai_route_config(upstream.url))
    assert await ask(gateway) == "direct"
    assert "Via" not in upstream.requests[0]["headers"]
    assert tinyproxy.requests_seen() == []


async def test_trust_env_false_ignores_http_proxy(
    upstream: Upstream, gateway_factory: GatewayFactory, tinyproxy: Proxy, proxy_env: pytest.MonkeyPatch
) -> None:
    """`upstream: {trust_env: false}`: HTTP_PROXY is not used."""
    upstream.handler = json_handler(completion("direct"))
    proxy_env.setenv("HTTP_PROXY", tinyproxy.url())
    gateway = await gateway_factory({**openai_route_config(upstream.url), "upstream": {"trust_env": False}})
    assert await ask(gateway) == "direct"
    assert "Via" not in upstream.requests[0]["headers"]
    assert tinyproxy.requests_seen() == []


@pytest.fixture
async def https_upstream(tmp_path: Path) -> AsyncIterator[tuple[Upstream, Path]]:
    """A fake upstream on https, and the PEM file of the CA that signed its certificate."""
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_bundle))
    fake = Upstream(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        fake.requests.append({"path": request.path, "headers": request.headers.copy(), "body": await request.read()})
        assert fake.handler is not None, "the test set no handler"
        return await fake.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls).start()
    fake.url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield fake, ca_bundle
    finally:
        await runner.cleanup()


async def test_https_requests_tunnel_through_the_proxy_named_by_https_proxy(
    https_upstream: tuple[Upstream, Path],
    gateway_factory: GatewayFactory,
    tinyproxy: Proxy,
    proxy_env: pytest.MonkeyPatch,
) -> None:
    """An https upstream is reached through a CONNECT tunnel of the proxy in HTTPS_PROXY."""
    upstream, ca_bundle = https_upstream
    upstream.handler = json_handler(completion("through the tunnel"))
    proxy_env.setenv("HTTPS_PROXY", tinyproxy.url())
    gateway = await gateway_factory(openai_route_config(upstream.url, provider_options={"ca_bundle": str(ca_bundle)}))
    assert await ask(gateway) == "through the tunnel"
    assert len(upstream.requests) == 1
    assert tinyproxy.requests_seen() == [f"CONNECT {upstream.url.removeprefix('https://')} HTTP/1.1"]


@pytest.mark.parametrize("failure", ["wrong password", "proxy stopped"])
async def test_a_failing_proxy_is_a_502_that_never_shows_its_password(
    failure: str,
    upstream: Upstream,
    https_upstream: tuple[Upstream, Path],
    gateway_factory: GatewayFactory,
    tinyproxy: Proxy,
    proxy_env: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A proxy that refuses the credentials, or that is not there, gives the client a 502 that
    names the proxy; the password in the proxy variable, plain or as Basic credentials, is in
    no response body, header or log line (the access log included).

    The wrong password is tried on an https upstream, through a CONNECT tunnel: tinyproxy 1.11
    answers a plain-http request with bad credentials with a 401 (its issue #532; 407 since),
    which cannot be told from the upstream's own."""
    caplog.set_level(logging.DEBUG)  # every logger: the gateway's, its access log, aiohttp's
    if failure == "wrong password":
        password, variable = "wrong-pass-7f3a", "HTTPS_PROXY"
        target, ca_bundle = https_upstream
        options = {"ca_bundle": str(ca_bundle)}
    else:
        password, variable, target, options = PROXY_PASSWORD, "HTTP_PROXY", upstream, {}
        tinyproxy.stop()
    target.handler = json_handler(completion("unreached"))
    proxy_env.setenv(variable, tinyproxy.url(password))
    gateway = await gateway_factory(openai_route_config(target.url, provider_options=options))
    async with sdk(gateway) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    error = raised.value
    assert error.status_code == 502, (error.status_code, error.body)
    assert isinstance(error.body, dict) and error.body["code"] == "upstream_unreachable"
    assert "proxy" in error.body["message"], error.body
    assert target.requests == []
    exposed = [error.response.text, *(f"{name}: {value}" for name, value in error.response.headers.items())]
    formatter = LineFormatter("json")
    exposed += [formatter.format(record) for record in caplog.records]
    assert any(record.name == "gateway.access" for record in caplog.records)
    secrets = {password, PROXY_PASSWORD}
    secrets |= {base64.b64encode(f"{PROXY_USER}:{secret}".encode()).decode() for secret in tuple(secrets)}
    for text in exposed:
        assert not any(secret in text for secret in secrets), text


# -- the connection limit


@dataclass
class HeldStreams:
    """A fake upstream's handler: each stream's first chunks go out at once, the rest once
    `release` is set; counts the streams open at once."""

    release: asyncio.Event = field(default_factory=asyncio.Event)
    open: int = 0
    peak: int = 0

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        first, *rest = sse_bytes(text_stream(["held", " then done"]))
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            await response.prepare(request)
            await response.write(first + rest.pop(0))
            await self.release.wait()
        finally:
            self.open -= 1  # before the end goes out: the gateway cannot reuse the connection sooner
        await response.write(b"".join(rest))
        await response.write_eof()
        return response


def inflight(gateway: Gateway) -> float:
    return value(samples_now(gateway), "gateway_inflight_requests", route="test-model")


async def held_streams(gateway: Gateway, held: HeldStreams, count: int, *, opened: int) -> list[str]:
    """`count` concurrent streams through the gateway; once every request is in the gateway
    and `opened` streams (or more) are open at the upstream, checks that exactly `opened`
    are, and releases them; returns each stream's text."""
    async with sdk(gateway) as client:

        async def one() -> str:
            stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
            texts, _, _ = await collect(stream)
            return texts[0]

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        try:
            await wait_for(lambda: inflight(gateway) == count and held.open >= opened, timeout=10)
            assert held.open == opened
            held.release.set()
            return await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_max_connections_bounds_the_connections_to_an_upstream(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """`upstream: {max_connections: 2}`: of 6 concurrent streams, 2 are open at the upstream at
    a time, on 2 connections in all; the other 4 wait for one and complete once released."""
    held = HeldStreams()
    upstream.handler = held
    gateway = await gateway_factory({**openai_route_config(upstream.url), "upstream": {"max_connections": 2}})
    assert await held_streams(gateway, held, 6, opened=2) == ["held then done"] * 6
    assert held.peak == 2
    assert len(upstream.requests) == 6
    assert len({request["peer"] for request in upstream.requests}) == 2  # each request queued for one of 2


async def test_by_default_fifty_streams_to_one_upstream_are_open_at_once(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """With no `upstream:` settings, 50 concurrent streams to one host each get a connection at once."""
    held = HeldStreams()
    upstream.handler = held
    gateway = await gateway_factory(openai_route_config(upstream.url))
    assert await held_streams(gateway, held, 50, opened=50) == ["held then done"] * 50
    assert held.peak == 50
    assert len({request["peer"] for request in upstream.requests}) == 50


# -- caps on what an upstream sends

CAP = 65536  # limits.max_response_bytes and limits.max_event_bytes in these tests


def completion_of(size: int) -> bytes:
    """A chat.completion's JSON of exactly `size` bytes (its content a run of words)."""
    filler = size - len(orjson.dumps(completion("")))
    body = orjson.dumps(completion("hello " * (filler // 6) + "!" * (filler % 6)))
    assert len(body) == size
    return body


def raw_handler(body: bytes, *, encoding: str) -> Handler:
    """Answers with `body` as it is, gzip-compressed when `encoding` is gzip, with its Content-Length."""
    data = gzip.compress(body) if encoding == "gzip" else body
    headers = {"Content-Type": "application/json"} | ({"Content-Encoding": "gzip"} if encoding == "gzip" else {})

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=data, headers=headers)

    return handle


async def capped_gateway(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    limits = {"max_response_bytes": CAP, "max_event_bytes": CAP, "max_tokens": 100_000}  # no answer here is cut
    return await gateway_factory(openai_route_config(upstream.url, limits=limits))


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        pytest.param("gzip", completion_of(CAP + 1), id="gzip-one-byte-over"),
        pytest.param("gzip", b" " * (10 << 20), id="gzip-bomb-10MB"),
        pytest.param("identity", completion_of(CAP + 1), id="content-length-one-byte-over"),
    ],
)
async def test_an_answer_over_max_response_bytes_is_a_502_naming_the_limit(
    encoding: str, body: bytes, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """A non-streamed answer over limits.max_response_bytes, decompressed (from a gzip body far
    smaller than the cap) or as its Content-Length says, is a 502 upstream_response_too_large
    whose message names the limit."""
    upstream.handler = raw_handler(body, encoding=encoding)
    if encoding == "gzip":
        assert len(gzip.compress(body)) < CAP // 4
    gateway = await capped_gateway(upstream, gateway_factory)
    async with sdk(gateway) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 502
    error = raised.value.body
    assert isinstance(error, dict) and error["code"] == "upstream_response_too_large", error
    assert f"limits.max_response_bytes ({CAP} bytes)" in error["message"]


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_an_answer_of_exactly_max_response_bytes_arrives_whole(
    encoding: str, upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """An answer of exactly limits.max_response_bytes (decompressed) is not refused."""
    body = completion_of(CAP)
    upstream.handler = raw_handler(body, encoding=encoding)
    gateway = await capped_gateway(upstream, gateway_factory)
    async with sdk(gateway) as client:
        reply = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert reply.choices[0].message.content == orjson.loads(body)["choices"][0]["message"]["content"]
    assert reply.choices[0].finish_reason == "stop"


async def test_a_content_length_over_max_response_bytes_is_refused_before_the_body(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """An uncompressed answer whose Content-Length is over limits.max_response_bytes is refused
    from its headers: a 502 at once, without waiting for the body, and the gateway hangs up."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = CAP + 1
        await response.prepare(request)
        await response.write(b'{"id": "chatcmpl-')
        await asyncio.sleep(3600)  # the rest never comes; cancelled when the gateway hangs up
        return response

    upstream.handler = handle
    limits = {"max_response_bytes": CAP, "timeout": 5}  # waiting for the body would end in a 504
    gateway = await gateway_factory(openai_route_config(upstream.url, limits=limits))
    async with sdk(gateway) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 502, raised.value.body
    assert raised.value.body["code"] == "upstream_response_too_large"
    assert f"limits.max_response_bytes ({CAP} bytes)" in raised.value.body["message"]
    await wait_for(lambda: upstream.disconnects)


def event_of(size: int) -> bytes:
    """An SSE event whose data, a chunk's JSON, is exactly `size` bytes."""
    filler = size - len(orjson.dumps(chunk({"content": ""})))
    data = orjson.dumps(chunk({"content": "hello " * (filler // 6) + "!" * (filler % 6)}))
    assert len(data) == size
    return b"data: " + data + b"\n\n"


async def test_a_first_event_over_max_event_bytes_is_a_502_naming_the_limit(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """A stream whose first event is over limits.max_event_bytes is a 502 upstream_response_too_large
    naming the limit; one a little under the cap streams whole."""
    gateway = await capped_gateway(upstream, gateway_factory)
    async with sdk(gateway) as client:
        upstream.handler = sse_handler([event_of(CAP + 1)])
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
        assert raised.value.status_code == 502
        assert raised.value.body["code"] == "upstream_response_too_large", raised.value.body
        assert f"limits.max_event_bytes ({CAP} bytes)" in raised.value.body["message"]

        under = event_of(CAP - 100)
        upstream.handler = sse_handler([under, chunk({}, finish_reason="stop")])
        stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
        texts, finishes, _ = await collect(stream)
    assert texts[0] == orjson.loads(under[6:])["choices"][0]["delta"]["content"]
    assert finishes[0] == "stop"


async def test_an_event_over_max_event_bytes_mid_stream_ends_it_with_an_error_event(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """After content went out, an event over limits.max_event_bytes ends the stream with a last
    `data: {"error": ...}` event naming the limit, and no [DONE]; the content came first."""
    content_seen = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"".join(sse_bytes(text_stream(["Hello"])[:2], done=False)))
        await content_seen.wait()  # the client has the content: the big event comes in a later read
        await response.write(event_of(CAP + 1))
        await response.write_eof()
        return response

    upstream.handler = handle
    gateway = await capped_gateway(upstream, gateway_factory)
    received = b""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES, "stream": True}
        ) as response,
    ):
        assert response.status == 200
        async for piece in response.content.iter_any():
            received += piece
            if b'"Hello"' in received:
                content_seen.set()
    events = [block.removeprefix(b"data: ") for block in received.split(b"\n\n") if block.startswith(b"data: ")]
    assert any(b'"content":"Hello"' in event for event in events[:-1])
    error = orjson.loads(events[-1])["error"]
    assert error["code"] == "upstream_response_too_large"
    assert f"limits.max_event_bytes ({CAP} bytes)" in error["message"]
    assert b"[DONE]" not in received


async def test_an_endless_line_is_cut_at_max_event_bytes_and_the_upstream_dropped(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    """A line that never ends (64 MB without a newline, in many writes) is refused once it passes
    limits.max_event_bytes, not read on: a 502 naming the limit, and the gateway hangs up on the
    upstream long before the 64 MB are written."""
    piece, total = b"x" * 65536, 64 << 20  # far more than the sockets between them can hold
    written = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b'data: {"id": "')
        while written < total:
            await response.write(piece)
            written += len(piece)
        await response.write_eof()
        return response

    upstream.handler = handle
    gateway = await capped_gateway(upstream, gateway_factory)
    async with sdk(gateway) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "upstream_response_too_large", raised.value.body
    assert f"limits.max_event_bytes ({CAP} bytes)" in raised.value.body["message"]
    await wait_for(lambda: upstream.disconnects)  # the upstream's write failed: the gateway hung up
    assert written < total, written


# -- a pooled connection the upstream closed


@dataclass
class ClosingUpstream:
    """A raw loopback upstream that answers the first `answered` requests on each connection
    (keep-alive), then closes the connection at the next one, reading it but not answering:
    what a pooled connection meets when the upstream dropped it as the request went out."""

    answered: int
    port: int = 0
    connections: int = 0
    requests: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            for index in range(self.answered + 1):
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                self.requests += 1
                if index == self.answered:
                    break  # closed unanswered
                writer.write(ok(orjson.dumps(completion(f"answer {self.requests}"))))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def closing_upstream() -> AsyncIterator[Callable[[int], Awaitable[ClosingUpstream]]]:
    servers: list[asyncio.Server] = []

    async def start(answered: int) -> ClosingUpstream:
        fake = ClosingUpstream(answered)
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        fake.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return fake

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def upstream_errors(gateway: Gateway) -> dict[str, float]:
    """gateway_upstream_errors_total of provider `up`, by reason, as /metrics shows it."""
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/metrics") as response:
        found = samples(await response.text())
    return {
        dict(labels)["reason"]: count
        for (name, labels), count in found.items()
        if name == "gateway_upstream_errors_total" and dict(labels).get("provider") == "up"
    }


async def target_health(gateway: Gateway) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/health/upstreams") as response:
        [target] = [row for row in (await response.json())["targets"] if row["provider"] == "up"]
    return target


async def test_a_pooled_connection_closed_at_the_next_request_is_retried_unseen(
    closing_upstream: Callable[[int], Awaitable[ClosingUpstream]], gateway_factory: GatewayFactory
) -> None:
    """The upstream closes a kept-alive connection as the next request arrives on it: that
    request is sent again on a fresh connection and succeeds, and it is no failure (no
    gateway_upstream_errors_total sample, 0 failures in /health/upstreams)."""
    fake = await closing_upstream(1)
    gateway = await gateway_factory(openai_route_config(fake.url))
    async with sdk(gateway) as client:
        first = await client.chat.completions.create(model="test-model", messages=MESSAGES)
        second = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert first.choices[0].message.content == "answer 1"
    assert second.choices[0].message.content == "answer 3"  # the 2nd was read on the old connection, unanswered
    assert (fake.connections, fake.requests) == (2, 3)
    assert await upstream_errors(gateway) == {}
    assert (await target_health(gateway))["failures"] == 0


async def test_a_fresh_connection_closed_before_the_answer_is_an_error(
    closing_upstream: Callable[[int], Awaitable[ClosingUpstream]], gateway_factory: GatewayFactory
) -> None:
    """The control: the first request on a fresh connection closed unanswered is not tried
    again; a 502 upstream_protocol_error, counted as the target's failure."""
    fake = await closing_upstream(0)
    gateway = await gateway_factory(openai_route_config(fake.url))
    async with sdk(gateway) as client:
        with pytest.raises(openai.APIStatusError) as raised:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 502
    assert raised.value.body["code"] == "upstream_protocol_error", raised.value.body
    assert (fake.connections, fake.requests) == (1, 1)
    assert await upstream_errors(gateway) == {"protocol": 1}
    assert (await target_health(gateway))["failures"] == 1
