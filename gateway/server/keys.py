"""Typed keys for what the app and each request carry (aiohttp's AppKey and RequestKey)."""

from __future__ import annotations

from aiohttp import web

from ..config import ClientKey
from ..runtime import Gateway

GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
REQUEST_ID = web.RequestKey("request_id", str)
LOGGED = web.RequestKey("logged", bool)  # set by an endpoint that writes its own access line
CLIENT_KEY: web.RequestKey[ClientKey | None] = web.RequestKey("client_key")  # None: no keys asked for
