"""The only user of aiohttp's ClientSession: sends upstream requests, maps its errors.

A `Transport` sends one `UpstreamRequest` and returns an `UpstreamResponse` whose
body is read with `read()` or chunk by chunk with `read_chunk()`; `close()` drops
the connection (the upstream stops generating). Every aiohttp exception is turned
into the gateway's own in `mapped_client_errors()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from .errors import UpstreamProtocolError, UpstreamTimeout, UpstreamUnreachable


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

    def release(self) -> None:
        """Done with the body: the connection goes back to the pool if the body was read."""
        ...

    def close(self) -> None:
        """Drop the connection at once (the upstream stops generating)."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


@contextlib.contextmanager
def mapped_client_errors(connect_timeout: float) -> Iterator[None]:
    """aiohttp's exceptions, as the gateway's: the one place they are translated."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise UpstreamTimeout("connect", connect_timeout) from None
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnreachable(f"Could not connect to the upstream ({exc.os_error.strerror or exc.os_error}).") from None
    except aiohttp.ClientPayloadError:
        raise UpstreamProtocolError("The upstream's response body was cut off or malformed.") from None
    except aiohttp.ServerDisconnectedError:
        raise UpstreamProtocolError("The upstream closed the connection before answering.") from None
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise UpstreamProtocolError(f"Upstream connection failed ({type(exc).__name__}).") from None


class AiohttpResponse:
    __slots__ = ("_response", "status", "headers", "_connect_timeout")

    def __init__(self, response: aiohttp.ClientResponse, connect_timeout: float) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers
        self._connect_timeout = connect_timeout

    async def read(self) -> bytes:
        with mapped_client_errors(self._connect_timeout):
            return await self._response.read()

    async def read_chunk(self) -> bytes:
        with mapped_client_errors(self._connect_timeout):
            return await self._response.content.readany()

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


class AiohttpTransport:
    """One long-lived ClientSession with keep-alive pooling, for one provider."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session or new_client_session()

    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> AiohttpResponse:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout)
        with mapped_client_errors(connect_timeout):
            response = await self._session.post(request.url, data=request.body, headers=request.headers, timeout=timeout)
        return AiohttpResponse(response, connect_timeout)

    async def aclose(self) -> None:
        await self._session.close()


def new_client_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        timeout=aiohttp.ClientTimeout(total=None),
        raise_for_status=False,
    )

