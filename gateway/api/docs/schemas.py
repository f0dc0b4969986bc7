"""The document's components: OpenAI's schemas of chat completions, embeddings and the Responses
API (openai/*-schemas.json, package data) and the gateway's own (its errors, headers, health
answers, model objects, the `quorum` field, and where the gateway accepts or answers other than
OpenAI's schemas say).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OPENAI = Path(__file__).parent / "openai"  # package data; see its README.md
OPENAI_FILES = ("chat-schemas.json", "embeddings-schemas.json", "responses-schemas.json")


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openai_schemas() -> dict[str, Any]:
    """OpenAI's schemas, their `$ref`s pointing into the document's `components/schemas`. The
    files come from one openapi.yaml, so a schema in two of them is the same in both."""
    schemas: dict[str, Any] = {}
    for name in OPENAI_FILES:
        text = (OPENAI / name).read_text(encoding="utf-8")
        bundle = json.loads(text.replace('"#/$defs/', '"#/components/schemas/'))
        for key, schema in bundle["$defs"].items():
            if schemas.setdefault(key, schema) != schema:
                raise ValueError(f"openai/{name}: {key} differs from the one an earlier file has")
    drop_null_defaults(schemas)
    for key, schema in schemas.items():
        if schema.pop("$recursiveAnchor", False):
            schemas[key] = recursive_refs(schema, key)
    return schemas


def recursive_refs(node: Any, name: str) -> Any:
    """Draft 2019-09's `$recursiveRef: "#"` inside the schema `name` (OpenAI's CompoundFilter, whose
    filters may be CompoundFilters) as the `$ref` to it that OpenAPI 3.1's dialect (2020-12) knows."""
    if isinstance(node, list):
        return [recursive_refs(item, name) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("$recursiveRef") == "#":
        return {**{key: value for key, value in node.items() if key != "$recursiveRef"}, **ref(name)}
    return {key: recursive_refs(value, name) for key, value in node.items()}


def drop_null_defaults(node: Any) -> None:
    """Remove every `default: null` of a schema that does not allow null itself (an object
    wrapped in an anyOf with null, say): an OpenAPI validator checks defaults, and the wrapper
    still says where null is allowed."""
    if isinstance(node, list):
        for item in node:
            drop_null_defaults(item)
    elif isinstance(node, dict):
        if node.get("default", ...) is None and not allows_null(node):
            del node["default"]
        for value in node.values():
            drop_null_defaults(value)


def allows_null(schema: dict[str, Any]) -> bool:
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    choices = [*schema.get("oneOf", ()), *schema.get("anyOf", ())]
    return any(isinstance(choice, dict) and allows_null(choice) for choice in choices)


USAGE = ref("CompletionUsage")

QUORUM_CALL = {
    "type": "object",
    "description": "One upstream call of a council: a member's answer in a round, or the judge's.",
    "properties": {
        "member": {"type": "string", "description": "The member's route."},
        "provider": {"type": ["string", "null"]},
        "model": {"type": ["string", "null"], "description": "The upstream model that answered."},
        "content": {"type": ["string", "null"]},
        "finish_reason": {"type": ["string", "null"]},
        "usage": {"anyOf": [USAGE, {"type": "null"}]},
        "duration_ms": {"type": ["integer", "null"]},
        "error": {"anyOf": [ref("Error"), {"type": "null"}]},
    },
    "required": ["member"],
}

QUORUM = {
    "type": "object",
    "description": (
        "A quorum route's work (quorum routes, issue 17): on a completion, and on the last chunk of a stream. "
        "SDKs that do not know the field ignore it."
    ),
    "properties": {
        "strategy": {"type": "string", "enum": ["fastest", "vote", "synthesize", "debate"]},
        "members": {"type": "array", "items": {"type": "string"}},
        "rounds": {"type": "array", "items": {"type": "array", "items": ref("QuorumCall")}},
        "votes": {"type": ["object", "null"], "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "judge": {"anyOf": [ref("QuorumCall"), {"type": "null"}]},
        "left_out": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"member": {"type": "string"}, "round": {"type": "integer"}, "error": ref("Error")},
            },
        },
    },
    "required": ["strategy", "members"],
}

MODEL_NAME = {
    "type": "string",
    "minLength": 1,
    "not": {"pattern": "[\\u0000-\\u001f\\u007f-\\u009f]"},
    "description": "A route of the gateway's table, or a name one of its glob routes matches; no control characters.",
}
TOKEN = {"type": "integer", "minimum": 0}

EMBEDDINGS_SCHEMAS: dict[str, Any] = {
    "GatewayCreateEmbeddingRequest": {
        "description": (
            "OpenAI's `CreateEmbeddingRequest` as the gateway checks it: `model` names a route; `input` holds no "
            "empty string and no negative token (a 400 naming the field). Fields OpenAI's schema does not list "
            "are forwarded as they came, though OpenAI's own API refuses them."
        ),
        "allOf": [
            ref("CreateEmbeddingRequest"),
            {
                "type": "object",
                "properties": {
                    "model": MODEL_NAME,
                    "input": {
                        "anyOf": [
                            {"type": "string", "minLength": 1},
                            {
                                "type": "array",
                                "items": {
                                    "anyOf": [
                                        {"type": "string", "minLength": 1},
                                        TOKEN,
                                        {"type": "array", "items": TOKEN},
                                    ]
                                },
                            },
                        ]
                    },
                },
            },
        ],
    },
    "GatewayEmbeddingList": {
        "description": (
            "The upstream's answer as it came: OpenAI's `CreateEmbeddingResponse`, or with `encoding_format: base64` "
            "the same list whose vectors are base64 strings (OpenAI's schema has float arrays only)."
        ),
        "anyOf": [ref("CreateEmbeddingResponse"), ref("Base64EmbeddingList")],
    },
    "Base64EmbeddingList": {
        "type": "object",
        "description": "OpenAI's `CreateEmbeddingResponse` with `encoding_format: base64`.",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": {"type": "integer"},
                        "object": {"type": "string", "enum": ["embedding"]},
                        "embedding": {
                            "type": "string",
                            "contentEncoding": "base64",
                            "description": "The vector's float32 numbers, little-endian, in base64.",
                        },
                    },
                    "required": ["index", "object", "embedding"],
                },
            },
            "model": {"type": "string"},
            "usage": {
                "type": "object",
                "properties": {"prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}},
                "required": ["prompt_tokens", "total_tokens"],
            },
        },
        "required": ["object", "model", "data", "usage"],
    },
}

RESPONSES_SCHEMAS: dict[str, Any] = {
    "GatewayCreateResponse": {
        "description": (
            "OpenAI's `CreateResponse`; `model` names a route (the config's `default_model` when absent, if it has "
            "one). A route whose upstream does not serve the Responses API refuses, with a 400 naming the field, "
            "what needs state or a built-in tool (the operation's 400 lists them)."
        ),
        "allOf": [
            ref("CreateResponse"),
            {"type": "object", "properties": {"model": MODEL_NAME}, "required": ["model"]},
        ],
    },
}

GATEWAY_SCHEMAS: dict[str, Any] = {
    "GatewayChatCompletion": {
        "description": "OpenAI's chat completion; a quorum route's answer adds `quorum`.",
        "allOf": [ref("CreateChatCompletionResponse")],
        "properties": {"quorum": ref("Quorum")},
    },
    "GatewayChatCompletionChunk": {
        "description": "OpenAI's chat completion chunk; a quorum route's last chunk before `[DONE]` adds `quorum`.",
        "allOf": [ref("CreateChatCompletionStreamResponse")],
        "properties": {"quorum": ref("Quorum")},
    },
    "GatewayModel": {
        "description": (
            "OpenAI's model object for one of the gateway's exact routes: `owned_by` is the route's provider, "
            "`created` when the config was loaded. A quorum route's also says who sits on its council."
        ),
        "allOf": [ref("Model")],
        "properties": {
            "quorum": {
                "type": "object",
                "description": "Quorum routes only (issue 17): send them to /api/v1/debates to watch the council.",
                "properties": {
                    "strategy": {"type": "string"},
                    "members": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["strategy", "members"],
            }
        },
    },
    "GatewayModelList": {
        "type": "object",
        "description": "The exact route names (globs name no one model), those of the client's key only.",
        "properties": {
            "object": {"type": "string", "enum": ["list"]},
            "data": {"type": "array", "items": ref("GatewayModel")},
        },
        "required": ["object", "data"],
    },
    "Quorum": QUORUM,
    "QuorumCall": QUORUM_CALL,
    **EMBEDDINGS_SCHEMAS,
    **RESPONSES_SCHEMAS,
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"}},
        "required": ["status", "version"],
    },
    "Readiness": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ready", "draining"]}},
        "required": ["status"],
    },
    "UpstreamHealth": {
        "type": "object",
        "properties": {
            "targets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "route": {"type": "string"},
                        "provider": {"type": "string"},
                        "model": {
                            "type": ["string", "null"],
                            "description": "The upstream model; null: the request's.",
                        },
                        "state": {"type": "string", "enum": ["ok", "cooling"]},
                        "failures": {"type": "integer", "minimum": 0},
                        "cooling_seconds_left": {"type": ["number", "null"], "minimum": 0},
                    },
                    "required": ["route", "provider", "model", "state", "failures", "cooling_seconds_left"],
                },
            }
        },
        "required": ["targets"],
    },
}


def header(description: str, *, required: bool = False, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"description": description, "required": required, "schema": schema}


DIGITS = "^[0-9]+$"

HEADERS: dict[str, Any] = {
    "RequestId": header(
        "The request's id: the client's own `x-request-id` when it sent one (up to 256 printable ASCII "
        "characters), else the gateway's. Also sent upstream and logged.",
        required=True,
    ),
    "MaxTokens": header("The completion-token limit the request was held to.", required=True, pattern=DIGITS),
    "Provider": header("The provider (gateway.yaml) of the target that served the request.", required=True),
    "UpstreamModel": header("The model name sent to that upstream.", required=True),
    "Attempts": header("How many attempts (retries and fallbacks) it took.", required=True, pattern=DIGITS),
    "FailedAttempts": header("How many attempts were made before the gateway gave up.", pattern=DIGITS),
    "ShouldRetry": header("`false` once the gateway has retried itself: a client's own retries would multiply them."),
    "RetryAfter": header("Passed on from the upstream after a single attempt: seconds before trying again."),
    "WWWAuthenticate": header("`Bearer`.", required=True),
    "RateLimitRetryAfter": header(
        "Seconds (rounded up) until the request would fit the limit that refused it.", pattern=DIGITS
    ),
    "RateLimitRetryAfterMs": header("The same, in milliseconds (what the OpenAI SDKs read first).", pattern=DIGITS),
    "RateLimitShouldRetry": header(
        "`true`: the SDK may retry after the wait; `false` for a request larger than a limit."
    ),
    **{
        f"RateLimit{part}{kind.title()}": header(text.format(kind=kind, per=per), pattern=pattern)
        for kind, per in (("requests", "rpm"), ("tokens", "tpm"))
        for part, text, pattern in (
            ("Limit", "The tightest `{per}` that applies ({kind} per minute); absent under none.", DIGITS),
            ("Remaining", "What is left of it in the sliding minute, this request counted.", DIGITS),
            ("Reset", "Until the minute holds none of its {kind} again, as OpenAI writes it: `250ms`, `1m0.2s`.", None),
        )
    },
}
