"""Every endpoint of the gateway's API, one entry each: to describe a new endpoint, add its entry
to OPERATIONS. The document lists an entry only where the app serves its method and path, so an
entry may land before its endpoint does (those of issues 17 and 19 are marked so).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .admin_operations import ADMIN_KEY, admin_operations
from .schemas import ref
from .streams import CHAT_STREAM, DEBATE_STREAM, RESPONSES_STREAM

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
    security: list[dict[str, list[str]]] | None = None  # its own (the admin key), whatever `keyed` says


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


UPSTREAM_ERROR_HEADERS = {  # of an error after the gateway tried the route's upstreams
    "x-request-id": {"$ref": "#/components/headers/RequestId"},
    "x-gateway-attempts": {"$ref": "#/components/headers/FailedAttempts"},
    "x-should-retry": {"$ref": "#/components/headers/ShouldRetry"},
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
    "400": error(
        "`invalid_request_error`: bad JSON, or a bad field (`param` names it); `invalid_body`: the body does not "
        "decode as its Content-Encoding says."
    ),
    **AUTH_ERRORS,
    "403": error("`model_not_allowed`: the model is outside the key's `models`."),
    "404": error("`model_not_found`: no route for the model."),
    "408": error("`request_timeout`: the body did not arrive within `server.request_body_timeout`."),
    "413": error("`payload_too_large`: the body is over `server.max_body_bytes`."),
    "500": error("`internal_error`: a failure of the gateway's own."),
    "502": {
        **error(
            "`upstream_unreachable`, `upstream_protocol_error`, `upstream_response_too_large`: the upstream could "
            "not be reached, broke the protocol, or sent more than `limits.max_response_bytes` / "
            "`limits.max_event_bytes`."
        ),
        "headers": UPSTREAM_ERROR_HEADERS,
    },
    "429": {
        **error(
            "`rate_limit_exceeded`: over a rate limit of the client's key or of the route (`rpm`, `tpm`, "
            "`max_parallel`); the message names it."
        ),
        "headers": {
            "x-request-id": {"$ref": "#/components/headers/RequestId"},
            "retry-after": {"$ref": "#/components/headers/RateLimitRetryAfter"},
            "retry-after-ms": {"$ref": "#/components/headers/RateLimitRetryAfterMs"},
            "x-should-retry": {"$ref": "#/components/headers/RateLimitShouldRetry"},
            **{
                f"x-ratelimit-{part.lower()}-{kind}": {"$ref": f"#/components/headers/RateLimit{part}{kind.title()}"}
                for kind in ("requests", "tokens")
                for part in ("Limit", "Remaining", "Reset")
            },
        },
    },
    "503": error("`rate_limits_unavailable`: the rate limits' store did not answer and `store.on_error` is deny."),
    "504": error("`connect_timeout`, `first_token_timeout`, `timeout`: a limit fired before the response started."),
    "default": {
        **error(
            "The upstream's own error status (400-599) with its message, in OpenAI's shape (never its HTML, "
            "never a configured secret); Anthropic's error type is the code (`overloaded_error`)."
        ),
        "headers": {**UPSTREAM_ERROR_HEADERS, "retry-after": {"$ref": "#/components/headers/RetryAfter"}},
    },
}


ROUTED_HEADERS = {  # which target answered, after how many attempts
    "x-gateway-provider": "Provider",
    "x-gateway-upstream-model": "UpstreamModel",
    "x-gateway-attempts": "Attempts",
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
                **{"x-gateway-max-tokens": "MaxTokens", **ROUTED_HEADERS},
            ),
            **ROUTED_ERRORS,
        },
    }


def embeddings(examples: Examples) -> dict[str, Any]:
    floats = {"model": examples.model, "input": ["first text", "second text"], "dimensions": 8}
    base64 = {"model": examples.model, "input": "Hello", "encoding_format": "base64", "dimensions": 8}
    return {
        "tags": ["Embeddings"],
        "summary": "Embeddings",
        "description": (
            "OpenAI's embeddings, routed by `model` through the same table as chat (keys, retries, fallbacks, "
            "cooldowns, timeouts). The gateway checks `input` (a string, an array of strings, a token array or an "
            "array of token arrays: at most 2048 items, none empty), `encoding_format`, `dimensions` and `user`, "
            "and forwards the body as it came with the upstream's model name; the upstream's answer comes back as it "
            "came, base64 vectors too. `openai` providers get `{base_url}/embeddings`, `azure` the deployment's; a "
            "route on `anthropic` is a 400 (Anthropic has no embeddings API). The `mock` provider answers "
            "deterministic unit vectors, `dimensions` of them (1536 by default; more than 8192 is its 400)."
        ),
        "requestBody": {
            "required": True,
            "content": json_content(ref("GatewayCreateEmbeddingRequest"), {"floats": floats, "base64": base64}),
        },
        "responses": {
            "200": ok("The vectors.", json_content(ref("GatewayEmbeddingList")), **ROUTED_HEADERS),
            **ROUTED_ERRORS,
            "400": error(
                "`invalid_request_error`: bad JSON, or a bad field (`param` names it); `model` on a route to an "
                "`anthropic` provider. An upstream's own 400 comes as it said it."
            ),
        },
    }


REFUSED_WHEN_TRANSLATED = (
    "`previous_response_id`, `conversation`, `prompt` (stored prompts), `context_management`, `background: true`, "
    '`truncation: "auto"`, `item_reference` input items and input items other than messages, function calls and '
    "their outputs (reasoning items are dropped), file ids and file URLs (`input_image` needs an `image_url`, "
    "`input_file` its `file_data`), a function call output without its `call_id` or other than text, tools "
    "other than functions, a `tool_choice` other than `auto`, `none`, `required` or a function, and an `input` "
    "that is missing or holds nothing to answer"
)


def responses(examples: Examples) -> dict[str, Any]:
    whole = {"model": examples.model, "instructions": "Be brief.", "input": "Hello", "max_output_tokens": 16}
    streamed = {**whole, "stream": True}
    tools = {
        **whole,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}],
        "tools": [
            {
                "type": "function",
                "name": "get_weather",
                "description": "The weather in a city.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "strict": True,
            }
        ],
        "tool_choice": "auto",
    }
    return {
        "tags": ["Responses"],
        "summary": "Responses, streamed or not, on every route",
        "description": (
            "OpenAI's Responses API, routed by `model` through the same table as chat. A route whose provider is "
            "`openai` or `azure` with `responses_api` (on by default for `https://api.openai.com`) gets the request "
            "**forwarded** as it came, with the upstream model name and the effective `max_output_tokens`: "
            "built-in tools, `previous_response_id` and `store` work as the upstream has them, and its answer comes "
            "back as it came. Every other route (Anthropic, the mock, servers that speak only chat completions) "
            "**translates** it into a chat completions request (`instructions` as a system message; `input` as "
            "text or message, `function_call` and `function_call_output` items; function `tools`, `tool_choice`, "
            "`parallel_tool_calls`, `temperature`, `top_p`, `text.format`, `reasoning.effort`, `user`) and the "
            "answer back into a Response or its events, keeping no state: `store` is treated as false, `include`, "
            "`metadata` (echoed back) and `top_logprobs` are left out, and what needs state or a built-in tool is a "
            "400 naming the field. Either way the answer is held to the smallest of `max_output_tokens`, the "
            "route's and the gateway's `max_tokens` (counted with tiktoken; `status: \"incomplete\"`, "
            '`incomplete_details.reason: "max_output_tokens"` when cut).'
        ),
        "requestBody": {
            "required": True,
            "content": json_content(
                ref("GatewayCreateResponse"), {"whole": whole, "streamed": streamed, "function_tools": tools}
            ),
        },
        "responses": {
            "200": ok(
                "The Response, or its events (`stream: true`).",
                {**json_content(ref("Response")), "text/event-stream": {"schema": RESPONSES_STREAM}},
                **{"x-gateway-max-tokens": "MaxTokens", **ROUTED_HEADERS},
            ),
            **ROUTED_ERRORS,
            "400": error(
                "`invalid_request_error`: bad JSON, or a bad field (`param` names it). A translated route also "
                f"refuses what needs state or a built-in tool: {REFUSED_WHEN_TRANSLATED}."
            ),
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
    """A quorum route's council at work, as named server-sent events."""
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


def admin_describe(method: str, path: str) -> Callable[[Examples], dict[str, Any]]:
    return lambda examples: admin_operations(ref("ErrorResponse"))[method, path]


def admin_id(method: str, path: str) -> str:
    """createKey, listKeys, retrieveKey, updateKey, deleteKey, usageReport, retrieveRequestRows."""
    return {
        ("post", "/admin/keys"): "createKey",
        ("get", "/admin/keys"): "listKeys",
        ("get", "/admin/keys/{key_id}"): "retrieveKey",
        ("patch", "/admin/keys/{key_id}"): "updateKey",
        ("delete", "/admin/keys/{key_id}"): "deleteKey",
        ("get", "/admin/usage"): "usageReport",
        ("get", "/admin/requests/{request_id}"): "retrieveRequestRows",
    }[method, path]


OPERATIONS: tuple[Operation, ...] = (
    Operation("post", model_paths("/chat/completions"), "createChatCompletion", chat_completions, keyed=True),
    Operation("post", model_paths("/responses"), "createResponse", responses, keyed=True),
    Operation("post", model_paths("/embeddings"), "createEmbedding", embeddings, keyed=True),
    Operation("get", model_paths("/models"), "listModels", list_models, keyed=True),
    Operation("get", model_paths("/models/{model}"), "retrieveModel", get_model, keyed=True),
    Operation("post", ("/api/v1/debates",), "createDebate", debates, keyed=True),
    *(
        Operation(method, (path,), admin_id(method, path), admin_describe(method, path), security=ADMIN_KEY)
        for method, path in admin_operations(ref("ErrorResponse"))
    ),
    Operation("get", ("/health",), "health", health),
    Operation("get", ("/health/upstreams",), "upstreamHealth", upstream_health),
    Operation("get", ("/ready",), "ready", ready),
    Operation("get", ("/metrics",), "metrics", metrics),
)
