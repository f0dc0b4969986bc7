"""Below the request: connections counted and capped, request heads timed, and requests that
aiohttp's HTTP parser refuses answered in OpenAI's error shape.

- `server.max_connections`: a connection beyond it is answered at once with a 503 in
  OpenAI's shape and closed, rather than left to wait or to fail for want of file descriptors.
- `server.request_head_timeout`: a connection must deliver a complete request head within
  that many seconds of opening (a slowloris client, sending its head a byte at a time, is
  hung up on); between requests, `server.keepalive_timeout` bounds an idle connection.
- A request the parser refuses (a bad request line, a header over the limit, a bad chunk
  size, Content-Length with Transfer-Encoding) gets a JSON error, not aiohttp's plain text.

aiohttp has no public hooks for these: its server and connection handlers are adopted by
class (the subclasses add no state and override only public methods), and its request
factory (a public attribute) is wrapped to learn when a head is complete.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

log = logging.getLogger("gateway")

STATUS_CODES = {400: "invalid_http_request", 413: "payload_too_large"}


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_connections: int  # open at once; beyond: 503
    request_head_timeout: float  # seconds from a connection's start to its first complete request head


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """The JSON error for a request the parser refused, or a failure before any handler ran."""
    if status >= 500:
        kind = "server_error"
        message = message or "The gateway failed to handle this request."
        code = code or "internal_error"
    else:
        kind = "invalid_request_error"
        message = message or "The request is not valid HTTP/1.1 (its request line, headers or framing)."
        code = code or STATUS_CODES.get(status, "invalid_http_request")
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})


class JSONErrorRequestHandler(web.RequestHandler):
    __slots__ = ()

    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """As aiohttp's, with the body of the gateway's errors. Neither the answer nor the log
        line echoes the request's bytes (a refused header may hold a key): the log names the
        kind of error only, except for a failure of the gateway's own, logged with its traceback."""
        if request.writer.output_size > 0:  # a response has begun: nothing more can be said
            raise ConnectionError("a response was already under way")
        if status >= 500:
            self.log_exception("Error handling request from %s", request.remote, exc_info=exc)
        else:
            log.info(
                "refused a request from %s that is not valid HTTP (%s)",
                request.remote,
                type(exc).__name__ if exc is not None else status,
                extra={"fields": {"status": status, "client": request.remote}},
            )
        response = web.Response(status=status, body=error_body(status), content_type="application/json")
        response.force_close()
        return response


TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
)


class GatewayServer(web.Server):
    """aiohttp's Server, counting connections against the cap and timing their first head.

    Its state (`limits`, `heads_due`) is set by GatewayRunner when it adopts the server.
    """

    limits: ConnectionLimits
    heads_due: dict[web.RequestHandler, asyncio.TimerHandle]

    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler.__class__ = JSONErrorRequestHandler  # same layout: only handle_error differs
        return handler

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self.connections) > self.limits.max_connections:
            message = f"The gateway has {self.limits.max_connections} connections open (server.max_connections)."
            body = error_body(503, message, "too_many_connections")
            transport.write(TOO_MANY % (len(body), body))
            transport.close()
            return
        loop = asyncio.get_running_loop()
        self.heads_due[handler] = loop.call_later(self.limits.request_head_timeout, too_slow, handler, transport)

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        timer = self.heads_due.pop(handler, None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(handler, exc)

    def head_received(self, handler: web.RequestHandler) -> None:
        timer = self.heads_due.pop(handler, None)
        if timer is not None:
            timer.cancel()


def too_slow(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
    """A connection that has not sent a whole request head in time: closed without an answer
    (it has not finished asking for one)."""
    log.info("closed a connection that sent no complete request head in time", extra={"fields": {}})
    transport.close()


class GatewayRunner(web.AppRunner):
    """aiohttp's AppRunner with a GatewayServer under the given connection limits."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits, **options: Any) -> None:
        super().__init__(app, **options)
        self.limits = limits

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GatewayServer  # same layout: connection hooks and the handler's class differ
        assert isinstance(server, GatewayServer)
        server.limits = self.limits
        server.heads_due = {}
        server.request_factory = heads_reported(server, server.request_factory)
        return server


def heads_reported(server: GatewayServer, factory: Callable[..., BaseRequest]) -> Callable[..., BaseRequest]:
    """aiohttp's request factory, which it calls once a request's head is whole, telling the server."""

    def request_factory(*args: Any, **kwargs: Any) -> BaseRequest:
        request = factory(*args, **kwargs)
        server.head_received(request.protocol)
        return request

    return request_factory
