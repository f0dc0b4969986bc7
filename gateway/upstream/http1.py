"""One HTTP/1.1 connection to an upstream, as an asyncio protocol: a request goes out
whole, the response is parsed by httptools (llhttp, Node.js's parser) as it arrives.

A connection carries one exchange at a time. The response's body is kept as the
pieces that arrived (chunked framing and gzip already undone) until the reader takes
them; reading from the socket pauses while too much waits unread. Whatever breaks
the exchange (the peer's close, bad framing) is raised to the reader as the gateway's
own error, never as a parser's or the socket's.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any, Protocol

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from ..errors import UpstreamError, UpstreamProtocolError

HIGH_WATER = 256 * 1024  # unread body bytes at which reading from the socket pauses
MAX_HEADER_BYTES = 64 * 1024  # an answer's headers beyond this are refused
DECODED_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate"})  # what the request's Accept-Encoding offers


class HeadersTooLarge(Exception):
    """Raised inside httptools' callback; it comes out as HttpParserCallbackError."""


def closed_before_answer() -> UpstreamError:
    return UpstreamProtocolError("The upstream closed the connection before answering.")


def body_cut_off() -> UpstreamError:
    return UpstreamProtocolError("The upstream's response body was cut off or malformed.")


EMPTY_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())


class Pool(Protocol):
    """Where a connection goes back when an exchange ends (upstream.HTTP1Transport)."""

    def finished(self, connection: HTTP1Connection, reusable: bool) -> None: ...

    def lost(self, connection: HTTP1Connection) -> None: ...


class HTTP1Response:
    """An upstream's response: status and headers, and the body as it arrives
    (the `UpstreamResponse` interface of upstream.py)."""

    __slots__ = ("_buffered", "_connection", "_ended", "_error", "_pieces", "_waiter", "headers", "status")

    def __init__(self, connection: HTTP1Connection) -> None:
        self.status = 0
        self.headers: CIMultiDictProxy[str] = EMPTY_HEADERS
        self._connection: HTTP1Connection | None = connection
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._ended = False  # the whole body has arrived
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def read_ready(self) -> bytes | None:
        pieces = self._pieces
        if pieces:
            data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            pieces.clear()
            self._buffered = 0
            if self._connection is not None:
                self._connection.resume_reading()  # if it paused
            return data
        if self._error is not None:
            raise self._error
        return b"" if self._ended else None

    async def read_chunk(self) -> bytes:
        data = self.read_ready()
        while data is None:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
            data = self.read_ready()
        return data

    async def read(self) -> bytes:
        pieces = []
        while data := await self.read_chunk():
            pieces.append(data)
        return b"".join(pieces)

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish(reusable=self._ended and self._error is None)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.finish(reusable=False)

    # fed by the connection
    def feed(self, data: bytes) -> None:
        self._pieces.append(data)
        self._buffered += len(data)
        if self._buffered >= HIGH_WATER and self._connection is not None:
            self._connection.pause_reading()
        self._wake()

    def end(self, error: UpstreamError | None = None) -> None:
        if self._ended or self._error is not None:
            return
        if error is None:
            self._ended = True
        else:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class HTTP1Connection(asyncio.Protocol):
    """One keep-alive connection; `send()` one request at a time, then `finish()` it."""

    def __init__(self, pool: Pool, origin: Any) -> None:
        self.transport: asyncio.Transport | None = None
        self.origin = origin  # what the pool may reuse it for
        self.closed = False
        self.idle_since = 0.0  # on the event loop's clock, set when it goes back to the pool
        self._pool = pool
        self._parser: Any = None
        self._response: HTTP1Response | None = None
        self._head: asyncio.Future[HTTP1Response] | None = None  # resolved when the headers are in
        self._header_pairs: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._delimited_by_close = False  # the body ends when the connection does
        self._inflate: Any = None
        self._complete = False
        self._keep_alive = False
        self._paused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._response is None or self._complete:
            self.close()  # bytes nobody asked for: not reusable
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadersTooLarge):
                self._fail(UpstreamProtocolError(f"The upstream's headers are over {MAX_HEADER_BYTES // 1024} KiB."))
            else:
                raise  # a bug of ours, not the upstream's: let asyncio report it
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamProtocolError("The upstream tried to switch protocols."))
        except httptools.HttpParserError:
            self._fail(
                body_cut_off()
                if self._head is None
                else UpstreamProtocolError("The upstream's answer is not valid HTTP.")
            )

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.lost(self)
        if self._response is not None and not self._complete:
            if self._head is not None:
                self._fail(closed_before_answer())
            elif self._delimited_by_close:
                self.on_message_complete()
            else:
                self._fail(body_cut_off())

    # the exchange
    def send(self, request: bytes) -> asyncio.Future[HTTP1Response]:
        """Write the request; the future resolves with the response once its headers are in."""
        self._response = HTTP1Response(self)
        self._head = head = asyncio.get_running_loop().create_future()
        self._parser = httptools.HttpResponseParser(self)
        self._header_pairs = []
        self._header_bytes = 0
        self._delimited_by_close = False
        self._inflate = None
        self._complete = False
        if self.closed:
            self._fail(closed_before_answer())
        else:
            self.transport.write(request)  # type: ignore[union-attr]
        return head

    def finish(self, *, reusable: bool) -> None:
        self._response = None
        self._head = None
        reusable = reusable and self._complete and self._keep_alive and not self.closed
        if reusable:
            self.resume_reading()
        else:
            self.close()
        self._pool.finished(self, reusable)

    @property
    def usable(self) -> bool:
        """Open, and not being closed: another request may go on it."""
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self._paused and not self.closed:
            self._paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def resume_reading(self) -> None:
        if self._paused and not self.closed:
            self._paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    # httptools' callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HeadersTooLarge
        self._header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status < 200:  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            self._header_pairs = []
            return
        response = self._response
        head = self._head
        if response is None or head is None:
            return
        headers = CIMultiDict(self._header_pairs)
        response.status = status
        response.headers = CIMultiDictProxy(headers)
        if 300 <= status < 400:
            self._fail(
                UpstreamProtocolError(
                    f"The upstream answered with a redirect (HTTP {status}); the gateway does not follow them: "
                    "set the provider's base_url to the address it points to."
                )
            )
            return
        self._delimited_by_close = (
            "content-length" not in headers and "chunked" not in headers.get("transfer-encoding", "").lower()
        )
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding in DECODED_ENCODINGS:
            self._inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib, told by its header
        elif encoding not in ("", "identity"):
            self._fail(
                UpstreamProtocolError(
                    f"The upstream's response is in an encoding the gateway did not ask for ({encoding})."
                )
            )
            return
        self._head = None
        if not head.done():
            head.set_result(response)

    def on_body(self, body: bytes) -> None:
        response = self._response
        if response is None:
            return
        if self._inflate is not None:
            try:
                body = self._inflate.decompress(body)
            except zlib.error:
                self._fail(UpstreamProtocolError("The upstream's compressed response is corrupt."))
                return
            if not body:
                return
        response.feed(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # the end of an interim answer
            return
        response = self._response
        if response is None:
            return
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive() and not self._delimited_by_close
        if self._inflate is not None:
            rest = self._inflate.flush()
            if rest:
                response.feed(rest)
            if not self._inflate.eof:
                response.end(UpstreamProtocolError("The upstream's compressed response was cut off."))
                return
        response.end()

    def _fail(self, error: UpstreamError) -> None:
        head, self._head = self._head, None
        if head is not None and not head.done():
            head.set_exception(error)
        elif self._response is not None:
            self._response.end(error)
        self.close()
