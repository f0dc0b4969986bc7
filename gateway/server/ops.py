"""The operator's endpoints: /health, /health/upstreams, /ready and /metrics.

They never depend on an upstream: a load balancer's probe must not take the
gateway out of rotation because a provider is down.
"""

from __future__ import annotations

from aiohttp import web

from .. import __version__
from .errors import dumps
from .keys import GATEWAY


async def health(request: web.Request) -> web.Response:
    """`{"status": "ok", "version": ...}` while the process serves."""
    return web.json_response({"status": "ok", "version": __version__}, dumps=dumps)


async def upstream_health(request: web.Request) -> web.Response:
    """`{"targets": [{"route", "provider", "model", "state", "failures", "cooling_seconds_left"}]}`."""
    gateway = request.app[GATEWAY]
    targets = gateway.board.snapshot(gateway.state.table.routes)
    return web.json_response({"targets": targets}, dumps=dumps)


async def ready(request: web.Request) -> web.Response:
    """200 while taking traffic, 503 while draining for shutdown."""
    if request.app[GATEWAY].draining:
        return web.json_response({"status": "draining"}, status=503, dumps=dumps)
    return web.json_response({"status": "ready"}, dumps=dumps)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus' text exposition format; with several workers, summed over all of them."""
    body, content_type = request.app[GATEWAY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/health/upstreams", upstream_health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
