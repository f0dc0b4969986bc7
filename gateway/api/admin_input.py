"""What the admin endpoints read: a key's fields (checked as gateway.yaml's are), and times.

Each bad field is a 400 `invalid_request_error` naming it in `param`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import orjson
from aiohttp import web

from ..config import Budget, ServerConfig
from ..config.auth import KEY_ID
from ..config.ledger import PERIOD
from ..errors import InvalidRequest
from ..ledger.keys import MOST_STORED_LIMIT, KeyRecord
from .parsing import parse_body, read_payload

LIMITS = ("rpm", "tpm", "max_parallel")
KEY_FIELDS = ("id", "models", *LIMITS, "budget")
CHANGEABLE = ("models", *LIMITS, "budget")


async def request_body(request: web.Request, server: ServerConfig) -> dict[str, Any]:
    """The JSON object the request carries, read within the server's bounds (parsing.read_payload)."""
    return parse_body(await read_payload(request, server))


def new_key(body: dict[str, Any], digest: bytes) -> KeyRecord:
    """The key POST /admin/keys describes, with the digest of its new secret."""
    unknown(body, KEY_FIELDS)
    key_id = body.get("id")
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise InvalidRequest(
            "'id' must be 1 to 64 letters, digits and . _ : @ - (it is shown in logs and metrics).", param="id"
        )
    return KeyRecord(
        id=key_id,
        digest=digest,
        models=models(body.get("models")),
        rpm=count(body, "rpm"),
        tpm=count(body, "tpm"),
        max_parallel=count(body, "max_parallel"),
        budget=budget(body.get("budget")),
    )


def key_changes(body: dict[str, Any]) -> dict[str, Any]:
    """The columns PATCH /admin/keys/{id} sets: those the body names (null clears a limit)."""
    unknown(body, CHANGEABLE)
    if not body:
        raise InvalidRequest(f"Name at least one of {', '.join(CHANGEABLE)} to change.")
    changes: dict[str, Any] = {}
    if "models" in body:
        found = models(body["models"])
        changes["models"] = orjson.dumps(list(found)).decode() if found is not None else None
    for name in LIMITS:
        if name in body:
            changes[name] = count(body, name)
    if "budget" in body:
        found_budget = budget(body["budget"])
        changes["budget_usd"] = found_budget.usd if found_budget else None
        changes["budget_period"] = found_budget.period if found_budget else None
    return changes


def unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for name in body:
        if name not in allowed:
            raise InvalidRequest(f"Unknown field {name!r} (expected: {', '.join(allowed)}).", param=name)


def models(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise InvalidRequest("'models' must be a list of route names and globs, or null (every route).", param="models")
    return tuple(value)


def count(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MOST_STORED_LIMIT:
        raise InvalidRequest(
            f"'{name}' must be an integer from 1 to {MOST_STORED_LIMIT}, or null (no limit).", param=name
        )
    return value


def budget(value: Any) -> Budget | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"usd", "period"}:
        raise InvalidRequest('\'budget\' must be {"usd": N, "period": "30d"}, or null.', param="budget")
    usd = value.get("usd")
    if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
        raise InvalidRequest("'budget.usd' must be a number of USD, at least 0.", param="budget.usd")
    period = value.get("period", "30d")
    if not isinstance(period, str) or not PERIOD.fullmatch(period):
        raise InvalidRequest("'budget.period' must be Nd (1d, 7d, 30d) or month.", param="budget.period")
    return Budget(usd=float(usd), period=period)


def parse_time(value: str | None, name: str) -> dt.datetime | None:
    """An ISO 8601 time (UTC when it names no zone), or None when absent."""
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidRequest(f"'{name}' must be an ISO 8601 time, like 2026-11-25T00:00:00Z.", param=name) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
