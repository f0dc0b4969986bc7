"""CORS for browser apps (server.cors_origins): preflights answered, and the headers every response carries.

`response_headers()` runs as aiohttp's on_response_prepare signal, so streams get
their headers too; it also puts the request's id on every response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ..errors import GatewayError
from ..policy.rules import HEADERS as RATELIMIT_HEADERS
from .errors import error_response
from .keys import REQUEST_ID
from .types import Handler, Middleware

# what a browser's script may read: the SDKs' retry advice, the rate limits, and the gateway's own
EXPOSED_HEADERS = ", ".join(
    (
        "x-request-id",
        "x-gateway-max-tokens",
        "x-gateway-provider",
        "x-gateway-upstream-model",
        "x-gateway-attempts",
        "x-gateway-budget-remaining",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        *(name for names in RATELIMIT_HEADERS.values() for name in names),
    )
)


def cors_middleware(origins: tuple[str, ...]) -> Middleware:
    """Answers preflight requests for the allowed origins ("*": any) with 204, others with 403."""
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
