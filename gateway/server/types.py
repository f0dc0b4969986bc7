"""The shapes of aiohttp's handlers and middlewares, named once (aiohttp.typedefs)."""

from __future__ import annotations

from aiohttp.typedefs import Handler, Middleware

__all__ = ["Handler", "Middleware"]
