"""The admin endpoints (/admin/*) of the usage ledger, described: client keys at run time,
usage reports and stored requests (api.admin). They answer only with `auth.admin_key`, sent
as a bearer token, and are all 404 while no admin key is set.
"""

from __future__ import annotations

from typing import Any

ADMIN_KEY: list[dict[str, list[str]]] = [{"adminKey": []}]  # the security of every admin operation
SECURITY_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "description": "`auth.admin_key`, as a bearer token: the admin endpoints' only key.",
}

GROUPS = ["key", "route", "model", "day"]  # what /admin/usage groups by (ledger.reports.GROUPS)
_NULLABLE_COUNT = {"type": ["integer", "null"], "minimum": 1}
BUDGET = {
    "type": ["object", "null"],
    "properties": {"usd": {"type": "number", "minimum": 0}, "period": {"type": "string", "examples": ["30d", "month"]}},
    "required": ["usd", "period"],
}
KEY_FIELDS = {
    "models": {"type": ["array", "null"], "items": {"type": "string"}, "description": "names and globs; null: all"},
    "rpm": _NULLABLE_COUNT,
    "tpm": _NULLABLE_COUNT,
    "max_parallel": _NULLABLE_COUNT,
    "budget": BUDGET,
}
KEY: dict[str, Any] = {
    "type": "object",
    "description": "A client key as the admin endpoints show it: never its secret nor its digest.",
    "properties": {
        "id": {"type": "string"},
        **KEY_FIELDS,
        "source": {"type": "string", "enum": ["config", "database"]},
        "created_at": {"type": ["string", "null"]},
        "updated_at": {"type": ["string", "null"]},
        "revoked_at": {"type": ["string", "null"]},
    },
    "required": ["id", "source"],
}
NEW_KEY: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"}, **KEY_FIELDS},
    "required": ["id"],
}
CREATED_KEY = {**KEY, "properties": {**KEY["properties"], "key": {"type": "string"}}, "required": ["id", "key"]}
KEY_WITH_SPEND = {
    **KEY,
    "properties": {
        **KEY["properties"],
        "spend": {
            "type": "object",
            "properties": {
                "usd": {"type": "number"},
                "period": {"type": "string"},
                "from": {"type": "string"},
                "to": {"type": "string"},
                "remaining_usd": {"type": ["number", "null"]},
            },
        },
    },
}
USAGE = {
    "type": "object",
    "properties": {
        "from": {"type": "string"},
        "to": {"type": "string"},
        "group_by": {"type": "string", "enum": GROUPS},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "group": {"type": ["string", "null"]},
                    "requests": {"type": "integer"},
                    "prompt_tokens": {"type": "integer"},
                    "completion_tokens": {"type": "integer"},
                    "cost_usd": {"type": ["number", "null"]},
                    "unpriced_requests": {"type": "integer"},
                },
            },
        },
    },
}
ROWS = {"type": "object", "properties": {"data": {"type": "array", "items": {"type": "object"}}}}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors(error: dict[str, Any], *statuses: str) -> dict[str, Any]:
    meanings = {
        "400": "a bad field (`param` names it)",
        "401": "`invalid_api_key`: no key, or one the gateway does not know",
        "403": "`admin_key_required`: a client key, not the admin key",
        "404": "no admin key is set (every admin endpoint is 404 then), or no such key or request",
        "409": "the key is defined in gateway.yaml: change it there",
    }
    return {status: {"description": meanings[status], "content": _json(error)} for status in statuses}


def admin_operations(error: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> the OpenAPI operation; `error` is the schema of the gateway's errors."""
    key_id = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}]
    tags = ["Admin"]
    return {
        ("post", "/admin/keys"): {
            "tags": tags,
            "summary": "Give out a client key (its secret is shown this once)",
            "requestBody": {"required": True, "content": _json(NEW_KEY)},
            "responses": {
                "201": {"description": "The key, with its secret.", "content": _json(CREATED_KEY)},
                **_errors(error, "400", "401", "403", "404", "409"),
            },
        },
        ("get", "/admin/keys"): {
            "tags": tags,
            "summary": "Every client key, of gateway.yaml and of the ledger (no secrets)",
            "responses": {
                "200": {
                    "description": "The keys.",
                    "content": _json({"type": "object", "properties": {"data": {"type": "array", "items": KEY}}}),
                },
                **_errors(error, "401", "403", "404"),
            },
        },
        ("get", "/admin/keys/{key_id}"): {
            "tags": tags,
            "summary": "One client key, with its spend in the current budget period",
            "parameters": key_id,
            "responses": {
                "200": {"description": "The key.", "content": _json(KEY_WITH_SPEND)},
                **_errors(error, "401", "403", "404"),
            },
        },
        ("patch", "/admin/keys/{key_id}"): {
            "tags": tags,
            "summary": "Change a key's models, limits or budget",
            "parameters": key_id,
            "requestBody": {"required": True, "content": _json({"type": "object", "properties": KEY_FIELDS})},
            "responses": {
                "200": {"description": "The key, changed.", "content": _json(KEY)},
                **_errors(error, "400", "401", "403", "404", "409"),
            },
        },
        ("delete", "/admin/keys/{key_id}"): {
            "tags": tags,
            "summary": "Revoke a key: refused on the next request, on every replica within seconds",
            "parameters": key_id,
            "responses": {
                "200": {"description": "The key, revoked.", "content": _json(KEY)},
                **_errors(error, "401", "403", "404", "409"),
            },
        },
        ("get", "/admin/usage"): {
            "tags": tags,
            "summary": "Requests, tokens and cost by key, route, model or day",
            "parameters": [
                {"name": "from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {"name": "to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                {
                    "name": "group_by",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["key", "route", "model", "day"]},
                },
            ],
            "responses": {
                "200": {"description": "The report.", "content": _json(USAGE)},
                **_errors(error, "400", "401", "403", "404"),
            },
        },
        ("get", "/admin/requests/{request_id}"): {
            "tags": tags,
            "summary": "A request's ledger rows, with its messages and answer when they are kept",
            "parameters": [{"name": "request_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "Its rows.", "content": _json(ROWS)},
                **_errors(error, "401", "403", "404"),
            },
        },
    }
