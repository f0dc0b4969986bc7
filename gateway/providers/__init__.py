"""Provider adapters, one module per upstream protocol, in a plain registry keyed by `kind:`.

The mock model speaks OpenAI's protocol: its adapter is OpenAI's, and its
upstream is in process (upstream.mock).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import ProviderConfig
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import Provider, StreamTranslator, UpstreamCall
from .openai import OpenAIProvider

PROVIDERS: dict[str, Callable[[ProviderConfig], Provider]] = {
    "openai": OpenAIProvider,
    "azure": AzureProvider,
    "anthropic": AnthropicProvider,
    "mock": OpenAIProvider,
}


def create_provider(config: ProviderConfig) -> Provider:
    """The adapter for a provider's `kind:` (checked at load, so always known)."""
    return PROVIDERS[config.kind](config)


__all__ = ["PROVIDERS", "Provider", "StreamTranslator", "UpstreamCall", "create_provider"]
