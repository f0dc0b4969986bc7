"""Every error a client sees has OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

Only the gateway's own errors (errors.GatewayError) say what went wrong; anything
else is logged with its traceback and answered as a 500 with no detail.
"""

from __future__ import annotations

import logging

import orjson
from aiohttp import web

from ..errors import GatewayError
from .types import Handler, Middleware

log = logging.getLogger("gateway")

STATUS_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def errors_middleware() -> Middleware:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:  # every error becomes OpenAI's error shape
            return response_for(exc, request)

    return errors


def response_for(exc: Exception, request: web.Request) -> web.StreamResponse:
    """The error response for what a handler raised (a redirect is raised on as it is)."""
    if isinstance(exc, GatewayError):
        return error_response(exc)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc
        if isinstance(exc, web.HTTPNotFound):
            message = f"No endpoint at {request.path}. {endpoints_served(request.app)}"
        elif isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} is not allowed at {request.path}; use {allowed}."
        else:
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        error = GatewayError(message, code=STATUS_CODES.get(exc.status))
        response = error_response(error, status=exc.status, kind="invalid_request_error")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    log.exception("unexpected error while handling %s %s", request.method, request.path, exc_info=exc)
    return error_response(GatewayError("The gateway failed to handle this request.", code="internal_error"))


def endpoints_served(app: web.Application) -> str:
    """`The gateway serves: POST /v1/chat/completions, GET /v1/models, ...` from the router."""
    served = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD" and path:
            served.append(f"{route.method} {path}")
    return "The gateway serves: " + ", ".join(dict.fromkeys(served)) + "."


def error_response(exc: GatewayError, *, status: int | None = None, kind: str | None = None) -> web.Response:
    """`exc` as a JSON response with its status and headers; `status` and `kind` (the error's
    `type`) override the exception's own."""
    body = exc.body()
    if kind:
        body["error"]["type"] = kind
    return web.json_response(body, status=status or exc.status, headers=exc.headers or None, dumps=dumps)


def dumps(value: object) -> str:
    """JSON text for aiohttp's json_response, by orjson."""
    return orjson.dumps(value).decode()
