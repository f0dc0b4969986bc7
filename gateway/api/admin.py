"""The operator's endpoints under /admin: client keys at run time, usage reports, stored requests.

Every one needs `Authorization: Bearer <auth.admin_key>` (401 `invalid_api_key` without it,
403 `admin_key_required` with a client key); when the config sets no admin key, each answers
404, saying how to turn them on.

    POST   /admin/keys                {"id", "models", "rpm", "tpm", "max_parallel", "budget": {"usd", "period"}}
                                      -> 201, the key with its secret in "key" (shown this once)
    GET    /admin/keys                {"data": [key, ...]}: the database's active keys and gateway.yaml's
    GET    /admin/keys/{id}           the key and its spend in the current budget period
    PATCH  /admin/keys/{id}           any of models, rpm, tpm, max_parallel, budget (null clears one)
    DELETE /admin/keys/{id}           revoke: refused on every replica within ledger.key_refresh seconds
    GET    /admin/usage?from=&to=&group_by=key|route|model|day   {"data": [{"group", "requests", ...}]}
    GET    /admin/requests/{request_id}   {"data": [row, ...]}: its ledger rows, messages and answer if kept
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..config import ClientKey, key_digest
from ..errors import AdminKeyRequired, InvalidAPIKey, InvalidRequest, NotFound
from ..ledger import keys as stored
from ..ledger import reports
from ..ledger.budgets import Charge
from ..ledger.keys import KeyExists, KeyRecord
from ..ledger.rows import key_scope
from ..policy import budgets
from ..runtime import Gateway
from ..server.auth import find_key, presented_key
from ..server.errors import dumps
from ..server.keys import GATEWAY
from .admin_input import key_changes, new_key, parse_time, request_body

USAGE_WINDOW = dt.timedelta(hours=24)  # GET /admin/usage without `from`
REPORT_PERIOD = "month"  # the spend shown for a key without a budget

AdminHandler = Callable[[web.Request, Gateway], Awaitable[web.Response]]


def admin_only(handle: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """404 when no admin key is set; 403 for a client key; 401 for no key or another."""

    async def checked(request: web.Request) -> web.Response:
        gateway = request.app[GATEWAY]
        snapshot = gateway.state
        expected = snapshot.config.auth.admin_digest
        if expected is None:
            raise NotFound(f"No endpoint at {request.path}: the admin endpoints answer once auth.admin_key is set.")
        secret = presented_key(request)
        if secret is None or not hmac.compare_digest(key_digest(secret), expected):
            client_key = find_key(secret, snapshot.keys, gateway.ledger.keys.by_digest) if secret else None
            if client_key is not None:
                raise AdminKeyRequired(client_key.id)
            raise InvalidAPIKey(presented=secret is not None)
        return await handle(request, gateway)

    return checked


def config_key(gateway: Gateway, key_id: str) -> ClientKey | None:
    return next((key for key in gateway.state.config.auth.keys if key.id == key_id), None)


def shown(record: KeyRecord | ClientKey, *, source: str) -> dict[str, Any]:
    """A key as the admin endpoints show it: never its secret nor its digest."""
    body: dict[str, Any] = {
        "id": record.id,
        "models": list(record.models) if record.models is not None else None,
        "rpm": record.rpm,
        "tpm": record.tpm,
        "max_parallel": record.max_parallel,
        "budget": {"usd": record.budget.usd, "period": record.budget.period} if record.budget else None,
        "source": source,
    }
    if isinstance(record, KeyRecord):
        body["created_at"] = reports.format_time(record.created_at)
        body["updated_at"] = reports.format_time(record.updated_at)
        body["revoked_at"] = reports.format_time(record.revoked_at)
    return body


async def create_key(request: web.Request, gateway: Gateway) -> web.Response:
    body = await request_body(request, gateway.state.config.server)
    secret = stored.new_secret()
    record = new_key(body, key_digest(secret))
    if record.id in gateway.state.config.auth.named:  # a key left out for an empty secret comes back with it
        raise KeyExists(f"The key {record.id!r} is named in gateway.yaml (auth.keys).", param="id")
    ledger = gateway.ledger
    created = await ledger.ask(lambda engine: stored.create_key(engine, record, ledger.now()))
    ledger.keys.put(created)
    return web.json_response({**shown(created, source="database"), "key": secret}, status=201, dumps=dumps)


async def list_keys(request: web.Request, gateway: Gateway) -> web.Response:
    found = await gateway.ledger.ask(stored.list_keys)
    data = [shown(key, source="config") for key in gateway.state.config.auth.keys]
    data += [shown(record, source="database") for record in found]
    return web.json_response({"data": data}, dumps=dumps)


async def get_key(request: web.Request, gateway: Gateway) -> web.Response:
    key_id = request.match_info["key_id"]
    ledger = gateway.ledger
    record: KeyRecord | ClientKey | None = config_key(gateway, key_id)
    source = "config"
    if record is None:
        record = await ledger.ask(lambda engine: stored.get_key(engine, key_id))
        source = "database"
    if record is None:
        raise NotFound(f"No key {key_id!r}.", code="key_not_found")
    period = record.budget.period if record.budget else REPORT_PERIOD
    window = budgets.window(period, ledger.clock())
    charge = Charge(key_scope(key_id), window.start_day, window.end_day)
    spent = await ledger.ask(lambda engine: reports.spend_in(engine, charge))
    spend = {
        "usd": round(spent, 9),
        "period": period,
        "from": reports.format_time(window.start),
        "to": reports.format_time(window.end),
        "remaining_usd": round(max(record.budget.usd - spent, 0.0), 9) if record.budget else None,
    }
    return web.json_response({**shown(record, source=source), "spend": spend}, dumps=dumps)


async def change_key(request: web.Request, gateway: Gateway) -> web.Response:
    key_id = request.match_info["key_id"]
    changes = key_changes(await request_body(request, gateway.state.config.server))
    refuse_config_key(gateway, key_id)
    ledger = gateway.ledger
    changed = await ledger.ask(lambda engine: stored.update_key(engine, key_id, changes, ledger.now()))
    if changed is None:
        raise NotFound(f"No active key {key_id!r}.", code="key_not_found")
    ledger.keys.put(changed)
    return web.json_response(shown(changed, source="database"), dumps=dumps)


async def revoke_key(request: web.Request, gateway: Gateway) -> web.Response:
    """Revoke the database's key; one gateway.yaml names too (given out before ids the file
    names were refused) is revoked all the same: the file's own is a 409, left to the file."""
    key_id = request.match_info["key_id"]
    ledger = gateway.ledger
    at = ledger.now()
    if not await ledger.ask(lambda engine: stored.revoke_key(engine, key_id, at)):
        refuse_config_key(gateway, key_id)
        raise NotFound(f"No active key {key_id!r}.", code="key_not_found")
    ledger.keys.by_digest = {digest: key for digest, key in ledger.keys.by_digest.items() if key.id != key_id}
    return web.json_response({"id": key_id, "revoked": True, "revoked_at": reports.format_time(at)}, dumps=dumps)


def refuse_config_key(gateway: Gateway, key_id: str) -> None:
    if config_key(gateway, key_id) is not None:
        raise KeyExists(f"The key {key_id!r} is defined in gateway.yaml: change it there.")


async def usage(request: web.Request, gateway: Gateway) -> web.Response:
    query = request.query
    end = parse_time(query.get("to"), "to") or gateway.ledger.now()
    start = parse_time(query.get("from"), "from") or end - USAGE_WINDOW
    group_by = query.get("group_by", "key")
    if group_by not in reports.GROUPS:
        raise InvalidRequest(f"'group_by' must be one of {', '.join(reports.GROUPS)}.", param="group_by")
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'.", param="from")
    data = await gateway.ledger.ask(lambda engine: reports.usage(engine, start, end, group_by))
    return web.json_response(
        {"from": reports.format_time(start), "to": reports.format_time(end), "group_by": group_by, "data": data},
        dumps=dumps,
    )


async def request_rows(request: web.Request, gateway: Gateway) -> web.Response:
    request_id = request.match_info["request_id"]
    rows = await gateway.ledger.ask(lambda engine: reports.request_rows(engine, request_id))
    if not rows:
        raise NotFound(
            f"No request {request_id!r} in the ledger (yet: rows are written within a second or two).",
            code="request_not_found",
        )
    return web.json_response({"data": rows}, dumps=dumps)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/keys", admin_only(create_key))
    app.router.add_get("/admin/keys", admin_only(list_keys))
    app.router.add_get("/admin/keys/{key_id}", admin_only(get_key))
    app.router.add_patch("/admin/keys/{key_id}", admin_only(change_key))
    app.router.add_delete("/admin/keys/{key_id}", admin_only(revoke_key))
    app.router.add_get("/admin/usage", admin_only(usage))
    app.router.add_get("/admin/requests/{request_id}", admin_only(request_rows))
