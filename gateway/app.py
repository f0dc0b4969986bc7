"""create_app(config): routes, middlewares, typed state, resources opened and closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from . import handlers
from .config import ConfigError, GatewayConfig
from .health import HealthBoard, TargetHealth, TargetKey, target_key
from .keys import GATEWAY
from .logs import AccessLog
from .metrics import Metrics
from .middlewares import cors_middleware, request_and_errors, response_headers
from .state import GatewayState, encodings_needed
from .tokens import Tokenizers

log = logging.getLogger("gateway")

ConfigLoader = Callable[[], GatewayConfig]


class Gateway:
    """Holds the current `GatewayState` (a reload swaps it whole) and what outlives a reload."""

    def __init__(
        self,
        config: GatewayConfig,
        tokenizers: Tokenizers,
        metrics: Metrics,
        *,
        loader: ConfigLoader | None,
        access_log: AccessLog | None = None,
    ) -> None:
        self.metrics = metrics
        self.access_log = access_log or AccessLog()
        self.board = HealthBoard(on_change=self._cooling_changed)
        self.state = GatewayState.build(config, tokenizers)
        self._publish_targets()
        self.loader = loader
        self.draining = False
        self._retiring: set[asyncio.Task[None]] = set()

    def _publish_targets(self) -> None:
        """A cooling gauge for every target of the table, 0 while in rotation."""
        for route in self.state.table.routes:
            for target in route.targets:
                self._cooling_changed(target_key(route, target), self.board.health(route, target))

    def _cooling_changed(self, key: TargetKey, health: TargetHealth) -> None:
        route, provider, model = key
        self.metrics.target_cooling.labels(route, provider, model or "*").set(1 if health.cooling_until else 0)

    async def reload(self) -> bool:
        """Load the config again; an invalid one is refused, logged, and the old table stays."""
        if self.loader is None:
            return False
        try:
            config = self.loader()
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem, extra={"fields": {"problem": problem}})
            return False
        old = self.state
        loop = asyncio.get_running_loop()
        tokenizers = await loop.run_in_executor(None, old.tokenizers.extended, encodings_needed(config))
        if config.server != old.config.server:
            log.warning("server settings changed: they take effect at the next restart")
        self.state = GatewayState.build(config, tokenizers)
        for route, provider, model in self.board.keep_only(config.routes):
            with contextlib.suppress(KeyError):  # a target whose series was never written
                self.metrics.target_cooling.remove(route, provider, model or "*")
        self._publish_targets()
        task = asyncio.create_task(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        log.info(
            "config reloaded from %s: %d routes",
            config.source,
            len(config.routes),
            extra={"fields": {"config": config.source}},
        )
        return True

    async def _retire(self, old: GatewayState) -> None:
        await old.users.idle()  # requests in flight finish on the old table
        await old.aclose()

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        await self.state.aclose()


def create_app(
    config: GatewayConfig,
    *,
    tokenizers: Tokenizers | None = None,
    metrics: Metrics | None = None,
    loader: ConfigLoader | None = None,
    access_log: AccessLog | None = None,
) -> web.Application:
    if tokenizers is None:
        tokenizers = Tokenizers.load(encodings_needed(config))
    metrics = metrics or Metrics()
    origins = config.server.cors_origins
    middlewares = [request_and_errors()] + ([cors_middleware(origins)] if origins else [])
    app = web.Application(client_max_size=config.server.max_body_bytes, middlewares=middlewares)
    app.on_response_prepare.append(response_headers(origins))

    async def gateway_resources(app: web.Application) -> AsyncIterator[None]:
        gateway = app[GATEWAY] = Gateway(config, tokenizers, metrics, loader=loader, access_log=access_log)
        watcher = asyncio.create_task(watch_config(gateway)) if loader and config.server.watch_config else None
        yield
        if watcher is not None:
            watcher.cancel()
        await gateway.aclose()

    app.cleanup_ctx.append(gateway_resources)
    for prefix in ("/v1", "/api/v1"):
        app.router.add_post(f"{prefix}/chat/completions", handlers.chat_completions)
        app.router.add_get(f"{prefix}/models", handlers.list_models)
        app.router.add_get(f"{prefix}/models/{{model}}", handlers.get_model)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/health/upstreams", handlers.upstream_health)
    app.router.add_get("/ready", handlers.ready)
    app.router.add_get("/metrics", handlers.metrics)
    return app


async def watch_config(gateway: Gateway, *, interval: float = 1.0) -> None:
    """Reload when the config file changes (server.watch_config)."""
    from pathlib import Path

    path = Path(gateway.state.config.source)

    def stamp() -> tuple[float, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime, stat.st_size

    last = stamp()
    while True:
        await asyncio.sleep(interval)
        current = stamp()
        if current is not None and current != last:
            last = current
            await gateway.reload()


async def start(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 30.0, reuse_port: bool = False
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port actually bound (port 0 picks a free one)."""
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
    await site.start()
    return runner, runner.addresses[0][1]


async def serve(
    config: GatewayConfig,
    *,
    loader: ConfigLoader | None = None,
    tokenizers: Tokenizers | None = None,
    reuse_port: bool = False,
    access_log: AccessLog | None = None,
) -> None:
    """Run until cancelled (SIGINT/SIGTERM): then /ready says 503 (for `server.drain_delay`
    seconds the gateway still accepts and serves, so load balancers see it), the listener
    closes, and requests in flight get `server.shutdown_timeout` seconds to finish."""
    import signal

    app = create_app(config, tokenizers=tokenizers, loader=loader, access_log=access_log)
    runner, port = await start(
        app,
        config.server.host,
        config.server.port,
        shutdown_timeout=config.server.shutdown_timeout,
        reuse_port=reuse_port,
    )
    address = f"http://{config.server.host}:{port}"
    log.info("listening on %s", address, extra={"fields": {"address": address}})
    gateway = app[GATEWAY]
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def on_hangup() -> None:
        task = loop.create_task(gateway.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    try:
        await asyncio.Event().wait()
    finally:
        gateway.draining = True
        delay = gateway.state.config.server.drain_delay
        if delay:
            log.info("draining: /ready answers 503; still accepting for %g s", delay)
            with contextlib.suppress(asyncio.CancelledError):  # a second signal: stop accepting now
                await asyncio.sleep(delay)
        log.info("draining: finishing requests in flight, then stopping")
        await runner.cleanup()
