"""Every request gets an id: the client's own `x-request-id` when it is safe to echo, else one of ours.

The id goes back on the response (server.cors adds the header to every response),
into the access log, and upstream with the request.
"""

from __future__ import annotations

import itertools
import os
import re

from aiohttp import web

from .keys import REQUEST_ID
from .types import Handler, Middleware

CLIENT_REQUEST_ID = re.compile(r"[\x20-\x7e]{1,256}")  # printable ASCII: safe in headers and logs


def request_id_middleware() -> Middleware:
    """Ours are 12 hex digits that differ between processes, then a counter of 10 hex digits."""
    prefix = os.urandom(6).hex()
    numbers = itertools.count(1)

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        client_id = request.headers.get("x-request-id")
        if client_id and CLIENT_REQUEST_ID.fullmatch(client_id):
            request[REQUEST_ID] = client_id
        else:
            request[REQUEST_ID] = f"{prefix}{next(numbers):010x}"
        return await handler(request)

    return request_id
