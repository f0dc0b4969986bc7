"""The record of a request as the server received it: the one place that reads what every
record starts from (its id, method, path and client) off aiohttp's request."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..observability.record import RequestRecord
from .keys import REQUEST_ID


def request_record(request: web.Request, started: float, **fields: Any) -> RequestRecord:
    """`request`'s record, begun at `started` (time.perf_counter()), with `fields` of
    RequestRecord set (at, key, status...)."""
    return RequestRecord(
        request_id=request[REQUEST_ID],
        method=request.method,
        path=request.path,
        client=request.remote,
        started=started,
        **fields,
    )
