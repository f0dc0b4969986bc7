"""create_app(config): routes, middlewares, typed state, resources opened and closed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from . import handlers
from .config import GatewayConfig
from .keys import GATEWAY
from .metrics import Metrics
from .middlewares import cors_middleware, request_and_errors, response_headers
from .state import GatewayState, encodings_needed
from .tokens import Tokenizers

log = logging.getLogger("gateway")


class Gateway:
    """Holds the current `GatewayState`; a reload swaps it whole."""

    def __init__(self, config: GatewayConfig, tokenizers: Tokenizers, metrics: Metrics) -> None:
        self.tokenizers = tokenizers
        self.metrics = metrics
        self.state = GatewayState.build(config, tokenizers)

    async def aclose(self) -> None:
        await self.state.aclose()


def create_app(
    config: GatewayConfig, *, tokenizers: Tokenizers | None = None, metrics: Metrics | None = None
) -> web.Application:
    if tokenizers is None:
        tokenizers = Tokenizers.load(encodings_needed(config))
    metrics = metrics or Metrics()
    origins = config.server.cors_origins
    middlewares = [request_and_errors] + ([cors_middleware(origins)] if origins else [])
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=middlewares)
    app.on_response_prepare.append(response_headers(origins))

    async def gateway_resources(app: web.Application) -> AsyncIterator[None]:
        app[GATEWAY] = Gateway(config, tokenizers, metrics)
        yield
        await app[GATEWAY].aclose()

    app.cleanup_ctx.append(gateway_resources)
    for prefix in ("/v1", "/api/v1"):
        app.router.add_post(f"{prefix}/chat/completions", handlers.chat_completions)
        app.router.add_get(f"{prefix}/models", handlers.list_models)
        app.router.add_get(f"{prefix}/models/{{model}}", handlers.get_model)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    return app


async def start(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port actually bound (port 0 picks a free one)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner, runner.addresses[0][1]


async def serve(config: GatewayConfig, *, tokenizers: Tokenizers | None = None) -> None:
    """Run until cancelled (SIGINT/SIGTERM)."""
    app = create_app(config, tokenizers=tokenizers)
    runner, port = await start(app, config.server.host, config.server.port)
    address = f"http://{config.server.host}:{port}"
    log.info("listening on %s", address, extra={"fields": {"address": address}})
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
