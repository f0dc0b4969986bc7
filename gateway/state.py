"""What a request works with: one immutable snapshot of config, routes and providers.

A request takes the current snapshot once and keeps it to its end, so a reload
(which swaps in a new snapshot) never changes a request in flight.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from .config import GatewayConfig
from .providers import Provider, create_provider
from .routing import RoutingTable
from .tokens import Tokenizers, encoding_names_for_pattern


@dataclass(frozen=True, slots=True)
class GatewayState:
    config: GatewayConfig
    table: RoutingTable
    providers: Mapping[str, Provider]
    tokenizers: Tokenizers
    loaded_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def build(cls, config: GatewayConfig, tokenizers: Tokenizers) -> GatewayState:
        providers = {name: create_provider(provider, tokenizers) for name, provider in config.providers.items()}
        return cls(config=config, table=RoutingTable(config.routes), providers=providers, tokenizers=tokenizers)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.transport.aclose()


def encodings_needed(config: GatewayConfig) -> set[str]:
    """The tiktoken encodings the routes of a config can need."""
    return {name for route in config.routes for name in encoding_names_for_pattern(route.upstream_model or route.model)}
