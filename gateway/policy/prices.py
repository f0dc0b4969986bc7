"""What a request cost, in USD: its usage times the price of the model that answered it.

A route's own `price:` comes first. Otherwise the price comes from genai-prices (the
Pydantic team's table of LLM prices, bundled with the package and never fetched at run
time): the provider is found by its base_url (api.openai.com is OpenAI, *.openai.azure.com
Azure, api.anthropic.com Anthropic, api.groq.com Groq, ...), then the model by its name. An
upstream the table does not know (a self-hosted vLLM, a fake one) has no price, and a
request on it costs None, never 0: the caller counts those. The built-in mock costs 0.

Usage is OpenAI's: `prompt_tokens` includes the `prompt_tokens_details.cached_tokens` read
from the upstream's cache, which are charged at the cached price.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import genai_prices
from genai_prices import data_snapshot
from genai_prices.types import ModelPrice

from ..config import Price, ProviderConfig, Route

MILLION = 1_000_000
FREE = Price(input=0.0, output=0.0)
LOOKUPS_KEPT = 4096  # (base_url, model) pairs remembered; glob routes pass clients' model names on


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a request used, by OpenAI's usage: prompt (cached included), cached, completion."""

    prompt: int
    completion: int
    cached: int = 0

    @classmethod
    def from_usage(cls, usage: Any) -> Tokens | None:
        """OpenAI's `usage` object, or None when it holds no counts."""
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        cached = cached if isinstance(cached, int) and 0 <= cached <= prompt else 0
        return cls(prompt=max(prompt, 0), completion=max(completion, 0), cached=cached)


@dataclass(frozen=True, slots=True)
class Quote:
    """A model's price: per million tokens when linear (`linear`), else the library's own
    tiered price (`tiered`: above a prompt size, every token costs more)."""

    linear: Price | None = None
    tiered: ModelPrice | None = None

    def cost(self, tokens: Tokens) -> float:
        """USD for `tokens`."""
        if self.linear is not None:
            price = self.linear
            cached_price = price.input if price.cached_input is None else price.cached_input
            total = (
                (tokens.prompt - tokens.cached) * price.input
                + tokens.cached * cached_price
                + tokens.completion * price.output
            )
            return total / MILLION
        assert self.tiered is not None
        usage = genai_prices.Usage(
            input_tokens=tokens.prompt, cache_read_tokens=tokens.cached, output_tokens=tokens.completion
        )
        return float(self.tiered.calc_price(usage)["total_price"])


class PriceBook:
    """The price of each (provider, model) a config routes to; lookups are remembered."""

    def __init__(self) -> None:
        self._table = data_snapshot.get_snapshot()
        self._find = functools.lru_cache(maxsize=LOOKUPS_KEPT)(self._library_quote)

    def quote(self, route: Route, provider: ProviderConfig | None, model: str) -> Quote | None:
        """The price of `model` on `provider` for `route`; None when nobody knows it."""
        if route.price is not None:
            return Quote(linear=route.price)
        if provider is None:
            return None
        if provider.kind == "mock":
            return Quote(linear=FREE)
        return self._find(provider.base_url, model)

    def cost(self, route: Route, provider: ProviderConfig | None, model: str | None, tokens: Tokens) -> float | None:
        """USD for `tokens` of `model`, or None when its price is unknown."""
        quote = self.quote(route, provider, model) if model else None
        return None if quote is None else quote.cost(tokens)

    def _library_quote(self, base_url: str, model: str) -> Quote | None:
        try:
            found = self._table.find_provider(None, None, base_url)
        except LookupError:
            return None
        info = found.find_model(model.lower(), all_providers=self._table.providers)
        if info is None:
            return None
        price = info.get_prices(dt.datetime.now(dt.UTC))
        rates = (price.input_mtok, price.output_mtok, price.cache_read_mtok)
        if not all(rate is None or isinstance(rate, Decimal) for rate in rates):
            return Quote(tiered=price)
        input_rate, output_rate, cached_rate = (float(rate) if isinstance(rate, Decimal) else None for rate in rates)
        return Quote(linear=Price(input=input_rate or 0.0, output=output_rate or 0.0, cached_input=cached_rate))
