"""gateway [--config PATH] [--host H] [--port P] [--check]; gateway keys|usage|db ... (gateway.commands)"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import dataclasses
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable

from . import __version__
from .commands import SUBCOMMANDS
from .config import ConfigError, GatewayConfig, load_config
from .config.describe import describe
from .errors import CannotListen, cannot_listen
from .observability.logs import AccessLog, configure_logging
from .store import SharedTable
from .stream.tokens import Tokenizers, encodings_for
from .workers import prepare_multiprocess_metrics, reserve_port, supervise


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="An OpenAI-compatible LLM gateway. Without a command, it serves.",
        epilog="commands (each has its own --help):\n"
        "  gateway keys {create,list,revoke}   client keys in the ledger's database\n"
        "  gateway usage                       requests, tokens and spend, from the ledger\n"
        "  gateway db migrate                  bring the ledger's schema up to date",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="gateway.yaml to use (default: $GATEWAY_CONFIG, else ./gateway.yaml, else built in)"
    )
    parser.add_argument("--host", help="address to listen on (overrides server.host and $HOST)")
    parser.add_argument("--port", type=int, help="port to listen on (overrides server.port and $PORT)")
    parser.add_argument(
        "--workers", help="worker processes sharing the port: a number or auto (overrides server.workers)"
    )
    parser.add_argument("--check", action="store_true", help="validate the config, print the routing table, exit")
    parser.add_argument(
        "--log-format",
        choices=("json", "text"),
        default="json",
        help="one JSON object a line (default), or readable text for a terminal",
    )
    parser.add_argument("--version", action="version", version=f"gateway {__version__}")
    return parser.parse_args(argv)


def parse_workers(value: str | None) -> int | str | None:
    if value is None or value == "auto":
        return value
    return int(value) if value.isdigit() else value  # anything else is reported by the config check


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words and words[0] in SUBCOMMANDS:
        from .commands.main import main as run_command  # the ledger's modules import prometheus_client

        return run_command(words)
    args = parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        print(f"$LOG_LEVEL: unknown level {level!r} (use DEBUG, INFO, WARNING, ERROR or CRITICAL)", file=sys.stderr)
        return 2
    configure_logging(level, args.log_format)
    overrides = {"server.host": args.host, "server.port": args.port, "server.workers": parse_workers(args.workers)}
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    if args.check:
        print(describe(config))
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    access_log = AccessLog(sys.stderr, args.log_format)
    return run(config, loader=functools.partial(load_config, args.config, overrides=overrides), access_log=access_log)


def run(config: GatewayConfig, *, loader: Callable[[], GatewayConfig], access_log: AccessLog) -> int:
    log = logging.getLogger("gateway")
    log.info("config %s: %d routes", config.source, len(config.routes), extra={"fields": {"config": config.source}})
    for warning in config.warnings:  # a reload logs those of the new config (runtime.Gateway.reload)
        log.warning("%s", warning, extra={"fields": {"problem": warning}})
    for route in config.routes:
        log.info(
            "route %s -> %s",
            route.model,
            route.provider,
            extra={
                "fields": {"route": route.model, "provider": route.provider, "upstream_model": route.upstream_model}
            },
        )
    return_freed_memory()
    workers = config.server.workers
    metrics_dir = prepare_multiprocess_metrics() if workers > 1 else None  # before prometheus_client is imported
    tokenizers = Tokenizers.load(
        encodings_for(config.upstream_models)
    )  # before forking, so that workers share these pages
    log.info("tiktoken encodings loaded: %s", ", ".join(tokenizers.loaded) or "none")
    from . import serve  # noqa: F401 - the server's modules (price table, SQLAlchemy) before forking, shared too

    if workers == 1:
        return serve_until_stopped(config, loader, tokenizers, access_log, reuse_port=False)
    try:
        holder, port = reserve_port(config.server.host, config.server.port)
    except OSError as exc:
        print(cannot_listen(config.server.host, config.server.port, exc), file=sys.stderr)
        return 1
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, port=port))
    shared = SharedTable.create(workers)  # the rate limits' counts, for the whole process group
    try:
        return supervise(
            workers,
            lambda worker: serve_until_stopped(
                config, loader, tokenizers, access_log, reuse_port=True, shared=shared, worker=worker
            ),
            metrics_dir=metrics_dir,
            on_death=shared.recover,  # a worker that died holding the table's lock frees it
        )
    finally:
        holder.close()
        shared.remove()


M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024


def return_freed_memory() -> None:
    """Have glibc's malloc give blocks over 128 KiB their own mappings, always, so that freeing
    one returns it to the system. By default the threshold rises with the largest block freed,
    and a burst of large buffers (clients that stopped reading, long answers) then stays in the
    heap after it is gone. Elsewhere than glibc this does nothing."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        pass


def serve_until_stopped(
    config: GatewayConfig,
    loader: Callable[[], GatewayConfig],
    tokenizers: Tokenizers,
    access_log: AccessLog,
    *,
    reuse_port: bool,
    shared: SharedTable | None = None,
    worker: int = 0,
) -> int:
    """Serve until SIGTERM or SIGINT, then drain; uvloop when it is installed. `shared` and
    `worker`: the rate limits' table of the workers, and this one's number in it."""
    from .serve import serve

    async def main_task() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        await serve(
            config,
            loader=loader,
            tokenizers=tokenizers,
            reuse_port=reuse_port,
            access_log=access_log,
            shared=shared,
            worker=worker,
        )

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main_task())
        else:
            uvloop.run(main_task())
    except asyncio.CancelledError:
        pass
    except CannotListen as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        access_log.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
