"""Typed keys for what the app and each request carry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .app import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway")
REQUEST_ID = web.RequestKey("request_id", str)
LOGGED = web.RequestKey("logged", bool)  # set by a handler that writes its own access line
