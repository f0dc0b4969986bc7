"""Requests that aiohttp's HTTP parser refuses (a bad request line, a header over the limit,
a bad chunk size, Content-Length with Transfer-Encoding) are answered in OpenAI's error
shape, like every other error, instead of aiohttp's plain text.

aiohttp answers those from its connection handler (`RequestHandler.handle_error`) before
any middleware runs; the classes below give that one method our answer. aiohttp has no
public hook for it: the runner's server and its handlers are adopted by class (they add
no state), which is why this module exists apart.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.web_request import BaseRequest

log = logging.getLogger("gateway")

STATUS_CODES = {400: "invalid_http_request", 413: "payload_too_large", 431: "headers_too_large"}


def error_body(status: int) -> bytes:
    """The JSON error for a request the parser refused, or a failure before any handler ran."""
    if status >= 500:
        message, kind, code = "The gateway failed to handle this request.", "server_error", "internal_error"
    else:
        message = "The request is not valid HTTP/1.1 (its request line, headers or framing)."
        kind, code = "invalid_request_error", STATUS_CODES.get(status, "invalid_http_request")
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


class JSONErrorServer(web.Server):
    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        handler.__class__ = JSONErrorRequestHandler  # same layout: only handle_error differs
        return handler


class GatewayRunner(web.AppRunner):
    """aiohttp's AppRunner whose server answers parser errors in OpenAI's error shape."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JSONErrorServer  # same layout: only the handler's class differs
        return server
