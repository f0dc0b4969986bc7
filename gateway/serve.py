"""Serving an app until SIGTERM or SIGINT, then draining; SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import resource
import signal

from aiohttp import web

from .app import create_app
from .config import GatewayConfig, ServerConfig
from .errors import cannot_listen
from .observability.logs import AccessLog
from .runtime import ConfigLoader
from .server.connections import ConnectionLimits, GatewayRunner
from .server.keys import GATEWAY
from .store import SharedTable
from .stream.tokens import Tokenizers

log = logging.getLogger("gateway")

FILES_KEPT_FREE = 128  # descriptors left for upstream connections, logs and the config file


def open_files_allowed() -> int:
    """The process's limit on open files, raised to its hard limit first (as servers do at start)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


YOUNG_OBJECTS_PER_COLLECTION = 10_000  # Python's default, 700, collects a few times per request


def tune_collector() -> None:
    """Set the cyclic garbage collector for serving, once the app is up.

    What exists by then (config, tokenizers, the ledger's engine, the libraries) lives until
    exit: frozen, the collector's full passes no longer scan it again and again. Fewer, larger
    young collections do the same work for what requests leave behind. Together they took
    about a fifth of the CPU per request off in bench/ (README, Performance).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_OBJECTS_PER_COLLECTION, *gc.get_threshold()[1:])


async def start(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 30.0,
    reuse_port: bool = False,
    server: ServerConfig | None = None,
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner and the port actually bound (port 0 picks a free one).

    `server`'s keep-alive, request-head and connection limits apply (the defaults without it).
    """
    server = server or ServerConfig()
    limits = ConnectionLimits(
        # each client connection may need one to an upstream too
        max_connections=min(server.max_connections, (open_files_allowed() - FILES_KEPT_FREE) // 2),
        request_head_timeout=server.request_head_timeout,
    )
    runner = GatewayRunner(
        app,
        limits=limits,
        handler_cancellation=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=server.keepalive_timeout,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()  # the app's client session and ledger, opened at its start-up
        raise cannot_listen(host, port, exc) from exc
    return runner, runner.addresses[0][1]


async def serve(
    config: GatewayConfig,
    *,
    loader: ConfigLoader | None = None,
    tokenizers: Tokenizers | None = None,
    reuse_port: bool = False,
    access_log: AccessLog | None = None,
    shared: SharedTable | None = None,
    worker: int = 0,
) -> None:
    """Run until cancelled (SIGINT/SIGTERM): then /ready says 503 (for `server.drain_delay`
    seconds the gateway still accepts and serves, so load balancers see it), the listener
    closes, and requests in flight get `server.shutdown_timeout` seconds to finish.
    `shared` and `worker`: the rate limits' table of the workers, and this worker's number."""
    app = create_app(config, tokenizers=tokenizers, loader=loader, access_log=access_log, shared=shared, worker=worker)
    runner, port = await start(
        app,
        config.server.host,
        config.server.port,
        shutdown_timeout=config.server.shutdown_timeout,
        reuse_port=reuse_port,
        server=config.server,
    )
    tune_collector()
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
        try:
            await runner.cleanup()
        finally:  # a second signal may cut the drain short: the rows of what was answered are written all the same
            await end_the_rest()
            await gateway.ledger.aclose()


async def end_the_rest(timeout: float = 5.0) -> None:
    """Cancel the tasks still running (requests a second signal cut short) and let them end,
    for `timeout` seconds at most: each request records its row as it ends."""
    current = asyncio.current_task()
    rest = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in rest:
        task.cancel()
    if rest:
        await asyncio.wait(rest, timeout=timeout)
