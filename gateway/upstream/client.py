"""The upstream client: sends each `UpstreamRequest` over a pooled keep-alive connection.

A `Transport` sends one `UpstreamRequest` and returns an `UpstreamResponse` whose
body is read with `read()` or chunk by chunk with `read_chunk()`; `close()` drops
the connection (the upstream stops generating). Failures to connect are turned into
the gateway's own errors here, failures of an exchange in http1.py.

Why not aiohttp's ClientSession: against the bench's nginx a request through it took
about 150 us, where writing the same bytes on a bare asyncio protocol and reading the
answer took about 75 us, round trip included (bench/README.md, "The upstream client").
The parsing is httptools' (llhttp); what is ours is the pool and the request's bytes.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections import deque
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from ..errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable
from .base import UpstreamRequest
from .http1 import HTTP1Connection, HTTP1Response

IDLE_SECONDS = 15.0  # a pooled connection unused for longer is closed, not reused: servers drop idle ones
DEFAULT_HEADERS = {"accept": "Accept: */*\r\n", "accept-encoding": "Accept-Encoding: gzip, deflate\r\n"}
OWN_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})  # the transport's to write

URL_SAFE = "/%:@!$&'()*+,;=-._~"  # what stays as it is in a request's path (and query, with "?")
Origin = tuple[str, str, int]  # scheme, host, port: what a connection can be reused for


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An upstream URL, taken apart once."""

    origin: Origin
    tls: bool
    request_line: str  # "POST /path HTTP/1.1\r\n"
    host_header: str  # "Host: name[:port]\r\n"
    basic_auth: str  # "Authorization: Basic ...\r\n" from user:password@ in the URL, else ""


def endpoint_for(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UpstreamUnreachable("The upstream's URL is not an http(s) URL.")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise UpstreamUnreachable("The upstream's URL has an invalid port.") from None
    target = quote(parts.path or "/", safe=URL_SAFE) + (
        f"?{quote(parts.query, safe=URL_SAFE + '?')}" if parts.query else ""
    )
    userinfo, _, authority = parts.netloc.rpartition("@")
    basic_auth = ""
    if userinfo:
        credentials = base64.b64encode(
            f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
        ).decode()
        basic_auth = f"Authorization: Basic {credentials}\r\n"
    return Endpoint(
        origin=(parts.scheme, parts.hostname, port),
        tls=tls,
        request_line=f"POST {target} HTTP/1.1\r\n",
        host_header=f"Host: {authority}\r\n",
        basic_auth=basic_auth,
    )


def encode_request(endpoint: Endpoint, request: UpstreamRequest) -> bytes:
    """The request's bytes: the request line, the headers, then the body with its length."""
    given: set[str] = set()
    fields: list[str] = []
    for name, value in request.headers.items():
        lowered = name.lower()
        given.add(lowered)
        if lowered not in OWN_HEADERS:
            fields.append(f"{name}: {value}\r\n")
    if "host" not in given:
        fields.append(endpoint.host_header)
    if endpoint.basic_auth and "authorization" not in given:
        fields.append(endpoint.basic_auth)
    fields.extend(line for name, line in DEFAULT_HEADERS.items() if name not in given)
    head = "".join(fields)
    if head.count("\n") != len(fields) or head.count("\r") != len(fields):
        raise UpstreamProtocolError("A header for the upstream holds a line break.")
    return b"".join(
        (
            endpoint.request_line.encode(),
            head.encode(),
            b"Content-Length: %d\r\n\r\n" % len(request.body),
            request.body,
        )
    )


_default_tls: ssl.SSLContext | None = None


def default_tls_context() -> ssl.SSLContext:
    """The system's CAs, verified; built once (it takes milliseconds)."""
    global _default_tls
    if _default_tls is None:
        _default_tls = ssl.create_default_context()
    return _default_tls


def can_reuse(connection: HTTP1Connection, now: float) -> bool:
    """Whether a pooled connection may carry another request: open, and idle for no longer than servers keep them."""
    return connection.usable and now - connection.idle_since <= IDLE_SECONDS


class HTTP1Transport:
    """Keep-alive connections per origin, the most recently used taken first; one per provider."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None) -> None:
        self._tls_context = tls_context
        self._endpoints: dict[str, Endpoint] = {}
        self._idle: dict[Origin, deque[HTTP1Connection]] = {}
        self._open: set[HTTP1Connection] = set()

    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> HTTP1Response:
        endpoint = self._endpoints.get(request.url)
        if endpoint is None:
            endpoint = self._endpoints[request.url] = endpoint_for(request.url)
        data = encode_request(endpoint, request)
        connection = self._idle_connection(endpoint.origin)
        if connection is None:
            connection = await self._connect(endpoint, connect_timeout)
        try:
            return await connection.send(data)
        except BaseException:  # an error, or a deadline before the headers came: the connection is lost to us
            connection.finish(reusable=False)
            raise

    def _idle_connection(self, origin: Origin) -> HTTP1Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = asyncio.get_running_loop().time()
        while idle:
            connection = idle.pop()
            if can_reuse(connection, now):
                return connection
            connection.close()
        return None

    async def _connect(self, endpoint: Endpoint, connect_timeout: float) -> HTTP1Connection:
        _, host, port = endpoint.origin
        tls = (self._tls_context or default_tls_context()) if endpoint.tls else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: HTTP1Connection(self, endpoint.origin),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise UpstreamTimeout("connect", connect_timeout) from None
        except ssl.SSLError as exc:
            raise UpstreamUnreachable(
                f"Could not connect to the upstream (TLS: {exc.reason or type(exc).__name__})."
            ) from None
        except OSError as exc:
            raise UpstreamUnreachable(f"Could not connect to the upstream ({exc.strerror or exc}).") from None
        self._open.add(connection)
        return connection

    # called by the connections
    def finished(self, connection: HTTP1Connection, reusable: bool) -> None:
        if not reusable:
            return
        now = asyncio.get_running_loop().time()
        connection.idle_since = now
        idle = self._idle.setdefault(connection.origin, deque())
        while idle and not can_reuse(idle[0], now):
            idle.popleft().close()
        idle.append(connection)

    def lost(self, connection: HTTP1Connection) -> None:
        self._open.discard(connection)

    async def aclose(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._open.clear()
        self._idle.clear()
