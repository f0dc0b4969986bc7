"""Azure OpenAI behind the OpenAI API: the deployment URL, api-version and the api-key header."""

from __future__ import annotations

from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream
from fakes import Handler, completion, json_handler, sse_handler, text_stream
from test_limits_e2e import collect

MESSAGES = [{"role": "user", "content": "hi"}]


def azure_tree(url: str) -> dict:
    return {
        "providers": {
            "azure": {
                "kind": "azure",
                "base_url": url,
                "api_key": "azure-secret-key",
                "api_version": "2024-10-21",
                "deployment": "provider-deployment",
            }
        },
        "routes": [
            {
                "model": "gpt-4o",
                "targets": [
                    {
                        "provider": "azure",
                        "model": "gpt-4o",
                        "deployment": "my-gpt4o",
                        "api_version": "2025-01-01-preview",
                    }
                ],
            },
            {"model": "default-deployment", "provider": "azure", "upstream_model": "gpt-4o-mini"},
        ],
    }


async def test_azure_deployment_url_and_key(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(azure_tree(upstream.url))
    client = gateway.client()
    upstream.handler = json_handler(completion("from azure"))
    result = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result.choices[0].message.content == "from azure"
    sent = upstream.requests[-1]
    assert sent["path"] == "/openai/deployments/my-gpt4o/chat/completions"
    assert sent["query"] == {"api-version": "2025-01-01-preview"}
    assert sent["headers"]["api-key"] == "azure-secret-key" and "Authorization" not in sent["headers"]

    upstream.handler = sse_handler(text_stream(["streamed", " from azure"]))
    texts, finishes, _ = await collect(
        await client.chat.completions.create(model="default-deployment", messages=MESSAGES, stream=True)
    )
    assert texts[0] == "streamed from azure" and finishes[0] == "stop"
    sent = upstream.requests[-1]
    assert sent["path"] == "/openai/deployments/provider-deployment/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}


# ---------------------------------------------------------------- a fake Azure OpenAI, in the shapes of Azure's documentation

API_KEY = "azure-secret-key"
MODEL_VERSION = "gpt-4o-2024-08-06"  # what Azure names in its responses: the deployed model's version
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
SAFE = {"filtered": False, "severity": "safe"}
FILTERS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
FILTERED = {**FILTERS, "violence": {"filtered": True, "severity": "medium"}}
PROMPT_FILTERS = [
    {"prompt_index": 0, "content_filter_results": {**FILTERS, "jailbreak": {"filtered": False, "detected": False}}}
]
USAGE = {"completion_tokens": 3, "prompt_tokens": 20, "total_tokens": 23}
RATE_LIMITED = (
    "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2025-01-01-preview have "
    "exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."
)


def azure_error(
    http_status: int, code: str, message: str, *, headers: dict | None = None, **extra: Any
) -> web.Response:
    """Azure's error body: `code` and `message`, sometimes more (`param`, `status`, `innererror`)."""
    return web.json_response(
        {"error": {"code": code, "message": message, **extra}}, status=http_status, headers=headers
    )


def error_handler(http_status: int, code: str, message: str, **options: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return azure_error(http_status, code, message, **options)

    return azure(handle)


def refusal_of(request: web.Request) -> web.Response | None:
    """What Azure answers a request with the wrong key, path or api-version; None if it is fine."""
    if request.headers.get("api-key") != API_KEY or "Authorization" in request.headers:
        return azure_error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
    if request.path != "/openai/deployments/my-gpt4o/chat/completions" or "api-version" not in request.query:
        return azure_error(404, "404", "Resource not found")
    return None


def azure(handler: Handler) -> Handler:
    """`handler` behind Azure's checks of the key, the deployment's path and api-version."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return refusal_of(request) or await handler(request)

    return handle


def azure_completion(
    content: str | None, *, finish_reason: str = "stop", tool_calls: list | None = None, filters: dict | None = FILTERS
) -> dict[str, Any]:
    message: dict[str, Any] = {"content": content, "refusal": None, "role": "assistant"}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "choices": [
            {
                "content_filter_results": filters or {},
                "finish_reason": finish_reason,
                "index": 0,
                "logprobs": None,
                "message": message,
            }
        ],
        "created": 1_727_000_000,
        "id": "chatcmpl-azure",
        "model": MODEL_VERSION,
        "object": "chat.completion",
        "prompt_filter_results": PROMPT_FILTERS,
        "system_fingerprint": "fp_azure",
        "usage": USAGE,
    }


def prompt_filter_chunk() -> dict[str, Any]:
    """Azure's first event: the prompt's content filter annotation, with no choices."""
    return {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": PROMPT_FILTERS}


def azure_chunk(
    delta: dict[str, Any], *, finish_reason: str | None = None, filters: dict | None = None
) -> dict[str, Any]:
    return {
        "choices": [
            {
                "content_filter_results": filters or {},
                "delta": delta,
                "finish_reason": finish_reason,
                "index": 0,
                "logprobs": None,
            }
        ],
        "created": 1_727_000_000,
        "id": "chatcmpl-azure",
        "model": MODEL_VERSION,
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_azure",
    }


def azure_text_stream(
    pieces: list[str], *, finish_reason: str = "stop", filters: dict | None = None
) -> list[dict[str, Any]]:
    return [
        prompt_filter_chunk(),
        azure_chunk({"content": "", "refusal": None, "role": "assistant"}),
        *(azure_chunk({"content": piece}, filters=FILTERS) for piece in pieces),
        azure_chunk({}, finish_reason=finish_reason, filters=filters),
    ]


def tool_call_chunks(index: int, call_id: str, city_pieces: list[str]) -> list[dict[str, Any]]:
    """One streamed tool call: its id and name with empty arguments, then the arguments a piece at a time."""
    first = {"index": index, "id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    delta: dict[str, Any] = {"tool_calls": [first]}
    if index == 0:
        delta = {"content": None, "refusal": None, "role": "assistant", **delta}
    return [
        azure_chunk(delta),
        *(azure_chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}) for piece in city_pieces),
    ]


def azure_stream(events: list[dict[str, Any] | bytes]) -> Handler:
    """Streams the events, one write each, and Azure's usage chunk when the request asked for it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        usage = (
            [{**azure_chunk({}), "choices": [], "usage": USAGE}]
            if (body.get("stream_options") or {}).get("include_usage")
            else []
        )
        return await sse_handler([*events, *usage])(request)

    return azure(handle)


def tool_call(call_id: str, city: str) -> dict[str, Any]:
    return {
        "function": {"arguments": orjson.dumps({"city": city}).decode(), "name": "get_weather"},
        "id": call_id,
        "type": "function",
    }


def assert_no_key(error: openai.APIError) -> None:
    """The Azure key is nowhere in what the client was told."""
    told = [str(error), error.message, str(error.body)]
    if isinstance(error, openai.APIStatusError):
        told.append(error.response.text)
    assert not any(API_KEY in text for text in told), told


@pytest.fixture
async def azure_gateway(upstream: Upstream, gateway_factory: GatewayFactory) -> Gateway:
    """The gateway with `gpt-4o` routed to the fake Azure deployment `my-gpt4o` (one target: no retries)."""
    return await gateway_factory(azure_tree(upstream.url))


def sent_body(upstream: Upstream) -> dict[str, Any]:
    return orjson.loads(upstream.requests[-1]["body"])


# ---------------------------------------------------------------- tool calls


async def test_tool_calls_not_streamed(upstream: Upstream, azure_gateway: Gateway) -> None:
    upstream.handler = azure(
        json_handler(
            azure_completion(
                None,
                finish_reason="tool_calls",
                tool_calls=[tool_call("call_1", "Paris"), tool_call("call_2", "Lyon")],
                filters=None,
            )
        )
    )
    result = await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, tools=[WEATHER])
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = [(call.id, call.function.name, orjson.loads(call.function.arguments)) for call in choice.message.tool_calls]
    assert calls == [("call_1", "get_weather", {"city": "Paris"}), ("call_2", "get_weather", {"city": "Lyon"})]
    assert sent_body(upstream)["tools"] == [WEATHER]


TOOL_STREAM = [
    prompt_filter_chunk(),
    *tool_call_chunks(0, "call_1", ['{"', "city", '":"', "Par", 'is"}']),
    *tool_call_chunks(1, "call_2", ['{"city":', '"Lyon"}']),
    azure_chunk({}, finish_reason="tool_calls"),
]


async def test_tool_calls_streamed_arrive_in_pieces(upstream: Upstream, azure_gateway: Gateway) -> None:
    upstream.handler = azure_stream(TOOL_STREAM)
    stream = await azure_gateway.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER], stream=True
    )
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    async for item in stream:
        for choice in item.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": None, "name": None, "arguments": "", "pieces": 0})
                call["id"] = delta.id or call["id"]
                call["name"] = (delta.function and delta.function.name) or call["name"]
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
                    call["pieces"] += 1
    assert finish == "tool_calls"
    assert calls == {
        0: {"id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}', "pieces": 5},
        1: {"id": "call_2", "name": "get_weather", "arguments": '{"city":"Lyon"}', "pieces": 2},
    }
    assert sent_body(upstream)["stream"] is True


async def test_tool_calls_streamed_are_reassembled_by_the_sdk(upstream: Upstream, azure_gateway: Gateway) -> None:
    upstream.handler = azure_stream(TOOL_STREAM)
    async with azure_gateway.client().chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, tools=[WEATHER]
    ) as stream:
        final = await stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = [(call.id, call.function.name, call.function.arguments) for call in choice.message.tool_calls]
    assert calls == [("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "get_weather", '{"city":"Lyon"}')]


# ---------------------------------------------------------------- finish reasons and content filter annotations


@pytest.mark.parametrize("finish_reason", ["stop", "length", "tool_calls", "content_filter"])
async def test_each_finish_reason_reaches_the_client(
    upstream: Upstream, azure_gateway: Gateway, finish_reason: str
) -> None:
    client = azure_gateway.client()
    filters = FILTERED if finish_reason == "content_filter" else FILTERS
    tool_calls = [tool_call("call_1", "Paris")] if finish_reason == "tool_calls" else None
    upstream.handler = azure(
        json_handler(azure_completion("Hi", finish_reason=finish_reason, tool_calls=tool_calls, filters=filters))
    )
    result = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert result.choices[0].finish_reason == finish_reason and result.choices[0].message.content == "Hi"
    assert result.choices[0].model_extra["content_filter_results"] == filters  # Azure's annotation is the client's too

    upstream.handler = azure_stream(azure_text_stream(["H", "i"], finish_reason=finish_reason, filters=filters))
    chunks = [
        item async for item in await client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    ]
    ends = [choice for item in chunks for choice in item.choices if choice.finish_reason]
    assert [choice.finish_reason for choice in ends] == [finish_reason]
    assert ends[0].model_extra["content_filter_results"] == filters
    assert "".join(choice.delta.content or "" for item in chunks for choice in item.choices) == "Hi"


def identity(chunk: Any) -> tuple[str, str, int, str]:
    return chunk.id, chunk.object, chunk.created, chunk.model


STREAM_IDENTITY = ("chatcmpl-azure", "chat.completion.chunk", 1_727_000_000, MODEL_VERSION)


async def test_a_stream_opening_with_a_prompt_filter_annotation_passes_through(
    upstream: Upstream, azure_gateway: Gateway
) -> None:
    """Azure's prompt filter chunk has an empty id, object and model: it goes out as a chunk of the stream."""
    upstream.handler = azure_stream(azure_text_stream(["Bonjour", " from", " Azure"]))
    stream = await azure_gateway.client().chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [item async for item in stream]
    assert chunks[0].choices == [] and chunks[0].model_extra["prompt_filter_results"] == PROMPT_FILTERS
    assert {identity(item) for item in chunks} == {STREAM_IDENTITY}
    assert "".join(choice.delta.content or "" for item in chunks for choice in item.choices) == "Bonjour from Azure"
    assert [choice.finish_reason for item in chunks for choice in item.choices if choice.finish_reason] == ["stop"]
    usages = [(item.usage.prompt_tokens, item.usage.completion_tokens) for item in chunks if item.usage is not None]
    assert usages == [(20, 3)]
    assert sent_body(upstream)["stream_options"]["include_usage"] is True


async def test_the_last_content_filter_annotation_after_the_finish_reaches_the_client(
    upstream: Upstream, azure_gateway: Gateway
) -> None:
    """Azure's asynchronous filter annotates the end of the text after the finish chunk."""
    late = {
        "choices": [
            {
                "index": 0,
                "finish_reason": None,
                "content_filter_results": FILTERED,
                "content_filter_offsets": {"check_offset": 2, "start_offset": 0, "end_offset": 2},
            }
        ],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "usage": None,
    }
    upstream.handler = azure_stream([*azure_text_stream(["Hi"]), late])
    stream = await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    chunks = [item async for item in stream]
    last = chunks[-1].choices[0]
    assert last.finish_reason is None and last.model_extra["content_filter_results"] == FILTERED
    assert identity(chunks[-1]) == STREAM_IDENTITY and last.delta.content is None  # a chunk of the stream
    assert [choice.finish_reason for item in chunks for choice in item.choices if choice.finish_reason] == ["stop"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("stream", [False, True])
async def test_a_content_filter_400_is_a_bad_request_with_azures_message(
    upstream: Upstream, azure_gateway: Gateway, stream: bool
) -> None:
    message = (
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. "
        "Please modify your prompt and retry."
    )
    upstream.handler = error_handler(
        400,
        "content_filter",
        message,
        param="prompt",
        status=400,
        innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": FILTERED},
    )
    with pytest.raises(openai.BadRequestError) as raised:
        await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=stream)
    error = raised.value
    assert error.status_code == 400 and message in error.message
    assert error.body["message"] == message and error.code == "content_filter" and error.param == "prompt"
    assert_no_key(error)


async def test_a_429_is_a_rate_limit_error(upstream: Upstream, azure_gateway: Gateway) -> None:
    upstream.handler = error_handler(429, "429", RATE_LIMITED, headers={"retry-after": "2", "retry-after-ms": "2000"})
    with pytest.raises(openai.RateLimitError) as raised:
        await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    error = raised.value
    assert error.status_code == 429 and error.body["message"] == RATE_LIMITED
    assert len(upstream.requests) == 1  # the route has one target and no retries
    # so the gateway passes Azure's hints on for the SDK to follow, and does not forbid its retry
    assert error.response.headers["retry-after-ms"] == "2000" and error.response.headers["retry-after"] == "2"
    assert "x-should-retry" not in error.response.headers
    assert_no_key(error)


async def test_an_html_500_is_not_shown(upstream: Upstream, azure_gateway: Gateway) -> None:
    page = (
        "<!DOCTYPE html><html><head><title>500 - Internal server error.</title></head><body>Server Error</body></html>"
    )

    async def html(request: web.Request) -> web.Response:
        return web.Response(status=500, text=page, content_type="text/html")

    upstream.handler = azure(html)
    with pytest.raises(openai.InternalServerError) as raised:
        await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES)
    error = raised.value
    assert error.status_code == 500 and isinstance(error.body, dict)
    assert (
        "<html" not in error.message
        and "<html" not in error.response.text
        and "Server Error" not in error.response.text
    )
    assert "500" in error.body["message"]
    assert_no_key(error)


async def echo_key_json(request: web.Request) -> web.StreamResponse:
    return azure_error(
        401, "401", f"Access denied: the key {request.headers['api-key']} is not valid for this resource."
    )


async def echo_key_html(request: web.Request) -> web.StreamResponse:
    return web.Response(
        status=503, text=f"<html><body>api-key: {request.headers['api-key']}</body></html>", content_type="text/html"
    )


async def echo_key_mid_stream(request: web.Request) -> web.StreamResponse:
    error = {
        "error": {
            "message": f"Backend failed for api-key={request.headers['api-key']}",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }
    return await sse_handler(
        [prompt_filter_chunk(), azure_chunk({"role": "assistant", "content": "Hel"}), error], done=False
    )(request)


@pytest.mark.parametrize("echo", [echo_key_json, echo_key_html, echo_key_mid_stream])
async def test_the_api_key_never_reaches_the_client(upstream: Upstream, azure_gateway: Gateway, echo: Handler) -> None:
    """Upstream errors that echo the key (a proxy's page, a careless backend) reach the client without it."""
    upstream.handler = echo
    stream = echo is echo_key_mid_stream
    content = ""
    with pytest.raises(openai.APIError) as raised:
        result = await azure_gateway.client().chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=stream)
        async for item in result:
            content += "".join(choice.delta.content or "" for choice in item.choices)
    assert upstream.requests[-1]["headers"]["api-key"] == API_KEY  # the upstream had the key to echo
    assert_no_key(raised.value)
    if stream:
        assert content == "Hel" and raised.value.message.startswith("Backend failed for api-key=")
    else:
        assert isinstance(raised.value, openai.APIStatusError) and raised.value.status_code in (401, 503)
