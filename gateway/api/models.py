"""GET /v1/models and /v1/models/{id}: the exact route names, as OpenAI's model list.

Glob routes are not listed: they name no one model.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import ModelNotFound
from ..runtime import Snapshot
from ..server.errors import dumps
from ..server.keys import GATEWAY


async def list_models(request: web.Request) -> web.Response:
    """`{"object": "list", "data": [model, ...]}`."""
    snapshot = request.app[GATEWAY].state
    data = [model_object(snapshot, route.model, route.provider) for route in snapshot.table.exact_routes]
    return web.json_response({"object": "list", "data": data}, dumps=dumps)


async def get_model(request: web.Request) -> web.Response:
    """One model object, or 404 `model_not_found`."""
    snapshot = request.app[GATEWAY].state
    model = request.match_info["model"]
    for route in snapshot.table.exact_routes:
        if route.model == model:
            return web.json_response(model_object(snapshot, route.model, route.provider), dumps=dumps)
    raise ModelNotFound(model)


def model_object(snapshot: Snapshot, model: str, provider: str) -> dict[str, Any]:
    """OpenAI's `Model`: created is when the config was loaded (seconds since the epoch)."""
    return {"id": model, "object": "model", "created": snapshot.loaded_at, "owned_by": provider}
