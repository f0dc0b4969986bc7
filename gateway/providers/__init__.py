"""Provider adapters, one module per upstream protocol, in a plain registry keyed by `kind:`.

The mock model speaks OpenAI's protocol: its adapter is OpenAI's, and its
upstream is in process (upstream.mock).
"""

from __future__ import annotations

from typing import Protocol

from ..config import ProviderConfig
from ..config.secrets import Redactor
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import Provider, StreamTranslator, UpstreamCall
from .openai import OpenAIProvider


class ProviderFactory(Protocol):
    def __call__(self, config: ProviderConfig, *, redactor: Redactor | None = None) -> Provider: ...


PROVIDERS: dict[str, ProviderFactory] = {
    "openai": OpenAIProvider,
    "azure": AzureProvider,
    "anthropic": AnthropicProvider,
    "mock": OpenAIProvider,
}


def create_provider(config: ProviderConfig, *, redactor: Redactor | None = None) -> Provider:
    """The adapter for a provider's `kind:` (checked at load, so always known); `redactor`
    holds every secret of the config (default: this provider's own)."""
    return PROVIDERS[config.kind](config, redactor=redactor)


__all__ = ["PROVIDERS", "Provider", "StreamTranslator", "UpstreamCall", "create_provider"]
