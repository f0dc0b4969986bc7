"""Request ids, errors in OpenAI's shape, and CORS."""

from __future__ import annotations

import itertools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from .errors import GatewayError
from .keys import GATEWAY, LOGGED, REQUEST_ID
from .observe import RequestRecord, log_other

log = logging.getLogger("gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,256}")  # printable ASCII: safe in headers and logs
EXPOSED_HEADERS = "x-request-id, x-gateway-max-tokens, x-gateway-provider, x-gateway-upstream-model, x-gateway-attempts"
STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def request_and_errors() -> Callable[..., Awaitable[web.StreamResponse]]:
    """Give each request its id, and turn every error into OpenAI's error shape."""
    prefix = os.urandom(6).hex()  # differs between processes; a counter within one
    numbers = itertools.count(1)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        client_id = request.headers.get("x-request-id")
        if client_id and CLIENT_REQUEST_ID.fullmatch(client_id):
            request[REQUEST_ID] = client_id
        else:
            request[REQUEST_ID] = f"{prefix}{next(numbers):010x}"
        try:
            response = await handler(request)
        except Exception as exc:
            response = response_for(exc, request)
        gateway = request.app.get(GATEWAY)
        if gateway is not None and not request.get(LOGGED):  # chat completions log their own line
            record = RequestRecord(
                request_id=request[REQUEST_ID],
                method=request.method,
                path=request.path,
                client=request.remote,
                started=started,
                status=response.status,
            )
            log_other(gateway.access_log, record, time.perf_counter())
        return response

    return middleware


def response_for(exc: Exception, request: web.Request) -> web.StreamResponse:
    """The error response for what a handler raised (a redirect is raised on as it is)."""
    if isinstance(exc, GatewayError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error_response(
            GatewayError(message, code=STATUS_CODES.get(exc.status)), status=exc.status, kind="invalid_request_error"
        )
    log.exception("unexpected error while handling %s %s", request.method, request.path, exc_info=exc)
    return error_response(GatewayError("The gateway failed to handle this request.", code="internal_error"))


def error_response(exc: GatewayError, *, status: int | None = None, kind: str | None = None) -> web.Response:
    body = exc.body()
    if kind:
        body["error"]["type"] = kind
    return web.json_response(body, status=status or exc.status, headers=exc.headers or None, dumps=_dumps)


def _dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def cors_middleware(origins: tuple[str, ...]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Answers preflight requests for the allowed origins; `on_response_prepare` adds the rest."""
    allow_any = "*" in origins

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if request.method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            if not (allow_any or origin in origins):
                denied = GatewayError(
                    f"The origin {origin} is not allowed by server.cors_origins.", code="cors_forbidden"
                )
                return error_response(denied, status=403, kind="invalid_request_error")
            headers = {
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers", "*"),
                "Access-Control-Max-Age": "600",
            }
            return web.Response(status=204, headers=headers)
        return await handler(request)

    return cors


def response_headers(origins: tuple[str, ...]) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """The headers every response carries, streams included (set before they start)."""
    allow_any = "*" in origins

    async def on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
        request_id = request.get(REQUEST_ID)
        if request_id:
            response.headers["x-request-id"] = request_id
        origin = request.headers.get("Origin")
        if origin and (allow_any or origin in origins):
            response.headers["Access-Control-Allow-Origin"] = "*" if allow_any else origin
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            if not allow_any:
                response.headers.add("Vary", "Origin")

    return on_response_prepare
