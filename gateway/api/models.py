"""GET /v1/models and /v1/models/{id}: the exact route names, as OpenAI's model list.

Glob routes are not listed: they name no one model. A model one of them routes is found by
/v1/models/{id} all the same, as chat completions would route it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..config import Route
from ..errors import ModelNotFound
from ..runtime import Snapshot
from ..server.errors import dumps
from ..server.keys import CLIENT_KEY, GATEWAY


async def list_models(request: web.Request) -> web.Response:
    """`{"object": "list", "data": [model, ...]}`: the routes the client's key may use."""
    snapshot = request.app[GATEWAY].state
    data = [model_object(snapshot, route) for route in visible_routes(request, snapshot)]
    return web.json_response({"object": "list", "data": data}, dumps=dumps)


async def get_model(request: web.Request) -> web.Response:
    """One model object, for the route a request for it would take (an exact route's, or a glob
    route's); 404 `model_not_found` when none would, or the key may not use it."""
    snapshot = request.app[GATEWAY].state
    model = request.match_info["model"]
    route = snapshot.table.resolve(model)
    key = request.get(CLIENT_KEY)
    if route is None or (key is not None and not key.allows(model, route.model)):
        raise ModelNotFound(model)
    return web.json_response(model_object(snapshot, route, model), dumps=dumps)


def visible_routes(request: web.Request, snapshot: Snapshot) -> list[Route]:
    """The exact routes, those of the client's key only when it has a list."""
    key = request.get(CLIENT_KEY)
    routes = snapshot.table.exact_routes
    return routes if key is None else [route for route in routes if key.allows(route.model)]


def model_object(snapshot: Snapshot, route: Route, name: str | None = None) -> dict[str, Any]:
    """OpenAI's `Model` for `name` (the route's own name when not given): created is when the
    config was loaded (seconds since the epoch). A quorum route's also says how its council
    sits, `quorum: {"strategy", "members"}` (the playground shows a debate from it); SDKs
    ignore a field they do not know."""
    model = {"id": name or route.model, "object": "model", "created": snapshot.loaded_at, "owned_by": route.provider}
    if route.quorum is not None:
        model["quorum"] = {"strategy": route.quorum.strategy, "members": list(route.quorum.members)}
    return model
