"""The OpenAPI 3.1 document of the gateway's own API, assembled from operations.OPERATIONS.

It is made for the gateway that serves it: an operation is listed only where the app serves
its method and path, the examples name one of its routes, and the key is asked for only when
it has client keys (auth.keys).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable
from typing import Any

from .admin_operations import SECURITY_SCHEME as ADMIN_SECURITY_SCHEME
from .operations import Examples, Operation
from .schemas import GATEWAY_SCHEMAS, HEADERS

Served = Collection[tuple[str, str]]  # (METHOD, path) pairs, as aiohttp's router has them

DESCRIPTION = """\
An OpenAI-compatible LLM gateway: point any OpenAI SDK's `base_url` at its `/v1` and it routes each model
name, by a YAML table, to an upstream (any OpenAI-compatible server, Anthropic, Azure OpenAI, or
the built-in mock), with weighted targets, retries, fallbacks and cooldowns, and holds every answer
to its `max_tokens` and timeouts.

Errors always have OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`; `code` says
what happened. The model endpoints are served under `/v1` (OpenAI's paths) and `/api/v1` (the
Quorum quick-start guide's). The schemas of chat completions, embeddings and the Responses API are
OpenAI's own (openai/openai-openapi, MIT license), with the gateway's additions.
"""

SECURITY_SCHEMES = {
    "bearerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A client key of `auth.keys`, sent as the OpenAI SDKs send their API key.",
    },
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "api-key", "description": "The same key, as Azure's."},
    "adminKey": ADMIN_SECURITY_SCHEME,
}
KEY_REQUIRED: list[dict[str, list[str]]] = [{"bearerKey": []}, {"apiKeyHeader": []}]

TAGS = [
    {"name": "Chat", "description": "OpenAI's chat completions, through the routing table."},
    {"name": "Responses", "description": "OpenAI's Responses API on every route: forwarded, or translated."},
    {"name": "Embeddings", "description": "OpenAI's embeddings, through the routing table."},
    {"name": "Models", "description": "The routes, as OpenAI's model list."},
    {"name": "Quorum", "description": "Quorum routes: one prompt, several models, one answer."},
    {"name": "Operations", "description": "Health, readiness and metrics: no key needed."},
    {"name": "Admin", "description": "The usage ledger's keys, reports and stored requests: the admin key only."},
]


def build_document(
    operations: Iterable[Operation],
    openai_schemas: dict[str, Any],
    *,
    served: Served,
    version: str,
    keyed: bool,
    examples: Examples,
) -> dict[str, Any]:
    """The document; `keyed`: the gateway has client keys, so the model endpoints need one."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        for index, path in enumerate(operation.paths):
            if (operation.method.upper(), path) not in served:
                continue
            described = operation.describe(examples)
            described["operationId"] = operation.operation_id + ("" if index == 0 else f"_{path_suffix(path)}")
            if operation.security is not None:
                described["security"] = operation.security
            else:
                described["security"] = KEY_REQUIRED if operation.keyed and keyed else []
            paths.setdefault(path, {})[operation.method] = described
    used_tags = {tag for item in paths.values() for described in item.values() for tag in described.get("tags", ())}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "LLM gateway",
            "version": version,
            "description": DESCRIPTION,
        },
        "tags": [tag for tag in TAGS if tag["name"] in used_tags],
        "paths": paths,
        "components": {
            "schemas": {**copy.deepcopy(openai_schemas), **copy.deepcopy(GATEWAY_SCHEMAS)},
            "headers": copy.deepcopy(HEADERS),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def path_suffix(path: str) -> str:
    """`/api/v1/models` -> `api_v1`: what tells an operation's second path from its first."""
    return "_".join(part for part in path.split("/")[1:3] if part)
