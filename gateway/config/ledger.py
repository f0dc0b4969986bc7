"""The `ledger:` section, and the money a key or route may spend and what a route's upstream costs.

ledger:
  url: sqlite:///var/lib/gateway/ledger.db   # default: ledger.db beside the config file
  store_messages: false     # true: also the messages and the answer of every request
  retention_days: 30        # stored conversations are deleted after this many days
auth:
  keys:
    - {id: team-a, key: ..., budget: {usd: 50, period: 30d}}   # also 1d, 7d, month
routes:
  - model: smart
    price: {input: 2.5, cached_input: 1.25, output: 10}     # USD per million tokens
    budget: {usd: 500, period: month}
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any

from .model import Budget, LedgerConfig, Price
from .secrets import mask_url
from .section import SectionChecker

PERIOD = re.compile(r"([1-9][0-9]{0,3})d|month")  # N days (up to 9999), or the calendar month
BUDGET_TEXT = re.compile(r"([0-9]+(?:\.[0-9]+)?)/(\S+)")  # the command line's 50/30d
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
DEFAULT_FILE = "ledger.db"
BUILT_IN = "<built-in default>"  # config.load's source when there is no file


def check_ledger(checker: SectionChecker, node: Any, source: str) -> LedgerConfig:
    """The typed `ledger:` section; a relative SQLite path is taken from the config file's folder
    (the current folder for the built-in default)."""
    node = checker.mapping(
        node,
        "ledger",
        (
            "url",
            "batch_rows",
            "flush_interval",
            "buffer_rows",
            "buffer_bytes",
            "store_messages",
            "retention_days",
            "key_refresh",
        ),
    )
    defaults = LedgerConfig()
    base = Path.cwd() if source == BUILT_IN else Path(source).resolve().parent
    url = normalize_url(checker, checker.string(node, "url", "ledger") or f"sqlite:{DEFAULT_FILE}", base)
    return LedgerConfig(
        url=url,
        batch_rows=checker.integer(node, "batch_rows", "ledger", defaults.batch_rows),
        flush_interval=checker.seconds(node, "flush_interval", "ledger", defaults.flush_interval),
        buffer_rows=checker.integer(node, "buffer_rows", "ledger", defaults.buffer_rows),
        buffer_bytes=checker.integer(node, "buffer_bytes", "ledger", defaults.buffer_bytes),
        store_messages=checker.boolean(node, "store_messages", "ledger", defaults.store_messages),
        retention_days=checker.integer(node, "retention_days", "ledger", defaults.retention_days),
        key_refresh=checker.seconds(node, "key_refresh", "ledger", defaults.key_refresh),
    )


def normalize_url(checker: SectionChecker, url: str, base: Path) -> str:
    """`sqlite:///<absolute path>` for SQLite (from `sqlite:///abs`, `sqlite:////abs` or the
    relative `sqlite:path`), or the PostgreSQL URL as written."""
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        rest = rest[2:] if rest.startswith("//") else rest  # sqlite:///abs: an empty host, then the path
        if not rest or rest == "/" or ":memory:" in rest:
            checker.problem("ledger.url", "must name a database file: sqlite:///var/lib/gateway/ledger.db")
            return LedgerConfig().url
        path = Path("/" + rest.lstrip("/")) if rest.startswith("/") else base / rest
        return f"sqlite://{path}"
    if url.startswith(POSTGRES_SCHEMES) or url.startswith("postgresql+asyncpg://"):
        return url
    checker.problem(
        "ledger.url",
        f"must be sqlite:///<path> or postgresql://user:password@host/database, got {mask_url(url)!r}",
    )
    return LedgerConfig().url


def check_budget(checker: SectionChecker, node: Any, path: str) -> Budget | None:
    """`{usd, period}` at `path`, or None when absent."""
    if node is None:
        return None
    node = checker.mapping(node, path, ("usd", "period"))
    usd = dollars(checker, node, "usd", path, required=True)
    period = checker.string(node, "period", path, "30d")
    if not PERIOD.fullmatch(period):
        checker.problem(f"{path}.period", f"must be Nd (a number of days: 1d, 7d, 30d) or month, got {period!r}")
    return Budget(usd=usd or 0.0, period=period)


def check_price(checker: SectionChecker, node: Any, path: str) -> Price | None:
    """`{input, cached_input, output}` (USD per million tokens) at `path`, or None when absent."""
    if node is None:
        return None
    node = checker.mapping(node, path, ("input", "cached_input", "output"))
    return Price(
        input=dollars(checker, node, "input", path, required=True) or 0.0,
        output=dollars(checker, node, "output", path, required=True) or 0.0,
        cached_input=dollars(checker, node, "cached_input", path),
    )


def dollars(
    checker: SectionChecker, node: dict[str, Any], key: str, path: str, *, required: bool = False
) -> float | None:
    """A finite amount of USD, at least 0; None when absent (a problem when `required`)."""
    value = node.get(key)
    if value is None:
        if required:
            checker.problem(f"{path}.{key}", "is required (USD)")
        return None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        checker.problem(f"{path}.{key}", f"must be a number of USD, at least 0, got {value!r}")
        return None
    return float(value)


def parse_budget_text(text: str) -> Budget:
    """The command line's `50/30d` (USD, then the period); raises ValueError saying what is wrong."""
    found = BUDGET_TEXT.fullmatch(text.strip())
    if not found or not PERIOD.fullmatch(found.group(2)):
        raise ValueError(f"a budget is USD/period, like 50/30d, 5/1d or 200/month; got {text!r}")
    return Budget(usd=float(found.group(1)), period=found.group(2))
