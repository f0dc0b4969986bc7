"""The HTTP client to upstreams: one aiohttp `ClientSession` for the process, shared by every
provider and kept across config reloads (aiohttp's advice: one session per application).

What it holds to, from `upstream:` in gateway.yaml (config.UpstreamConfig): keep-alive
pools with at most `max_connections` per host, idle connections closed after
`keepalive_timeout`, cached DNS answers, happy eyeballs, and proxies from the
environment when `trust_env` is on. Per provider (`ProviderTransport`): its TLS
settings. No cookie jar, no redirects followed.

Proxies: HTTP_PROXY, HTTPS_PROXY and NO_PROXY are read once, when the client is made,
and the proxy for each upstream URL is chosen once, when it is first used (aiohttp's
own trust_env looks them up on every request, and a netrc file in a thread).

Every aiohttp exception is mapped to the gateway's own in one place, `mapped_errors()`,
with messages that name no URL (a proxy's or base_url's credentials never leave).
"""

from __future__ import annotations

import contextvars
import ssl
import urllib.request
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ClientRequest
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDictProxy
from yarl import URL

from ..config import ProviderConfig, UpstreamConfig
from ..errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamTooLarge, UpstreamUnreachable
from .base import UpstreamRequest

MAX_HEADER_BYTES = 32 * 1024  # one header line of an upstream's answer; beyond is a protocol error
STREAM_HEADERS = {"Accept-Encoding": "identity"}  # compressing an event stream would hold events back


# Whether the connection the current request got had carried a request before; set by
# PoolingConnector.connect(), which runs in the request's own task (so its context).
REUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("reused", default=False)


class PoolingConnector(aiohttp.TCPConnector):
    """aiohttp's TCPConnector, telling the request whether its connection came from the pool.

    A connection is known by its protocol object, which lives as long as the socket;
    the set of them holds no reference (a WeakSet), so closed ones are forgotten.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._handed_out: weakref.WeakSet[ResponseHandler] = weakref.WeakSet()

    async def connect(self, req: ClientRequest, traces: list[Trace], timeout: aiohttp.ClientTimeout) -> Connection:
        connection = await super().connect(req, traces, timeout)
        protocol = connection.protocol
        if protocol is not None:
            if protocol in self._handed_out:
                REUSED.set(True)
            else:
                self._handed_out.add(protocol)
        return connection


class UpstreamClient:
    """The session and its connector; `for_provider()` gives each provider its transport.

    Create it inside the running event loop; `aclose()` closes every connection.
    """

    def __init__(self, settings: UpstreamConfig) -> None:
        self.settings = settings
        connector = PoolingConnector(
            limit=0,  # the bound is per host: one busy upstream must not starve the others
            limit_per_host=settings.max_connections,
            keepalive_timeout=settings.keepalive_timeout,
            use_dns_cache=settings.dns_cache_ttl > 0,
            ttl_dns_cache=int(settings.dns_cache_ttl) or None,
            happy_eyeballs_delay=settings.happy_eyeballs_delay,
        )
        self.proxies = urllib.request.getproxies_environment() if settings.trust_env else {}
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            max_line_size=MAX_HEADER_BYTES,
            max_field_size=MAX_HEADER_BYTES,
        )

    @property
    def proxy_urls(self) -> list[str]:
        """The proxies from the environment (their credentials are secrets: config.secrets)."""
        return [url for scheme, url in self.proxies.items() if scheme != "no"]

    def for_provider(self, provider: ProviderConfig) -> ProviderTransport:
        """A transport with `provider`'s TLS settings (its CA bundle, client certificate, verify)."""
        return ProviderTransport(self.session, tls_context(provider), self.proxies)

    async def aclose(self) -> None:
        await self.session.close()


def tls_context(provider: ProviderConfig) -> ssl.SSLContext | bool:
    """aiohttp's `ssl=`: True for the system's CAs, False to skip verifying, or a context of
    the provider's own CAs and client certificate (checked loadable at config load)."""
    if not provider.verify:
        return False
    if not (provider.ca_bundle or provider.client_cert):
        return True
    context = ssl.create_default_context(cafile=provider.ca_bundle or None)
    if provider.client_cert:
        context.load_cert_chain(provider.client_cert, provider.client_key)
    return context


@dataclass(frozen=True, slots=True)
class Destination:
    """An upstream URL taken apart once: where to send, and through which proxy."""

    url: URL
    proxy: URL | None = None  # without its credentials, which go in proxy_headers or headers
    proxy_headers: Mapping[str, str] = field(default_factory=dict)  # sent by aiohttp with an https CONNECT only
    headers: Mapping[str, str] = field(default_factory=dict)  # added to a plain-http request: the proxy gets it whole


def destination(url: str, proxies: Mapping[str, str]) -> Destination:
    """`url` and the proxy the environment names for it (urllib's rules for *_PROXY and NO_PROXY)."""
    target = URL(url)
    proxy = proxies.get(target.scheme)
    if not proxy or (target.host and urllib.request.proxy_bypass(target.host, proxies)):
        return Destination(target)
    proxy_url = URL(proxy if "://" in proxy else f"http://{proxy}")
    headers = {}
    if proxy_url.user is not None:
        headers["Proxy-Authorization"] = aiohttp.encode_basic_auth(proxy_url.user, proxy_url.password or "")
        proxy_url = proxy_url.with_user(None)
    if target.scheme != "https":  # no tunnel: the credentials go with the request itself
        return Destination(target, proxy_url, headers=headers)
    return Destination(target, proxy_url, headers)


class ProviderTransport:
    """The shared session with one provider's TLS settings: the `Transport` the pipeline uses."""

    __slots__ = ("_destinations", "_proxies", "_session", "_ssl", "_timeouts")

    def __init__(self, session: aiohttp.ClientSession, tls: ssl.SSLContext | bool, proxies: Mapping[str, str]) -> None:
        self._session = session
        self._ssl = tls
        self._proxies = proxies  # scheme (and "no") -> value, from the environment
        self._destinations: dict[str, Destination] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> HTTPResponse:
        """See upstream.base.Transport. A pooled connection that the upstream had closed while
        idle (it breaks before any answer) is tried once more, on a fresh connection: that is
        neither a failed attempt nor a strike against the target."""
        where = self._destinations.get(request.url)
        if where is None:
            where = self._destinations[request.url] = destination(request.url, self._proxies)
        timeout = self._timeouts.get(connect_timeout)
        if timeout is None:
            # the connect limit includes the wait for a free connection of the host's pool
            timeout = self._timeouts[connect_timeout] = aiohttp.ClientTimeout(total=None, connect=connect_timeout)
        headers = {**request.headers, **STREAM_HEADERS} if request.stream else request.headers
        if where.headers:
            headers = {**headers, **where.headers}
        for last_try in (False, True):
            REUSED.set(False)
            try:
                response = await self._session.post(
                    where.url,
                    data=request.body,
                    proxy=where.proxy,
                    proxy_headers=where.proxy_headers or None,
                    headers=headers,
                    ssl=self._ssl,
                    allow_redirects=False,
                    timeout=timeout,
                )
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if last_try or not REUSED.get() or isinstance(exc, aiohttp.ClientConnectorError):
                    raise mapped_error(exc, connect_timeout) from None
            except (aiohttp.ClientError, ValueError) as exc:
                raise mapped_error(exc, connect_timeout) from None
        if 300 <= response.status < 400:
            response.close()
            raise UpstreamProtocolError(
                f"The upstream answered with a redirect (HTTP {response.status}); the gateway does not follow "
                "them: set the provider's base_url to the address it points to."
            )
        if response.status == 407:  # only a proxy answers so (to a plain-http request through it)
            response.close()
            raise UpstreamUnreachable("The proxy refused the request (HTTP 407).")
        return HTTPResponse(response)


class HTTPResponse:
    """An upstream's answer: status and headers, and the body as it arrives (upstream.base.UpstreamResponse)."""

    __slots__ = ("_content", "_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: CIMultiDictProxy[str] = response.headers
        self._response = response
        self._content = response.content

    async def read(self, max_bytes: int) -> bytes:
        length = self._response.content_length
        if length is not None and length > max_bytes and "Content-Encoding" not in self.headers:
            self.close()
            raise UpstreamTooLarge("response", "limits.max_response_bytes", max_bytes)
        pieces: list[bytes] = []
        size = 0
        try:
            while piece := await self._content.readany():
                size += len(piece)
                if size > max_bytes:
                    pieces.clear()
                    self.close()
                    raise UpstreamTooLarge("response, decompressed,", "limits.max_response_bytes", max_bytes)
                pieces.append(piece)
        except BODY_ERRORS:
            raise body_cut_off() from None
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def read_chunk(self) -> bytes:
        try:
            return await self._content.readany()
        except BODY_ERRORS:
            raise body_cut_off() from None

    def read_ready(self) -> bytes | None:
        try:
            data = self._content.read_nowait()
        except BODY_ERRORS:
            raise body_cut_off() from None
        if data:
            return data
        return b"" if self._content.at_eof() else None

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


BODY_ERRORS = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError)


def body_cut_off() -> UpstreamError:
    """A body that breaks off, as the gateway's error."""
    return UpstreamProtocolError("The upstream's response body was cut off or malformed.")


def mapped_error(exc: BaseException, connect_timeout: float) -> UpstreamError:
    """aiohttp's exception before the answer's headers, as the gateway's; never with a URL in it.
    (A function, not a context manager: a try/except costs nothing when nothing is raised.)"""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):  # no free connection in the pool in time, or a slow connect
        return UpstreamTimeout("connect", connect_timeout)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        error = exc.certificate_error
        reason = getattr(error, "verify_message", None) or getattr(error, "reason", None) or type(error).__name__
        return UpstreamUnreachable(f"Could not connect to the upstream (TLS: {reason}).")
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        reason = getattr(exc.os_error, "reason", None) or type(exc.os_error).__name__
        return UpstreamUnreachable(f"Could not connect to the upstream (TLS: {reason}).")
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return UpstreamUnreachable(f"Could not connect to the proxy ({exc.strerror or 'refused'}).")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return UpstreamUnreachable(f"The proxy refused the connection (HTTP {exc.status}).")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"Could not connect to the upstream ({exc.strerror or 'refused'}).")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamProtocolError("The upstream closed the connection before answering.")
    if isinstance(exc, aiohttp.ClientResponseError):  # the answer's head could not be parsed (its text is not echoed)
        if "content-encoding" in exc.message.lower():
            return UpstreamProtocolError("The upstream's answer has a content encoding the gateway cannot decode.")
        return UpstreamProtocolError("The upstream's answer is not valid HTTP.")
    if isinstance(exc, aiohttp.ClientOSError):
        return UpstreamProtocolError(
            f"The connection to the upstream broke before the answer ({exc.strerror or 'reset'})."
        )
    if isinstance(exc, aiohttp.InvalidURL):
        return UpstreamUnreachable("The upstream's URL is not valid.")
    if isinstance(exc, ValueError):  # aiohttp refuses a header value with a line break or control character
        return UpstreamProtocolError("A header for the upstream holds a line break or control character.")
    return UpstreamProtocolError(f"The exchange with the upstream failed ({type(exc).__name__}).")
