"""The `store:` section: where the rate limits' counts live.

    store:
      redis_url: ${REDIS_URL}   # redis://[:password@]host:port/db, rediss:// (TLS) or unix:///path.sock
      on_error: allow           # Redis unreachable or slow: allow (admit, uncounted) or deny (503)
      timeout: 0.005            # seconds Redis has to answer an admission

Without `redis_url` the counts live in the gateway's own memory (shared by its workers).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .model import ON_STORE_ERROR, StoreConfig
from .secrets import mask_url
from .section import SectionChecker

SCHEMES = ("redis", "rediss", "unix")


def check_store(checker: SectionChecker, node: Any) -> StoreConfig:
    """The typed `store:` section; a URL is only ever shown with its password masked."""
    node = checker.mapping(node, "store", ("redis_url", "on_error", "timeout"))
    defaults = StoreConfig()
    url = checker.string(node, "redis_url", "store")
    if url and not valid_redis_url(url):
        checker.problem(
            "store.redis_url",
            f"must be redis://host:port, rediss://host:port or unix:///path, got {mask_url(url)!r}",
        )
    on_error = checker.string(node, "on_error", "store", defaults.on_error)
    if on_error not in ON_STORE_ERROR:
        checker.problem("store.on_error", f"must be allow or deny, got {on_error!r}")
        on_error = defaults.on_error
    return StoreConfig(
        redis_url=url,
        on_error=on_error,
        timeout=checker.seconds(node, "timeout", "store", defaults.timeout),
    )


def valid_redis_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return False
    if parts.scheme == "unix":
        return bool(parts.path)
    try:
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        return False
    return bool(parts.hostname)
