"""The only user of aiohttp's ClientSession: sends upstream requests, maps its errors.

A `Transport` sends one `UpstreamRequest` and returns an `UpstreamResponse` whose
body is read with `read()` or chunk by chunk with `read_chunk()`; `close()` drops
the connection (the upstream stops generating). Every aiohttp exception is turned
into the gateway's own by `map_client_error()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from .errors import UpstreamError, UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; b"" at its end."""
        ...

    def read_ready(self) -> bytes | None:
        """The bytes of the body already received, without waiting; b"" at its end,
        None when nothing is there yet (read_chunk() would wait)."""
        ...

    def release(self) -> None:
        """Done with the body: the connection goes back to the pool if the body has ended
        (what is left of it already arrived), else it is dropped; never waits."""
        ...

    def close(self) -> None:
        """Drop the connection at once (the upstream stops generating)."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def map_client_error(exc: BaseException, connect_timeout: float) -> UpstreamError:
    """An aiohttp exception, as the gateway's: the one place they are translated."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeout("connect", connect_timeout)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamUnreachable(f"Could not connect to the upstream ({exc.os_error.strerror or exc.os_error}).")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return UpstreamProtocolError("The upstream's response body was cut off or malformed.")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamProtocolError("The upstream closed the connection before answering.")
    return UpstreamProtocolError(f"Upstream connection failed ({type(exc).__name__}).")


CLIENT_ERRORS = (aiohttp.ClientError, ConnectionError)


class AiohttpResponse:
    __slots__ = ("_response", "status", "headers", "_connect_timeout")

    def __init__(self, response: aiohttp.ClientResponse, connect_timeout: float) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers
        self._connect_timeout = connect_timeout

    async def read(self) -> bytes:
        try:
            return await self._response.read()
        except CLIENT_ERRORS as exc:
            raise map_client_error(exc, self._connect_timeout) from None

    async def read_chunk(self) -> bytes:
        try:
            return await self._response.content.readany()
        except CLIENT_ERRORS as exc:
            raise map_client_error(exc, self._connect_timeout) from None

    def read_ready(self) -> bytes | None:
        content = self._response.content
        try:
            data = content.read_nowait()
        except CLIENT_ERRORS as exc:
            raise map_client_error(exc, self._connect_timeout) from None
        return data if data or content.at_eof() else None

    def release(self) -> None:
        content = self._response.content
        try:
            content.read_nowait()  # the end of the body that came with the last event, if it did
        except Exception:  # noqa: BLE001 - a broken body: the connection is not worth keeping
            self._response.close()
            return
        if content.at_eof():
            self._response.release()
        else:
            self._response.close()

    def close(self) -> None:
        self._response.close()


class AiohttpTransport:
    """One long-lived ClientSession with keep-alive pooling, for one provider."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session or new_client_session()
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> AiohttpResponse:
        timeout = self._timeouts.get(connect_timeout)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout)
            self._timeouts[connect_timeout] = timeout
        try:
            response = await self._session.post(request.url, data=request.body, headers=request.headers, timeout=timeout)
        except CLIENT_ERRORS as exc:
            raise map_client_error(exc, connect_timeout) from None
        return AiohttpResponse(response, connect_timeout)

    async def aclose(self) -> None:
        await self._session.close()


def new_client_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        timeout=aiohttp.ClientTimeout(total=None),
        raise_for_status=False,
    )

