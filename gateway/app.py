"""create_app(config): the aiohttp application, its middlewares and endpoints, and the
resources it owns (opened and closed through `cleanup_ctx`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import api
from .api import admin
from .config import GatewayConfig
from .observability.logs import AccessLog
from .observability.metrics import Metrics
from .runtime import ConfigLoader, Gateway, watch_config
from .server import ops
from .server.access_log import access_log_middleware
from .server.auth import auth_middleware
from .server.cors import cors_middleware, response_headers
from .server.errors import errors_middleware
from .server.keys import GATEWAY
from .server.request_id import request_id_middleware
from .server.types import Middleware
from .store import SharedTable
from .stream.tokens import Tokenizers, encodings_for


def create_app(
    config: GatewayConfig,
    *,
    tokenizers: Tokenizers | None = None,
    metrics: Metrics | None = None,
    loader: ConfigLoader | None = None,
    access_log: AccessLog | None = None,
    clock: Callable[[], float] | None = None,
    rng: random.Random | None = None,
    wall: Callable[[], float] = time.time,
    shared: SharedTable | None = None,
    worker: int = 0,
) -> web.Application:
    """The gateway on `config`.

    `tokenizers`: loaded encodings (default: load what the routes need); `loader`: reads
    the config again on reload (None: reload is refused); `clock` (monotonic seconds;
    None: the real clocks) drives cooldowns and rate limit windows, `rng` the weighted
    choice of targets; `wall` (seconds since the epoch) the ledger's times and budget
    periods; `shared` is the rate limits' table of a group of workers, `worker` this one's
    number in it (runtime.Gateway).
    """
    if tokenizers is None:
        tokenizers = Tokenizers.load(encodings_for(config.upstream_models))
    metrics = metrics or Metrics()
    access_log = access_log or AccessLog()
    origins = config.server.cors_origins
    middlewares: list[Middleware] = [request_id_middleware(), access_log_middleware(access_log), errors_middleware()]
    if origins:
        middlewares.append(cors_middleware(origins))
    middlewares.append(auth_middleware())  # after CORS: a browser's preflight carries no key
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=middlewares)
    app.on_response_prepare.append(response_headers(origins))

    async def gateway_resources(app: web.Application) -> AsyncIterator[None]:
        gateway = Gateway(
            config,
            tokenizers,
            metrics,
            loader=loader,
            access_log=access_log,
            clock=clock,
            rng=rng,
            wall=wall,
            shared=shared,
            worker=worker,
        )
        app[GATEWAY] = gateway
        await gateway.start()
        watcher = asyncio.create_task(watch_config(gateway)) if loader and config.server.watch_config else None
        yield
        if watcher is not None:
            watcher.cancel()
        await gateway.aclose()

    app.cleanup_ctx.append(gateway_resources)
    api.add_routes(app)
    admin.add_routes(app)
    ops.add_routes(app)
    return app
