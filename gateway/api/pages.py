"""Pages and the files they load, served from package data with the headers every one carries.

A page gets a Content-Security-Policy that keeps it to the gateway's own origin; nothing is
loaded from another host, so the pages work on a machine with no internet.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..server.types import Handler

HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
SAME_ORIGIN = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def html_page(path: Path, *, csp: str) -> Handler:
    """The HTML file at `path` (read once, here), under the policy `csp`."""
    body = path.read_bytes()
    headers = {**HEADERS, "Content-Security-Policy": csp}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html", charset="utf-8", headers=headers)

    return handle


def static_file(path: Path) -> Handler:
    """A file as it is on disk (aiohttp's FileResponse: Last-Modified and ETag, so a browser
    revalidates it cheaply)."""

    async def handle(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path, headers=HEADERS)

    return handle
