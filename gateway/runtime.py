"""What outlives a request: the current snapshot of config, routes and providers, and what outlives a reload.

A request takes the current `Snapshot` once and keeps it to its end, so a reload,
which swaps in a new snapshot whole, never changes a request in flight. The
upstream client, the health board, the metrics and the access log belong to the
`Gateway` and survive reloads: warm connections stay warm, cooldowns are kept for
targets that are still there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .config import ClientKey, ConfigError, GatewayConfig
from .config.secrets import Redactor
from .ledger.rows import row_from
from .ledger.service import Ledger
from .observability.logs import AccessLog
from .observability.metrics import Metrics
from .observability.record import RequestRecord, council_cost, finish
from .policy import RateLimiter
from .policy.prices import PriceBook
from .providers import Provider, create_provider
from .routing.health import HealthBoard, TargetHealth, TargetKey, target_key
from .routing.table import RoutingTable
from .store import LocalStore, SharedTable, Store
from .stream.tokens import Tokenizers, encodings_for
from .upstream.base import Transport
from .upstream.client import UpstreamClient
from .upstream.mock import MockTransport

log = logging.getLogger("gateway")

ConfigLoader = Callable[[], GatewayConfig]
LEASE_SLACK = 60.0  # seconds a request's in-flight slot in Redis outlives its route's timeout (a replica that dies)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One immutable view of the config: its routing table, each provider's adapter and transport."""

    config: GatewayConfig
    table: RoutingTable
    providers: Mapping[str, Provider]
    transports: Mapping[str, Transport]
    tokenizers: Tokenizers
    redactor: Redactor  # every secret of the config and of the client's proxies
    keys: Mapping[bytes, ClientKey]  # the client keys by the SHA-256 digest of their secret; empty: none asked for
    loaded_at: int = field(default_factory=lambda: int(time.time()))  # seconds since the epoch

    @classmethod
    def build(cls, config: GatewayConfig, tokenizers: Tokenizers, client: UpstreamClient) -> Snapshot:
        """Adapters for every provider, sharing one redactor of every secret; the mock's
        in-process upstream, the shared client for the rest."""
        redactor = Redactor.for_config(config, client.proxy_urls)
        providers = {name: create_provider(provider, redactor=redactor) for name, provider in config.providers.items()}
        transports: dict[str, Transport] = {
            name: MockTransport(provider, tokenizers) if provider.kind == "mock" else client.for_provider(provider)
            for name, provider in config.providers.items()
        }
        keys = {key.digest: key for key in config.auth.keys}
        return cls(config, RoutingTable(config.routes), providers, transports, tokenizers, redactor, keys)


class Gateway:
    """The current `Snapshot` (a reload swaps it whole) and what outlives a reload.

    `clock` (seconds, monotonic) and `rng` drive cooldowns, the rate limits' windows and
    the choice of targets, and `wall` (seconds since the epoch) the ledger's times and budget
    periods, so tests can move time and fix choices instead of sleeping; without a clock, the
    rate limits in Redis run on Redis' own. `shared` is the table of rate limits the workers
    share (None: one process), `worker` this one's number in it.
    """

    def __init__(
        self,
        config: GatewayConfig,
        tokenizers: Tokenizers,
        metrics: Metrics,
        *,
        loader: ConfigLoader | None,
        access_log: AccessLog | None = None,
        clock: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
        shared: SharedTable | None = None,
        worker: int = 0,
    ) -> None:
        self.metrics = metrics
        self.wall = wall
        self.access_log = access_log or AccessLog()
        self.board = HealthBoard(clock=clock or time.monotonic, rng=rng, on_change=self._cooling_changed)
        store = open_store(config, clock=clock, shared=shared, worker=worker)
        self.limiter = RateLimiter(store, on_error=config.store.on_error, metrics=metrics)
        self.client = UpstreamClient(config.upstream)
        self.state = Snapshot.build(config, tokenizers, self.client)
        self._publish_targets()
        self.loader = loader
        self.draining = False
        self.prices = PriceBook()
        self.ledger = Ledger(config.ledger, metrics, clock=wall)

    async def start(self) -> None:
        """Open the ledger (never fails for its database: see ledger.service)."""
        await self.ledger.start()

    def settle(
        self,
        record: RequestRecord,
        finished: float,
        *,
        conversation: tuple[object, object] | None = None,
    ) -> None:
        """A request has ended (`finished`: time.perf_counter()): count it, log its line, and
        queue its ledger row (with its messages and answer when they are kept); a quorum
        request's costs what its calls cost, each of which has a row of its own."""
        if record.calls is not None:
            record.cost_usd = council_cost(record.calls)
        finish(self.metrics, self.access_log, record, finished)
        self.ledger.record(row_from(record, finished, held=record.held, conversation=conversation))
        for call in record.calls or ():
            self.ledger.record(row_from(call.record, finished, member=call.member, held=call.record.held))

    def _publish_targets(self) -> None:
        """A cooling gauge for every target of the table, 0 while in rotation."""
        for route in self.state.table.routes:
            for target in route.targets:
                self._cooling_changed(target_key(route, target), self.board.health(route, target))

    def _cooling_changed(self, key: TargetKey, health: TargetHealth) -> None:
        route, provider, model = key
        self.metrics.target_cooling.labels(route, provider, model or "*").set(1 if health.cooling_until else 0)

    async def reload(self) -> bool:
        """Load the config again and swap the snapshot; an invalid config is refused, logged,
        and the old table stays. Returns whether the new config took effect."""
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
        tokenizers = await loop.run_in_executor(None, old.tokenizers.extended, encodings_for(config.upstream_models))
        if (config.server, config.upstream, config.store) != (old.config.server, old.config.upstream, old.config.store):
            log.warning("server, upstream and store settings changed: they take effect at the next restart")
        if replace(config.ledger, store_messages=False) != replace(old.config.ledger, store_messages=False):
            log.warning("ledger settings other than store_messages changed: they take effect at the next restart")
        for warning in config.warnings:
            log.warning("%s", warning, extra={"fields": {"problem": warning}})
        self.state = Snapshot.build(config, tokenizers, self.client)
        for route, provider, model in self.board.keep_only(config.routes):
            with contextlib.suppress(KeyError):  # a target whose series was never written
                self.metrics.target_cooling.remove(route, provider, model or "*")
        self._publish_targets()
        await self.ledger.flush()  # the rows of the old config are written before the new one serves on
        log.info(
            "config reloaded from %s: %d routes",
            config.source,
            len(config.routes),
            extra={"fields": {"config": config.source}},
        )
        return True

    async def aclose(self) -> None:
        """Write the ledger's waiting rows and close its connections, then the upstream client's
        and the rate limits' store."""
        try:
            await self.ledger.aclose()
        finally:
            await self.client.aclose()
            await self.limiter.store.aclose()


def open_store(
    config: GatewayConfig, *, clock: Callable[[], float] | None, shared: SharedTable | None, worker: int
) -> Store:
    """Where the rate limits' counts live: Redis when store.redis_url is set, else the table
    the workers share, else this process's own."""
    if config.store.redis_url:
        from .store.redis_store import RedisStore  # imports redis, only when it is used

        longest = max((route.limits.timeout for route in config.routes), default=config.limits.timeout)
        return RedisStore(
            config.store.redis_url, timeout=config.store.timeout, lease=longest + LEASE_SLACK, clock=clock
        )
    if shared is not None:
        return LocalStore.shared(shared, worker=worker, clock=clock or time.monotonic)
    return LocalStore.in_process(clock=clock or time.monotonic)


async def watch_config(gateway: Gateway, *, interval: float = 1.0) -> None:
    """Reload whenever the config file's modification time or size changes (server.watch_config),
    checked every `interval` seconds."""
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
