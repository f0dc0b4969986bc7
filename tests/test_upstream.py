"""The upstream client on real loopback sockets: keep-alive, framing, compression, TLS, caps,
and every way an exchange breaks."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace

import pytest
import trustme
from aiohttp import web

from gateway.config import ProviderConfig, UpstreamConfig
from gateway.errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from gateway.upstream.base import UpstreamRequest
from gateway.upstream.client import ProviderTransport, UpstreamClient

BODY = b'{"model":"m","messages":[]}'
ANY_SIZE = 1 << 30
PROVIDER = ProviderConfig(name="up", kind="openai", base_url="http://127.0.0.1")


@dataclass
class RawUpstream:
    """A loopback server speaking raw bytes: each request is answered by `answer(request_bytes)`,
    which returns the bytes to write and whether to close the connection after them."""

    answer: Callable[[bytes], tuple[bytes, bool]]
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # set whenever a connection ends

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                data, close = self.answer(request)
                writer.write(data)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.closed.set()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[Callable[[bytes], tuple[bytes, bool]]], Awaitable[RawUpstream]]]:
    servers: list[asyncio.Server] = []

    async def start(answer: Callable[[bytes], tuple[bytes, bool]]) -> RawUpstream:
        fake = RawUpstream(answer)
        server = await asyncio.start_server(fake.serve, "127.0.0.1", 0)
        fake.port = server.sockets[0].getsockname()[1]
        servers.append(server)
        return fake

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient(UpstreamConfig())
    yield upstream_client
    await upstream_client.aclose()


@pytest.fixture
def transport(client: UpstreamClient) -> ProviderTransport:
    return client.for_provider(PROVIDER)


def ok(body: bytes = b'{"ok":true}', *, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


async def post(
    transport: ProviderTransport, url: str, *, headers: dict[str, str] | None = None, stream: bool = False
) -> tuple[int, bytes]:
    request = UpstreamRequest(url=url, body=BODY, headers=headers or {}, stream=stream)
    response = await transport.send(request, connect_timeout=5)
    try:
        return response.status, await response.read(ANY_SIZE)
    finally:
        response.release()


async def test_the_request_carries_its_body_length_host_and_headers(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    status, body = await post(
        transport, fake.url, headers={"Authorization": "Bearer sk-test", "Content-Type": "application/json"}
    )
    assert (status, body) == (200, b'{"ok":true}')
    head, _, sent_body = fake.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{fake.port}".encode() in lines
    assert b"Authorization: Bearer sk-test" in lines
    assert b"Content-Length: %d" % len(BODY) in lines
    assert b"Accept-Encoding: gzip, deflate" in lines
    assert sent_body == BODY


async def test_a_configured_header_replaces_the_default_of_that_name(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    await post(transport, fake.url, headers={"accept-encoding": "identity", "user-agent": "ours/1"})
    lines = fake.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert [line for line in lines if line.lower().startswith(b"accept-encoding")] == [b"accept-encoding: identity"]
    assert [line for line in lines if line.lower().startswith(b"user-agent")] == [b"user-agent: ours/1"]


async def test_a_stream_is_asked_for_uncompressed(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    await post(transport, fake.url, stream=True)
    await post(transport, fake.url)
    streamed, whole = (request.split(b"\r\n\r\n")[0].split(b"\r\n") for request in fake.requests)
    assert b"Accept-Encoding: identity" in streamed
    assert b"Accept-Encoding: identity" not in whole and any(b"gzip" in line for line in whole)


async def test_the_url_is_sent_encoded_and_its_credentials_as_basic_auth(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    await post(
        transport,
        f"http://user:p%40ss@127.0.0.1:{fake.port}/openai/deployments/my model/chat/completions?api-version=2024-10-21",
    )
    lines = fake.requests[0].split(b"\r\n\r\n")[0].split(b"\r\n")
    assert lines[0] == b"POST /openai/deployments/my%20model/chat/completions?api-version=2024-10-21 HTTP/1.1"
    assert b"Authorization: Basic dXNlcjpwQHNz" in lines  # user:p@ss
    assert f"Host: 127.0.0.1:{fake.port}".encode() in lines


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    with pytest.raises(UpstreamProtocolError, match="line break or control character"):
        await post(transport, fake.url, headers={"X-Note": "a\r\nX-Injected: yes"})
    assert fake.requests == []


async def test_sequential_requests_reuse_one_connection(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), False))
    for _ in range(5):
        assert await post(transport, fake.url) == (200, b'{"ok":true}')
    assert fake.connections == 1


async def test_requests_in_flight_together_each_get_a_connection_and_all_are_kept(transport) -> None:
    """Four requests held open at once need four connections; the next four reuse them."""
    in_flight = 0
    all_in = asyncio.Event()
    peers: set[tuple[str, int]] = set()

    async def held(request: web.Request) -> web.Response:
        nonlocal in_flight
        assert request.transport is not None
        peers.add(request.transport.get_extra_info("peername"))
        in_flight += 1
        if in_flight == 4:
            all_in.set()
        await all_in.wait()
        in_flight -= 1
        if in_flight == 0:
            all_in.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", held)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    try:
        await asyncio.gather(*(post(transport, url) for _ in range(4)))
        assert len(peers) == 4
        await asyncio.gather(*(post(transport, url) for _ in range(4)))
        assert len(peers) == 4  # the same four connections, from the pool
    finally:
        await runner.cleanup()


async def test_connection_close_from_the_upstream_is_honoured(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(extra=b"Connection: close\r\n"), True))
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    assert fake.connections == 2


async def test_an_idle_connection_the_upstream_closed_is_not_reused(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (ok(), True))  # closes without saying so
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    await fake.closed.wait()
    assert await post(transport, fake.url) == (200, b'{"ok":true}')  # never an error for the closed one
    assert fake.connections == 2


async def test_a_body_delimited_by_close_is_read_whole(raw_upstream, transport) -> None:
    fake = await raw_upstream(
        lambda request: (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n", True)
    )
    assert await post(transport, fake.url) == (200, b"data: 1\n\ndata: 2\n\n")
    assert await post(transport, fake.url) == (200, b"data: 1\n\ndata: 2\n\n")
    assert fake.connections == 2


async def test_a_chunked_body_arrives_unframed(raw_upstream, transport) -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7;ext=1\r\ndata: 1\r\n3\r\n\n\nd\r\n0\r\n\r\n"
    fake = await raw_upstream(lambda request: (chunked, False))
    assert await post(transport, fake.url) == (200, b"data: 1\n\nd")
    assert await post(transport, fake.url) == (200, b"data: 1\n\nd")
    assert fake.connections == 1


async def test_a_gzip_body_is_decompressed(raw_upstream, transport) -> None:
    packed = gzip.compress(b'{"id":"chatcmpl-1"}' * 100)
    fake = await raw_upstream(lambda request: (ok(packed, extra=b"Content-Encoding: gzip\r\n"), False))
    assert await post(transport, fake.url) == (200, b'{"id":"chatcmpl-1"}' * 100)


async def test_an_interim_answer_is_skipped(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), False))
    assert await post(transport, fake.url) == (200, b'{"ok":true}')


async def test_error_statuses_come_back_with_their_headers(raw_upstream, transport) -> None:
    answer = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 2\r\n\r\n{}"
    fake = await raw_upstream(lambda request: (answer, False))
    response = await transport.send(UpstreamRequest(url=fake.url, body=BODY), connect_timeout=5)
    assert (response.status, response.headers["retry-after"], await response.read(ANY_SIZE)) == (429, "3", b"{}")
    response.release()


async def test_a_redirect_is_an_error_that_names_the_fix(raw_upstream, transport) -> None:
    fake = await raw_upstream(
        lambda request: (
            b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://elsewhere/\r\nContent-Length: 0\r\n\r\n",
            False,
        )
    )
    with pytest.raises(UpstreamProtocolError, match=r"redirect \(HTTP 308\).*base_url"):
        await post(transport, fake.url)


async def test_a_connection_closed_before_the_answer_is_an_error(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (b"", True))
    with pytest.raises(UpstreamProtocolError, match="closed the connection before answering"):
        await post(transport, fake.url)


async def test_a_body_cut_off_is_an_error(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial', True))
    with pytest.raises(UpstreamProtocolError, match="cut off"):
        await post(transport, fake.url)


async def test_a_chunked_body_cut_off_is_an_error_after_what_arrived(raw_upstream, transport) -> None:
    fake = await raw_upstream(
        lambda request: (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\ndata: 1\n\r\n", True)
    )
    response = await transport.send(UpstreamRequest(url=fake.url, body=BODY), connect_timeout=5)
    assert await response.read_chunk() == b"data: 1\n"
    with pytest.raises(UpstreamProtocolError, match="cut off"):
        await response.read_chunk()
    response.release()


async def test_an_answer_that_is_not_http_is_an_error(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", False))
    with pytest.raises(UpstreamProtocolError, match="not valid HTTP"):
        await post(transport, fake.url)


async def test_huge_headers_are_refused(raw_upstream, transport) -> None:
    fake = await raw_upstream(
        lambda request: (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n", False)
    )
    with pytest.raises(UpstreamProtocolError, match="not valid HTTP"):
        await post(transport, fake.url)


async def test_a_refused_connection_is_unreachable(transport) -> None:
    server = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamUnreachable, match="Could not connect to the upstream"):
        await post(transport, f"http://127.0.0.1:{port}/v1/chat/completions")


async def test_a_deadline_before_the_headers_drops_the_connection(raw_upstream, transport) -> None:
    fake = await raw_upstream(lambda request: (b"", False))  # reads the request, never answers
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await post(transport, fake.url)
    await fake.closed.wait()  # the gateway hung up: the upstream stops working for nobody


async def test_close_mid_body_drops_the_connection(raw_upstream, transport) -> None:
    partial = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"par'
    fake = await raw_upstream(lambda request: (partial if len(fake.requests) == 1 else ok(), False))
    response = await transport.send(UpstreamRequest(url=fake.url, body=BODY), connect_timeout=5)
    assert await response.read_chunk() == b'{"par'
    response.close()
    await fake.closed.wait()  # the upstream sees the gateway hang up
    assert await post(transport, fake.url) == (200, b'{"ok":true}')  # the next request gets a fresh connection
    assert fake.connections == 2


async def test_a_reader_that_falls_behind_holds_the_upstream_back(transport) -> None:
    """The client buffers a bounded amount: an upstream writing to a reader that reads nothing
    is held back by TCP, and the whole body still arrives once the reader reads."""
    total = 64 * 1024 * 1024  # far more than the sockets' buffers hold
    written = 0
    stalled = asyncio.Event()

    async def flood(request: web.Request) -> web.StreamResponse:
        nonlocal written
        response = web.StreamResponse()
        await response.prepare(request)
        piece = b"x" * 65536
        while written < total:
            write = asyncio.ensure_future(response.write(piece))
            done, _ = await asyncio.wait({write}, timeout=0.5)  # no progress for half a second: held back
            if not done:
                stalled.set()
                await write  # goes on once the reader reads again
            written += len(piece)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", flood)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    try:
        response = await transport.send(UpstreamRequest(url=url, body=BODY), connect_timeout=5)
        await stalled.wait()
        assert written < total // 4  # held back by TCP, not buffered without end in the gateway
        assert len(await response.read(ANY_SIZE)) == total
        response.release()
    finally:
        await runner.cleanup()


async def test_https_upstreams_are_verified_against_the_providers_ca_bundle(tmp_path, client) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca_bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_bundle))
    async with tls_server(server_tls) as url:
        trusting = client.for_provider(replace(PROVIDER, ca_bundle=str(ca_bundle)))
        assert await post(trusting, url) == (200, b'{"ok": true}')
        with pytest.raises(UpstreamUnreachable, match=r"TLS: .*certificate") as refused:
            await post(client.for_provider(PROVIDER), url)  # the system's CAs do not know this one
        assert url not in str(refused.value)
        unverified = client.for_provider(replace(PROVIDER, verify=False))
        assert await post(unverified, url) == (200, b'{"ok": true}')


async def test_mutual_tls_sends_the_providers_client_certificate(tmp_path, client) -> None:
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    server_tls.verify_mode = ssl.CERT_REQUIRED  # the upstream asks for a client certificate it trusts
    authority.configure_trust(server_tls)
    ca_bundle, cert, key = tmp_path / "ca.pem", tmp_path / "client.pem", tmp_path / "client.key"
    authority.cert_pem.write_to_path(str(ca_bundle))
    client_certificate = authority.issue_cert("gateway@example.com")
    client_certificate.cert_chain_pems[0].write_to_path(str(cert))
    client_certificate.private_key_pem.write_to_path(str(key))
    async with tls_server(server_tls) as url:
        with_certificate = replace(PROVIDER, ca_bundle=str(ca_bundle), client_cert=str(cert), client_key=str(key))
        assert await post(client.for_provider(with_certificate), url) == (200, b'{"ok": true}')
        without = client.for_provider(replace(PROVIDER, ca_bundle=str(ca_bundle)))
        with pytest.raises((UpstreamUnreachable, UpstreamProtocolError)):
            await post(without, url)


@contextlib.asynccontextmanager
async def tls_server(server_tls: ssl.SSLContext) -> AsyncIterator[str]:
    """An https upstream on loopback answering {"ok": true}; yields its URL."""

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    try:
        yield f"https://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    finally:
        await runner.cleanup()


async def test_a_connect_that_takes_too_long_is_a_connect_timeout(transport) -> None:
    # a TLS handshake with a server that accepts and never answers stands for a slow connect
    silent: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: silent.append(writer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(UpstreamTimeout) as caught:
            await transport.send(UpstreamRequest(url=f"https://127.0.0.1:{port}/", body=BODY), connect_timeout=0.05)
        assert caught.value.kind == "connect"
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_proxy_that_refuses_its_credentials_is_unreachable_not_an_answer(
    raw_upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain-http request through a proxy (HTTP_PROXY, trust_env on) that answers 407 is an
    error that names the proxy, not the upstream's answer passed on to the client; the
    proxy's password is in no message."""
    proxy = await raw_upstream(
        lambda request: (
            b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="proxy"\r\n'
            b"Content-Length: 0\r\n\r\n",
            False,
        )
    )
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://user:secretpass@127.0.0.1:{proxy.port}")
    client = UpstreamClient(UpstreamConfig())  # trust_env: reads HTTP_PROXY now
    try:
        with pytest.raises(UpstreamUnreachable, match=r"proxy refused .*\(HTTP 407\)") as refused:
            await post(client.for_provider(PROVIDER), "http://127.0.0.1:9/v1/chat/completions")
    finally:
        await client.aclose()
    assert "secretpass" not in str(refused.value)
    [request] = proxy.requests  # the proxy got it, with its credentials
    assert request.startswith(b"POST http://127.0.0.1:9/v1/chat/completions HTTP/1.1\r\n")
    assert b"Proxy-Authorization: Basic dXNlcjpzZWNyZXRwYXNz\r\n" in request  # user:secretpass


async def test_a_pooled_connection_closed_at_the_next_request_is_retried_once_on_a_fresh_one(
    raw_upstream, transport
) -> None:
    """The upstream reads the second request on a kept-alive connection and closes it unanswered:
    the request is sent again, once, on a fresh connection, and its answer comes back."""
    fake = await raw_upstream(lambda request: (b"", True) if len(fake.requests) == 2 else (ok(), False))
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    assert (fake.connections, len(fake.requests)) == (2, 3)


async def test_a_retried_request_whose_fresh_connection_is_closed_too_is_an_error(raw_upstream, transport) -> None:
    """The retry on a fresh connection is the last: closed unanswered as well, it is an error."""
    fake = await raw_upstream(lambda request: (b"", True) if len(fake.requests) >= 2 else (ok(), False))
    assert await post(transport, fake.url) == (200, b'{"ok":true}')
    with pytest.raises(UpstreamProtocolError, match="closed the connection before answering"):
        await post(transport, fake.url)
    assert (fake.connections, len(fake.requests)) == (2, 3)


async def test_a_fresh_connection_closed_before_the_answer_is_not_retried(raw_upstream, transport) -> None:
    """A request on a new connection that the upstream closes unanswered is not sent again."""
    fake = await raw_upstream(lambda request: (b"", True))
    with pytest.raises(UpstreamProtocolError, match="closed the connection before answering"):
        await post(transport, fake.url)
    assert (fake.connections, len(fake.requests)) == (1, 1)
