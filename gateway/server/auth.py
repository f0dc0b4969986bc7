"""Who is calling: the client's key, for every model endpoint (paths under /v1 and /api/v1).

Keys are sent as the OpenAI SDKs send them (`Authorization: Bearer <key>`), or as Azure's
(`api-key: <key>`). They are looked up by their SHA-256 digest, the only form the gateway
holds, so the lookup's time says nothing about the secret (hmac.compare_digest confirms the
match). A request without a known key gets a 401 `invalid_api_key` and is counted under
the key label "unknown"; /health, /ready and /metrics need no key. With no keys configured
(a gateway on loopback, or `auth: {open: true}`), every request passes with no key.

Keys come from gateway.yaml (`snapshot.keys`) and from the ledger's database, side by side.
The database's are looked up in the worker's own cache (ledger.keys.KeyCache, refreshed every
`ledger.key_refresh` seconds), never by a query on the request's path. Keys are asked for
when either holds one, or when an admin key is set (keys are then given out at run time,
and none given out means no one may call).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping

from aiohttp import web

from ..config import ClientKey, key_digest
from ..errors import InvalidAPIKey
from ..observability.metrics import UNKNOWN_KEY
from ..runtime import Gateway
from .errors import error_response
from .keys import CLIENT_KEY, GATEWAY, LOGGED
from .records import request_record
from .types import Handler, Middleware

PROTECTED = ("/v1/", "/api/v1/")  # the model endpoints; the ops endpoints stay open


def presented_key(request: web.Request) -> str | None:
    """The key in `Authorization: Bearer <key>` or `api-key: <key>`, if any."""
    authorization = request.headers.get("Authorization")
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    return request.headers.get("api-key") or None


def find_key(secret: str, *sources: Mapping[bytes, ClientKey]) -> ClientKey | None:
    """The key whose secret this is, by its SHA-256 digest, in the first of `sources` that has it."""
    digest = key_digest(secret)
    for keys in sources:
        key = keys.get(digest)
        if key is not None and hmac.compare_digest(key.digest, digest):
            return key
    return None


def auth_middleware() -> Middleware:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(PROTECTED):
            return await handler(request)
        gateway = request.app[GATEWAY]
        snapshot = gateway.state
        stored = gateway.ledger.keys.by_digest
        if not snapshot.keys and not stored and not snapshot.config.auth.required:
            request[CLIENT_KEY] = None
            return await handler(request)
        secret = presented_key(request)
        key = find_key(secret, snapshot.keys, stored) if secret else None
        if key is None:
            return refuse(request, gateway, InvalidAPIKey(presented=secret is not None))
        request[CLIENT_KEY] = key
        return await handler(request)

    return auth


def refuse(request: web.Request, gateway: Gateway, error: InvalidAPIKey) -> web.Response:
    """The 401, counted and logged as a model request of the key "unknown"."""
    request[LOGGED] = True
    record = request_record(request, time.perf_counter(), at=gateway.wall(), key=UNKNOWN_KEY, status=error.status)
    record.fail(error)
    gateway.settle(record, time.perf_counter())
    return error_response(error)
