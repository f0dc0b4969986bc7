"""Provider adapters, one module each, in a plain registry keyed by `kind:`."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ProviderConfig
from ..tokens import Tokenizers
from .anthropic import AnthropicProvider
from .azure import AzureProvider
from .base import Provider, StreamTranslator, UpstreamCall
from .mock import MockProvider
from .openai import OpenAIProvider

PROVIDERS: dict[str, Callable[[ProviderConfig, Tokenizers], Provider]] = {
    "openai": lambda config, tokenizers: OpenAIProvider(config),
    "azure": lambda config, tokenizers: AzureProvider(config),
    "anthropic": lambda config, tokenizers: AnthropicProvider(config),
    "mock": MockProvider,
}


def create_provider(config: ProviderConfig, tokenizers: Tokenizers) -> Provider:
    return PROVIDERS[config.kind](config, tokenizers)


__all__ = ["PROVIDERS", "Provider", "StreamTranslator", "UpstreamCall", "create_provider"]
