"""Several worker processes on one port (SO_REUSEPORT), watched by a small supervisor.

The supervisor loads what is costly (tiktoken's encodings) before forking, so
that the workers share those pages; it forwards SIGTERM, SIGINT and SIGHUP to
the workers, restarts a worker that dies while the gateway is running, and on
the way out marks dead workers in prometheus-client's multiprocess directory
and removes it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable

log = logging.getLogger("gateway.workers")

CRASH_WINDOW = 5.0  # a worker dying this soon after its start, twice in a row, stops the gateway


def prepare_multiprocess_metrics() -> str:
    """A fresh directory for prometheus-client's multiprocess mode; set before it is imported."""
    path = tempfile.mkdtemp(prefix="gateway-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path


def reserve_port(host: str, port: int) -> tuple[socket.socket, int]:
    """Bind (without listening) to learn the port when it is 0; workers bind it too, with SO_REUSEPORT."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder, holder.getsockname()[1]


def supervise(
    count: int,
    work: Callable[[int], int],
    *,
    metrics_dir: str | None,
    on_death: Callable[[int], object] | None = None,
) -> int:
    """Run `work(slot)` in `count` forked processes until SIGTERM/SIGINT; returns the exit status.

    `slot` is the worker's number, 0 to count - 1; a worker that replaces a dead one gets its slot.
    `on_death(pid)` runs when a worker has died, before another starts in its place (to free
    what it held that the kernel does not)."""
    children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started)
    stopping = False
    quick_deaths = 0

    def spawn(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            status = 1
            try:
                status = work(slot)
            except BaseException:
                log.exception("worker failed")
            finally:
                os._exit(status)
        children[pid] = (slot, time.monotonic())

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        if signum in (signal.SIGTERM, signal.SIGINT):
            stopping = True
        for pid in list(children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if signum == signal.SIGINT else signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    gc.freeze()  # the cyclic GC leaves what exists now alone, so forked workers keep sharing its pages
    for slot in range(count):
        spawn(slot)
    log.info(
        "started %d workers",
        count,
        extra={"fields": {"workers": count, "pids": sorted(children), "metrics_dir": metrics_dir}},
    )
    status = 0
    try:
        while children:
            pid, wait_status = os.wait()
            slot, started = children.pop(pid)
            if metrics_dir:
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
            code = os.waitstatus_to_exitcode(wait_status)
            if stopping:
                status = status or (code if code > 0 else 0)
                continue
            log.error(
                "worker %d exited with %d; starting another", pid, code, extra={"fields": {"pid": pid, "code": code}}
            )
            if on_death is not None:
                on_death(pid)
            quick_deaths = quick_deaths + 1 if time.monotonic() - started < CRASH_WINDOW else 0
            if quick_deaths >= 2:
                log.error("workers keep dying at start; stopping the gateway")
                forward(signal.SIGTERM, None)
                status = 1
                continue
            spawn(slot)
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return status
