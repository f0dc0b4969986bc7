"""The resolved configuration as `gateway --check` prints it: one line a provider and a route."""

from __future__ import annotations

from .model import GatewayConfig, Limits, Quorum
from .secrets import mask_url


def describe(config: GatewayConfig) -> str:
    """The routing table after every default, override and `${VAR}` is applied (the config's
    warnings go to stderr: see __main__); no secret is printed."""
    limits = config.limits
    lines = [
        f"config: {config.source}",
        f"listen: {config.server.host}:{config.server.port}",
        f"default model: {config.default_model or '(none: requests must name a model)'}",
        f"limits: {format_limits(limits)}",
        f"ledger: {mask_url(config.ledger.url)}" + (" (conversations kept)" if config.ledger.store_messages else ""),
        f"rate limit store: {describe_store(config)}",
        "providers:",
    ]
    for provider in config.providers.values():
        where = f" {mask_url(provider.base_url)}" if provider.base_url else ""
        key = " (api key set)" if provider.api_key else ""
        responses = " (serves the Responses API)" if provider.responses_api else ""
        lines.append(f"  {provider.name}: {provider.kind}{where}{key}{responses}")
    lines.append("routes (exact names first, then globs in file order):")
    ordered = [r for r in config.routes if not r.is_glob] + [r for r in config.routes if r.is_glob]
    for route in ordered:
        if route.quorum is not None:
            own = f"max_tokens={route.limits.max_tokens} timeout={route.limits.timeout:g}s"  # the rest are per call
            lines.append(f"  {route.model} -> {describe_quorum(route.quorum)}; {own}")
            continue
        targets = ", ".join(
            f"{t.provider} model {t.model or '(as requested)'}"
            + (f" weight {t.weight:g}" if len(route.targets) > 1 else "")
            for t in route.targets
        )
        extras = f"; retries {route.retries}" if route.retries else ""
        if route.fallbacks:
            extras += f"; fallbacks {', '.join(route.fallbacks)}"
        if route.price:
            cached = route.price.input if route.price.cached_input is None else route.price.cached_input
            extras += f"; price USD/Mtok input {route.price.input:g} cached {cached:g} output {route.price.output:g}"
        if route.budget:
            extras += f"; budget {route.budget.usd:g} USD/{route.budget.period}"
        lines.append(f"  {route.model} -> {targets}; {format_limits(route.limits)}{extras}")
    return "\n".join(lines)


def describe_quorum(quorum: Quorum) -> str:
    """`quorum debate of gpt, claude; judge claude; rounds 2; min_answers 1`: what the council does."""
    text = f"quorum {quorum.strategy} of {', '.join(quorum.members)}"
    if quorum.judge:
        text += f"; judge {quorum.judge}"
    if quorum.strategy == "debate":
        text += f"; rounds {quorum.rounds}"
    if quorum.strategy == "fastest":
        text += f"; hedge_after {quorum.hedge_after:g}s"
    text += f"; min_answers {quorum.min_answers}"
    if quorum.prompts:
        text += f"; own prompts: {', '.join(quorum.prompts)}"
    return text


def format_limits(limits: Limits) -> str:
    """`max_tokens=N timeout=Ns ... rpm=N`: every limit with its unit; rate limits when set."""
    rates = "".join(
        f" {name}={value}"
        for name, value in (("rpm", limits.rpm), ("tpm", limits.tpm), ("max_parallel", limits.max_parallel))
        if value is not None
    )
    return (
        f"max_tokens={limits.max_tokens} timeout={limits.timeout:g}s "
        f"first_token_timeout={limits.first_token_timeout:g}s idle_timeout={limits.idle_timeout:g}s "
        f"connect_timeout={limits.connect_timeout:g}s{rates}"
    )


def describe_store(config: GatewayConfig) -> str:
    store = config.store
    if not store.redis_url:
        workers = config.server.workers
        return "in process" if workers == 1 else f"memory shared by the {workers} workers"
    return f"redis {mask_url(store.redis_url)} (timeout {store.timeout * 1000:g} ms, on_error {store.on_error})"
