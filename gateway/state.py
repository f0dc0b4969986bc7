"""What a request works with: one immutable snapshot of config, routes and providers.

A request takes the current snapshot once and keeps it to its end (`with state.users:`),
so a reload, which swaps in a new snapshot, never changes a request in flight;
the old snapshot's connections are closed once its last request is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import GatewayConfig
from .providers import Provider, create_provider
from .routing import RoutingTable
from .tokens import Tokenizers, encoding_names_for_pattern


class Users:
    """How many requests hold a snapshot; `idle()` waits for none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Event | None = None

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc: object) -> None:
        self.count -= 1
        if self.count == 0 and self._idle is not None:
            self._idle.set()

    async def idle(self) -> None:
        if self.count:
            self._idle = asyncio.Event()
            await self._idle.wait()


@dataclass(frozen=True, slots=True)
class GatewayState:
    config: GatewayConfig
    table: RoutingTable
    providers: Mapping[str, Provider]
    tokenizers: Tokenizers
    loaded_at: int = field(default_factory=lambda: int(time.time()))
    users: Users = field(default_factory=Users, compare=False)

    @classmethod
    def build(cls, config: GatewayConfig, tokenizers: Tokenizers) -> GatewayState:
        providers = {name: create_provider(provider, tokenizers) for name, provider in config.providers.items()}
        return cls(config=config, table=RoutingTable(config.routes), providers=providers, tokenizers=tokenizers)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.transport.aclose()


def encodings_needed(config: GatewayConfig) -> set[str]:
    """The tiktoken encodings the routes of a config can need."""
    return {
        name
        for route in config.routes
        for target in route.targets
        for name in encoding_names_for_pattern(target.model or route.model)
    }
