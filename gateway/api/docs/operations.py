"""Every endpoint of the gateway's API, one entry each: to describe a new endpoint, add its entry
to OPERATIONS. The document lists an entry only where the app serves its method and path, so an
entry may land before its endpoint does (those of issues 17 and 19 are marked so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .schemas import ref
from .streams import CHAT_STREAM, DEBATE_STREAM

MODEL_PREFIXES = ("/v1", "/api/v1")  # OpenAI's paths, and the Quorum quick-start guide's (api.PREFIXES)


@dataclass(frozen=True, slots=True)
class Examples:
    """What the document's examples name: a route of this gateway's table."""

    model: str


@dataclass(frozen=True, slots=True)
class Operation:
    method: str  # lower case, as OpenAPI spells it
    paths: tuple[str, ...]  # every path it is served at; the first gets `operation_id`, the others a suffix
    operation_id: str
    describe: Callable[[Examples], dict[str, Any]]  # the OpenAPI operation, less its operationId and security
    keyed: bool = False  # under /v1 or /api/v1: a key is asked for when the gateway has keys


def model_paths(suffix: str) -> tuple[str, ...]:
    return tuple(prefix + suffix for prefix in MODEL_PREFIXES)


def json_content(schema: dict[str, Any], examples: dict[str, object] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if examples:
        media["examples"] = {name: {"value": value} for name, value in examples.items()}
    return {"application/json": media}


def error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
        "content": json_content(ref("ErrorResponse")),
    }


def ok(description: str, content: dict[str, Any], **headers: str) -> dict[str, Any]:
    named = {"x-request-id": "RequestId", **headers}
    return {
        "description": description,
        "headers": {name: {"$ref": f"#/components/headers/{key}"} for name, key in named.items()},
        "content": content,
    }


AUTH_ERRORS = {
    "401": {
        **error("`invalid_api_key`: no key, or one the gateway does not know (only when it has client keys)."),
        "headers": {
            "x-request-id": {"$ref": "#/components/headers/RequestId"},
            "WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"},
        },
    },
}

ROUTED_ERRORS = {
    "400": error("`invalid_request_error`: bad JSON, or a bad field (`param` names it)."),
    **AUTH_ERRORS,
    "403": error("`model_not_allowed`: the model is outside the key's `models`."),
    "404": error("`model_not_found`: no route for the model."),
    "413": error("`payload_too_large`: the body is over `server.max_body_bytes`."),
    "500": error("`internal_error`: a failure of the gateway's own."),
    "502": {
        **error(
            "`upstream_unreachable`, `upstream_protocol_error`, `upstream_response_too_large`: the upstream could "
            "not be reached, broke the protocol, or sent more than `limits.max_response_bytes` / "
            "`limits.max_event_bytes`."
        ),
        "headers": {
            "x-request-id": {"$ref": "#/components/headers/RequestId"},
            "x-gateway-attempts": {"$ref": "#/components/headers/FailedAttempts"},
            "x-should-retry": {"$ref": "#/components/headers/ShouldRetry"},
        },
    },
    "504": error("`connect_timeout`, `first_token_timeout`, `timeout`: a limit fired before the response started."),
    "default": {
        **error(
            "The upstream's own error status (400-599) with its message, in OpenAI's shape (never its HTML, "
            "never a configured secret); Anthropic's error type is the code (`overloaded_error`)."
        ),
        "headers": {
            "x-request-id": {"$ref": "#/components/headers/RequestId"},
            "x-gateway-attempts": {"$ref": "#/components/headers/FailedAttempts"},
            "x-should-retry": {"$ref": "#/components/headers/ShouldRetry"},
            "retry-after": {"$ref": "#/components/headers/RetryAfter"},
        },
    },
}


def chat_completions(examples: Examples) -> dict[str, Any]:
    whole = {
        "model": examples.model,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
        "max_tokens": 16,
    }
    streamed = {**whole, "stream": True, "stream_options": {"include_usage": True}}
    return {
        "tags": ["Chat"],
        "summary": "Chat completions, streamed or not",
        "description": (
            "OpenAI's chat completions, routed by `model` through the gateway's table (weighted targets, retries, "
            "fallbacks, cooldowns). The gateway checks only what routing and safety need (`messages`, `model`, "
            "`stream`, `n`, `max_tokens`, `max_completion_tokens`, `stream_options`) and forwards everything else "
            "as it came. The answer is held to the smallest of the request's `max_completion_tokens` or "
            "`max_tokens`, its route's and the gateway's `max_tokens` (counted with tiktoken; `finish_reason: "
            '"length"` when cut).'
        ),
        "requestBody": {
            "required": True,
            "content": json_content(ref("CreateChatCompletionRequest"), {"whole": whole, "streamed": streamed}),
        },
        "responses": {
            "200": ok(
                "The completion, or its stream (`stream: true`).",
                {
                    **json_content(ref("GatewayChatCompletion")),
                    "text/event-stream": {"schema": CHAT_STREAM},
                },
                **{
                    "x-gateway-max-tokens": "MaxTokens",
                    "x-gateway-provider": "Provider",
                    "x-gateway-upstream-model": "UpstreamModel",
                    "x-gateway-attempts": "Attempts",
                },
            ),
            **ROUTED_ERRORS,
        },
    }


def list_models(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Models"],
        "summary": "The routes, as OpenAI's model list",
        "responses": {"200": ok("The exact route names.", json_content(ref("GatewayModelList"))), **AUTH_ERRORS},
    }


def get_model(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Models"],
        "summary": "One route, as OpenAI's model object",
        "parameters": [
            {"name": "model", "in": "path", "required": True, "schema": {"type": "string"}, "example": examples.model}
        ],
        "responses": {
            "200": ok("The model object.", json_content(ref("GatewayModel"))),
            **AUTH_ERRORS,
            "404": error("`model_not_found`: no such exact route, or one the key may not use."),
        },
    }


def health(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Operations"],
        "summary": "Liveness: 200 while the process serves",
        "responses": {"200": ok("Serving.", json_content(ref("Health")))},
    }


def upstream_health(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Operations"],
        "summary": "Every route target with its state (cooldowns)",
        "responses": {"200": ok("The targets.", json_content(ref("UpstreamHealth")))},
    }


def ready(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Operations"],
        "summary": "Readiness: 200 while taking traffic, 503 while draining; never depends on an upstream",
        "responses": {
            "200": ok("Taking traffic.", json_content(ref("Readiness"))),
            "503": ok("Draining for shutdown.", json_content(ref("Readiness"))),
        },
    }


def metrics(examples: Examples) -> dict[str, Any]:
    return {
        "tags": ["Operations"],
        "summary": "Prometheus metrics (text exposition format), summed over every worker",
        "responses": {"200": ok("The metrics.", {"text/plain": {"schema": {"type": "string"}}})},
    }


def debates(examples: Examples) -> dict[str, Any]:
    """Quorum routes (issue 17): listed once the gateway serves POST /api/v1/debates."""
    return {
        "tags": ["Quorum"],
        "summary": "Watch a quorum route's council at work (issue 17)",
        "description": "A chat completions body naming a quorum route; the answer is the council's events.",
        "requestBody": {"required": True, "content": json_content(ref("CreateChatCompletionRequest"))},
        "responses": {
            "200": ok("The council's events.", {"text/event-stream": {"schema": DEBATE_STREAM}}),
            **ROUTED_ERRORS,
        },
    }


OPERATIONS: tuple[Operation, ...] = (
    Operation("post", model_paths("/chat/completions"), "createChatCompletion", chat_completions, keyed=True),
    Operation("get", model_paths("/models"), "listModels", list_models, keyed=True),
    Operation("get", model_paths("/models/{model}"), "retrieveModel", get_model, keyed=True),
    Operation("post", ("/api/v1/debates",), "createDebate", debates, keyed=True),  # issue 17
    Operation("get", ("/health",), "health", health),
    Operation("get", ("/health/upstreams",), "upstreamHealth", upstream_health),
    Operation("get", ("/ready",), "ready", ready),
    Operation("get", ("/metrics",), "metrics", metrics),
)
