"""One access line for every request whose endpoint writes none (health checks, /metrics, errors).

Model endpoints write their own, richer line when they finish (api.lifecycle) and
say so with the LOGGED key.
"""

from __future__ import annotations

import time

from aiohttp import web

from ..observability.logs import AccessLog
from ..observability.record import log_other
from .keys import LOGGED
from .records import request_record
from .types import Handler, Middleware


def access_log_middleware(access_log: AccessLog) -> Middleware:
    @web.middleware
    async def access_line(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        if not request.get(LOGGED):
            log_other(access_log, request_record(request, started, status=response.status), time.perf_counter())
        return response

    return access_line
