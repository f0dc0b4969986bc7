"""The OpenAI API through the gateway, driven by the real openai SDK and raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import openai
import orjson
import pytest
from conftest import Gateway, GatewayFactory, Upstream, assert_valid, openai_route_config
from fakes import chunk, completion, json_handler, sse_handler, text_stream

from gateway import __version__

MESSAGES = [{"role": "user", "content": "Say hello"}]


# ------------------------------------------------------------------ the SDK


async def test_non_streaming_through_the_sdk(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = json_handler(
        completion("Hello there!", usage={"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    )
    result = await routed.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert result.choices[0].message.content == "Hello there!"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None and result.usage.total_tokens == 12
    sent = orjson.loads(upstream.requests[0]["body"])
    assert upstream.requests[0]["path"] == "/v1/chat/completions"
    assert sent["model"] == "test-model" and sent["messages"] == MESSAGES


async def test_streaming_through_the_sdk(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = sse_handler(text_stream(["Hel", "lo", " there", "!"], usage=(9, 4)))
    stream = await routed.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    pieces, finish = [], None
    async for item in stream:
        assert item.object == "chat.completion.chunk"
        for choice in item.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    assert "".join(pieces) == "Hello there!"
    assert finish == "stop"


async def test_streams_and_completions_share_one_keep_alive_upstream_connection(
    upstream: Upstream, routed: Gateway
) -> None:
    client = routed.client()
    for stream in (True, False, True, False):
        upstream.handler = sse_handler(text_stream(["Hi", "!"])) if stream else json_handler(completion("Hi!"))
        if stream:
            async for _ in await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True):
                pass
        else:
            await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert len(upstream.requests) == 4
    assert len({request["peer"] for request in upstream.requests}) == 1


async def test_every_field_is_forwarded_untouched_and_the_client_key_is_not(
    upstream: Upstream, routed: Gateway
) -> None:
    upstream.handler = json_handler(completion("ok"))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    await routed.client().chat.completions.create(
        model="test-model",
        messages=MESSAGES,
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        n=1,
        stop=["END"],
        temperature=0.3,
        seed=42,
        logprobs=True,
        top_logprobs=2,
        user="user-1",
        extra_body={"vendor_specific": {"keep": ["me", 1]}},
    )
    sent = orjson.loads(upstream.requests[0]["body"])
    for key, value in {
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "n": 1,
        "stop": ["END"],
        "temperature": 0.3,
        "seed": 42,
        "logprobs": True,
        "top_logprobs": 2,
        "user": "user-1",
        "vendor_specific": {"keep": ["me", 1]},
    }.items():
        assert sent[key] == value, key
    headers = upstream.requests[0]["headers"]
    assert headers["Authorization"] == "Bearer sk-upstream-secret-key"
    assert "sk-client-key-never-forwarded" not in str(list(headers.items()))


async def test_upstream_requests_name_the_gateway_and_configured_headers_replace_defaults(
    upstream: Upstream, routed: Gateway, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion())
    await routed.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert upstream.requests[-1]["headers"].getall("User-Agent") == [f"llm-gateway/{__version__}"]

    configured = {"user-agent": "acme-proxy/2", "content-type": "application/json; charset=utf-8", "X-Team": "search"}
    gateway = await gateway_factory(openai_route_config(upstream.url, provider_options={"headers": configured}))
    await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES)
    headers = upstream.requests[-1]["headers"]
    assert headers.getall("User-Agent") == ["acme-proxy/2"]
    assert headers.getall("Content-Type") == ["application/json; charset=utf-8"]
    assert headers["X-Team"] == "search" and headers["Authorization"] == "Bearer sk-upstream-secret-key"


async def test_tool_calls_streamed_and_not(upstream: Upstream, routed: Gateway) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    upstream.handler = json_handler(completion(None, finish_reason="tool_calls", tool_calls=[call]))
    client = routed.client()
    result = await client.chat.completions.create(model="test-model", messages=MESSAGES)
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}'

    upstream.handler = sse_handler(
        [
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                }
            ),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    stream = await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    arguments, name, finish = "", None, None
    async for item in stream:
        for choice in item.choices:
            for tool_call in choice.delta.tool_calls or []:
                name = tool_call.function.name or name
                arguments += tool_call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert (name, arguments, finish) == ("get_weather", '{"city": "Paris"}', "tool_calls")


async def test_route_upstream_model_and_default_model(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    upstream.handler = json_handler(completion("ok"))
    tree = openai_route_config(upstream.url, upstream_model="real-upstream-name")
    tree["default_model"] = "test-model"
    gateway = await gateway_factory(tree)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/v1/chat/completions", json={"messages": MESSAGES}) as response:
            assert response.status == 200
    assert orjson.loads(upstream.requests[0]["body"])["model"] == "real-upstream-name"


async def test_globs_route_in_file_order_and_exact_names_win(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    upstream.handler = json_handler(completion("from upstream"))
    tree = openai_route_config(upstream.url)
    tree["routes"] = [
        {"model": "gpt-*", "provider": "up"},
        {"model": "gpt-4*", "provider": "demo"},
        {"model": "gpt-4o", "provider": "demo"},
    ]
    client = (await gateway_factory(tree)).client()
    assert (await client.chat.completions.create(model="gpt-4.1", messages=MESSAGES)).choices[
        0
    ].message.content == "from upstream"
    exact = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert exact.choices[0].message.content.startswith("Hello! I am the gateway's built-in mock model.")
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="claude-x", messages=MESSAGES)


# ------------------------------------------------------------------ raw HTTP


async def test_quick_start_paths_models_health_and_request_ids(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = json_handler(completion("ok"))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{routed.url}/api/v1/chat/completions",
            json={"model": "test-model", "messages": MESSAGES},
            headers={"x-request-id": "req-abc-123"},
        ) as response:
            assert response.status == 200
            assert response.headers["x-request-id"] == "req-abc-123"
            assert (await response.json())["choices"][0]["message"]["content"] == "ok"
        assert upstream.requests[0]["headers"]["x-request-id"] == "req-abc-123"

        for path in ("/v1/models", "/api/v1/models"):
            async with http.get(f"{routed.url}{path}") as response:
                listing = await response.json()
                assert response.status == 200 and response.headers["x-request-id"]
                assert [model["id"] for model in listing["data"]] == ["test-model", "demo"]
                assert_valid("ListModelsResponse", listing)
        async with http.get(f"{routed.url}/v1/models/demo") as response:
            assert (await response.json())["id"] == "demo"
            assert_valid("Model", await response.json())
        async with http.get(f"{routed.url}/v1/models/unknown") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "model_not_found"
        async with http.get(f"{routed.url}/health") as response:
            assert (await response.json())["status"] == "ok"
        # any printable client id is kept (traces use '/', '=' and ' '); others get a new one
        for sent, kept in (("abc/def== 1", True), ("x" * 257, False), ("caf\u00e9", False)):
            async with http.get(f"{routed.url}/health", headers={"x-request-id": sent}) as response:
                assert (response.headers["x-request-id"] == sent) == kept, sent


async def test_demo_route_is_valid_openai_json_and_sse(routed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"model": "demo", "messages": MESSAGES, "max_tokens": 12}
        async with http.post(f"{routed.url}/v1/chat/completions", json=body) as response:
            assert_valid("CreateChatCompletionResponse", await response.json())
        async with http.post(
            f"{routed.url}/v1/chat/completions",
            json={**body, "stream": True, "stream_options": {"include_usage": True}},
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = await response.read()
    events = [event for event in raw.split(b"\n\n") if event]
    assert events[-1] == b"data: [DONE]"
    for event in events[:-1]:
        assert event.startswith(b"data: ") and b"\n" not in event
        assert_valid("CreateChatCompletionStreamResponse", orjson.loads(event[6:]))


async def test_cors_preflight_and_headers(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    tree = openai_route_config(upstream.url)
    tree["server"] = {"cors_origins": ["http://localhost:3000"]}
    gateway = await gateway_factory(tree)
    async with aiohttp.ClientSession() as http:
        preflight = {
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        async with http.options(f"{gateway.url}/v1/chat/completions", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            assert "POST" in response.headers["Access-Control-Allow-Methods"]
            assert "authorization" in response.headers["Access-Control-Allow-Headers"]
        async with http.options(
            f"{gateway.url}/v1/chat/completions", headers={**preflight, "Origin": "http://evil.example"}
        ) as response:
            assert response.status == 403 and "Access-Control-Allow-Origin" not in response.headers
        async with http.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Origin": "http://localhost:3000"},
            json={"model": "demo", "messages": MESSAGES, "stream": True},
        ) as response:
            assert response.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            await response.read()
        exposed = {name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
        # what the OpenAI SDK reads in a browser to retry, and the rate limits' and budget's headers
        assert {"retry-after", "retry-after-ms", "x-should-retry", "x-request-id"} <= exposed
        assert {"x-ratelimit-remaining-requests", "x-ratelimit-reset-tokens", "x-gateway-budget-remaining"} <= exposed


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "test-model"}, "messages"),
        ({"model": "test-model", "messages": []}, "messages"),
        ({"model": "test-model", "messages": ["hi"]}, "messages[0]"),
        ({"model": "test-model", "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": 7, "messages": MESSAGES}, "model"),
        ({"model": "test-model", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "test-model", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
        ({"model": "test-model", "messages": MESSAGES, "max_completion_tokens": 2.5}, "max_completion_tokens"),
    ],
)
async def test_bad_fields_are_400_naming_the_field(routed: Gateway, upstream: Upstream, body: dict, param: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{routed.url}/v1/chat/completions", json=body) as response:
            error = (await response.json())["error"]
    assert response.status == 400
    assert error["param"] == param and error["type"] == "invalid_request_error" and param in error["message"]
    assert upstream.requests == []


async def test_bad_json_and_too_large_bodies(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    tree = openai_route_config(upstream.url)
    tree["server"] = {"max_body_bytes": 2048}
    gateway = await gateway_factory(tree)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{gateway.url}/v1/chat/completions", data=b"{not json") as response:
            assert response.status == 400 and "JSON" in (await response.json())["error"]["message"]
        big = {"model": "test-model", "messages": [{"role": "user", "content": "x" * 4096}]}
        async with http.post(f"{gateway.url}/v1/chat/completions", json=big) as response:
            assert response.status == 413 and (await response.json())["error"]["code"] == "payload_too_large"
    with pytest.raises(openai.APIStatusError) as raised:
        await gateway.client().chat.completions.create(model="test-model", messages=big["messages"])
    assert raised.value.status_code == 413


async def test_unknown_model_is_404_model_not_found(routed: Gateway) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        await routed.client().chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert raised.value.code == "model_not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_upstream_errors_keep_their_status_and_message(upstream: Upstream, routed: Gateway, stream: bool) -> None:
    client = routed.client()
    upstream.handler = json_handler(
        {"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": "rate_limit_exceeded"}},
        status=429,
    )
    with pytest.raises(openai.RateLimitError) as raised:
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=stream)
    assert raised.value.code == "rate_limit_exceeded" and "Rate limit reached" in raised.value.message

    upstream.handler = json_handler(
        {
            "error": {
                "message": "Invalid 'messages'",
                "type": "invalid_request_error",
                "param": "messages",
                "code": None,
            }
        },
        status=400,
    )
    with pytest.raises(openai.BadRequestError) as bad:
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=stream)
    assert bad.value.param == "messages"

    upstream.handler = json_handler(
        "<html><body><h1>502 Bad Gateway</h1></body></html>", status=502, content_type="text/html"
    )
    with pytest.raises(openai.InternalServerError) as html:
        await client.chat.completions.create(model="test-model", messages=MESSAGES, stream=stream)
    assert html.value.status_code == 502 and "<html" not in str(html.value.body) and "HTTP 502" in html.value.message


async def test_upstream_error_that_echoes_the_api_key_is_redacted(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = json_handler(
        {"error": {"message": "Incorrect API key provided: sk-upstream-secret-key", "code": "invalid_api_key"}},
        status=401,
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{routed.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES}) as response,
    ):
        text = await response.text()
    assert response.status == 401 and "sk-upstream-secret-key" not in text and "[redacted]" in text


async def post_raw(gateway: Gateway, *, stream: bool) -> tuple[int, dict]:
    """The client's HTTP status and error, read by aiohttp (which takes any three-digit status)."""
    body = {"model": "test-model", "messages": MESSAGES, "stream": stream}
    async with aiohttp.ClientSession() as http, http.post(f"{gateway.url}/v1/chat/completions", json=body) as response:
        return response.status, (await response.json(content_type=None))["error"]


PROTOCOL_ERROR = "upstream_protocol_error"


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        *[(1000, "1000"), (99, "99"), (204, "204"), (200, "200"), (0, "0"), (399, "399"), (600, "600")],
        *[(True, "true"), ("429", '"429"'), (429.0, "429.0"), ({"code": 429}, '{"code":429}')],
    ],
)
async def test_an_error_events_status_that_is_not_an_error_status_is_a_502(
    upstream: Upstream, routed: Gateway, status: object, shown: str
) -> None:
    """The first event, an error with a status no client should get, is a protocol error whose
    message says what the upstream sent, and keeps its own message."""
    upstream.handler = sse_handler([{"error": {"message": "Model overloaded", "status": status, "code": "busy"}}])
    assert await post_raw(routed, stream=True) == (
        502,
        {
            "message": f"The upstream sent an error with status {shown}, not an HTTP error status (400-599): "
            "Model overloaded",
            "type": "server_error",
            "param": None,
            "code": PROTOCOL_ERROR,
        },
    )
    with pytest.raises(openai.InternalServerError) as raised:
        await collect_stream(routed)
    assert raised.value.status_code == 502 and raised.value.code == PROTOCOL_ERROR


@pytest.mark.parametrize(("status", "code"), [(400, "busy"), (429, "busy"), (599, "busy"), (None, "busy")])
async def test_an_error_events_error_status_is_the_clients(
    upstream: Upstream, routed: Gateway, status: int | None, code: str
) -> None:
    """An error status (400-599) is the client's; with none given, 502 with the upstream's code."""
    error = {"message": "Model overloaded", "code": "busy"} | ({"status": status} if status else {})
    upstream.handler = sse_handler([{"error": error}], done=False)
    client_status, shown = await post_raw(routed, stream=True)
    assert (client_status, shown["message"], shown["code"]) == (status or 502, "Model overloaded", code)


async def collect_stream(gateway: Gateway) -> None:
    stream = await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES, stream=True)
    async for _ in stream:
        pass


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("status", [600, 999])
async def test_an_upstream_status_above_599_is_a_502(
    upstream: Upstream, routed: Gateway, stream: bool, status: int
) -> None:
    upstream.handler = json_handler({"error": {"message": "Quota exceeded", "code": "quota"}}, status=status)
    assert await post_raw(routed, stream=stream) == (
        502,
        {
            "message": f"The upstream sent an error with status {status}, not an HTTP error status (400-599): "
            "Quota exceeded",
            "type": "server_error",
            "param": None,
            "code": PROTOCOL_ERROR,
        },
    )
    upstream.handler = json_handler({"error": {"message": "Quota exceeded", "code": "quota"}}, status=599)
    assert (await post_raw(routed, stream=stream))[0] == 599


@contextlib.asynccontextmanager
async def raw_upstream(status_line: bytes, body: bytes) -> AsyncIterator[str]:
    """An upstream that answers every request with `status_line` and a JSON `body`, as written."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")),
            0,
        )
        await reader.readexactly(length)
        writer.write(
            b"%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status_line, len(body), body)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_status_below_200_is_a_502(gateway_factory: GatewayFactory, stream: bool) -> None:
    """A status line of 099, which aiohttp's client takes as a final answer, is no success."""
    body = orjson.dumps({"error": {"message": "Quota exceeded"}})
    async with raw_upstream(b"HTTP/1.1 099 Odd", body) as url:
        gateway = await gateway_factory(openai_route_config(url))
        status, error = await post_raw(gateway, stream=stream)
    assert (status, error["code"]) == (502, PROTOCOL_ERROR)
    assert error["message"] == (
        "The upstream sent an error with status 99, not an HTTP error status (400-599): Quota exceeded"
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_a_success_that_is_only_an_error_is_a_502_that_keeps_its_message(
    upstream: Upstream, routed: Gateway, stream: bool
) -> None:
    upstream.handler = json_handler(
        {"error": {"message": "Incorrect API key provided: sk-upstream-secret-key", "code": "invalid_api_key"}}
    )
    assert await post_raw(routed, stream=stream) == (
        502,
        {
            "message": "The upstream sent an error with status 200, not an HTTP error status (400-599): "
            "Incorrect API key provided: [redacted]",
            "type": "server_error",
            "param": None,
            "code": PROTOCOL_ERROR,
        },
    )


async def test_a_whole_completion_to_a_streamed_request_is_a_502_that_says_so(
    upstream: Upstream, routed: Gateway
) -> None:
    upstream.handler = json_handler(completion("Hi!"))
    status, error = await post_raw(routed, stream=True)
    assert (status, error["code"]) == (502, PROTOCOL_ERROR)
    assert error["message"] == "The upstream answered a streamed request with a whole completion, not an event stream."


async def test_unreachable_upstream_is_502(gateway_factory: GatewayFactory, unused_tcp_port: int) -> None:
    gateway = await gateway_factory(openai_route_config(f"http://127.0.0.1:{unused_tcp_port}"))
    with pytest.raises(openai.InternalServerError) as raised:
        await gateway.client().chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 502 and raised.value.code == "upstream_unreachable"
    assert "sk-upstream-secret-key" not in str(raised.value.body)


async def test_unknown_path_is_an_openai_shaped_404(routed: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{routed.url}/v1/nothing-here") as response:
            assert response.status == 404
            assert set((await response.json())["error"]) == {"message", "type", "param", "code"}
        async with http.get(f"{routed.url}/v1/chat/completions") as response:
            assert response.status == 405 and "error" in await response.json()


async def test_a_gateway_bug_is_an_openai_shaped_500_that_hides_the_details(
    routed: Gateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail sk-upstream-secret-key")

    monkeypatch.setattr("gateway.api.chat.parse_chat_request", broken)
    with pytest.raises(openai.InternalServerError) as raised:
        await routed.client(max_retries=0).chat.completions.create(model="test-model", messages=MESSAGES)
    assert raised.value.status_code == 500 and raised.value.code == "internal_error"
    assert "internal detail" not in str(raised.value.body)
    assert any(record.exc_info and "internal detail" in str(record.exc_info[1]) for record in caplog.records)


async def test_an_unchanged_completion_is_passed_on_byte_for_byte(upstream: Upstream, routed: Gateway) -> None:
    original = orjson.dumps(
        {
            **completion("Hi!", usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
            "service_tier": "default",
            "x_vendor": {"kept": [1, 2]},
        }
    )
    upstream.handler = json_handler(original)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{routed.url}/v1/chat/completions", json={"model": "test-model", "messages": MESSAGES}) as response,
    ):
        assert await response.read() == original
