"""POST /v1/responses through the gateway, driven by the real openai SDK: translated for the mock,
a chat-only fake and a fake Anthropic; forwarded to a fake that serves the Responses API."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, assert_event_valid, assert_spec_valid, openai_route_config
from fakes import chunk, completion, json_handler, sse_handler, text_stream
from test_anthropic_e2e import API_KEY as ANTHROPIC_KEY
from test_anthropic_e2e import MODEL as CLAUDE
from test_anthropic_e2e import message_handler
from test_metrics import fetch_metrics, samples, value
from test_responses_translation import WEATHER_TOOL, native_events

from gateway.config import ConfigError, parse_config
from gateway.stream.tokens import Tokenizers
from gateway.upstream.mock import REPLY

WORDS = [f" word{i}" for i in range(60)]
CALL = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}


def native_tree(upstream_url: str, **route: Any) -> dict[str, Any]:
    tree = openai_route_config(upstream_url, **route)
    tree["providers"]["up"]["responses_api"] = True
    return tree


def events_handler(events: list[dict[str, Any]], *, hang: bool = False) -> Any:
    """An upstream serving the Responses API: the events, each with its `event:` line."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(b"event: %s\ndata: %s\n\n" % (event["type"].encode(), orjson.dumps(event)))
        if not hang:
            await response.write_eof()
            return response
        await request.wait_for_disconnection()  # the gateway drops it after the cut
        return response

    return handle


async def raw_events(gateway: Gateway, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a streamed response, as they came, each checked against OpenAI's schema."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/v1/responses", json={**body, "stream": True}) as response,
    ):
        assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        kind, data = lines[0].removeprefix("event: "), orjson.loads(lines[1].removeprefix("data: "))
        assert kind == data["type"]
        assert_event_valid(data)
        events.append(data)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    return events


# ---------------------------------------------------------------- translated: the mock


async def test_the_mock_answers_through_responses_create_streamed_and_not(
    gateway_factory: GatewayFactory, tokenizers: Tokenizers
) -> None:
    gateway = await gateway_factory(
        {"providers": {"demo": {"kind": "mock"}}, "routes": [{"model": "demo", "provider": "demo"}]}
    )
    client = gateway.client()
    response = await client.responses.create(model="demo", input="Hello", instructions="Be brief.")
    assert response.status == "completed" and response.output_text == REPLY
    assert response.usage is not None and response.usage.output_tokens == tokenizers.for_model("demo").count(REPLY)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}/v1/responses", json={"model": "demo", "input": "Hi"}) as got,
    ):
        assert_spec_valid("Response", await got.json())
    text, last = "", None
    async for event in await client.responses.create(model="demo", input="Hello", stream=True):
        if event.type == "response.output_text.delta":
            text += event.delta
        last = event
    assert text == REPLY and last is not None and last.type == "response.completed"
    assert last.response.output_text == REPLY
    events = await raw_events(gateway, {"model": "demo", "input": "Hello"})
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"


# ---------------------------------------------------------------- translated: a chat completions upstream


async def test_max_output_tokens_cuts_exactly_and_the_response_is_incomplete(
    upstream: Upstream, routed: Gateway, tokenizers: Tokenizers
) -> None:
    counter = tokenizers.for_model("test-model")
    client = routed.client()
    upstream.handler = json_handler(
        completion("".join(WORDS), usage={"prompt_tokens": 5, "completion_tokens": 60, "total_tokens": 65})
    )
    response = await client.responses.create(model="test-model", input="Count", max_output_tokens=16)
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert (
        counter.count(response.output_text) == 16 and response.usage is not None and response.usage.output_tokens == 16
    )
    assert orjson.loads(upstream.requests[-1]["body"])["max_tokens"] == 16  # sent upstream, in the field it knows

    upstream.handler = sse_handler(text_stream(WORDS, usage=(5, 60)))
    stream = await client.responses.with_raw_response.create(
        model="test-model", input="Count", max_output_tokens=16, stream=True
    )
    assert stream.headers["x-gateway-max-tokens"] == "16"
    deltas, last = "", None
    async for event in stream.parse():
        if event.type == "response.output_text.delta":
            deltas += event.delta
        last = event
    assert counter.count(deltas) == 16
    assert last is not None and last.type == "response.incomplete"
    assert (
        last.response.incomplete_details is not None and last.response.incomplete_details.reason == "max_output_tokens"
    )
    assert last.response.usage is not None and last.response.usage.output_tokens == 16
    found = samples(await fetch_metrics(routed))
    assert value(found, "gateway_truncations_total", route="test-model") == 2
    assert value(found, "gateway_tokens_total", route="test-model", type="completion") == 32


async def test_function_tools_round_trip_through_a_chat_upstream(upstream: Upstream, routed: Gateway) -> None:
    client = routed.client()
    upstream.handler = sse_handler(
        [
            chunk({"role": "assistant", "content": None}),
            chunk({"tool_calls": [CALL]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
            chunk({}, finish_reason="tool_calls"),
        ]
    )
    async with client.responses.stream(model="test-model", input="Weather in Paris?", tools=[WEATHER_TOOL]) as stream:
        final = await stream.get_final_response()
    call = final.output[0]
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == '{"city":"Paris"}'
    sent = orjson.loads(upstream.requests[-1]["body"])
    assert sent["tools"][0]["function"]["name"] == "get_weather" and sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}

    upstream.handler = json_handler(completion("Sunny, 21 C."))
    answer = await client.responses.create(
        model="test-model",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'},
        ],
        tools=[WEATHER_TOOL],
    )
    assert answer.output_text == "Sunny, 21 C."
    messages = orjson.loads(upstream.requests[-1]["body"])["messages"]
    assert [message["role"] for message in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == "call_1" and messages[2]["tool_call_id"] == "call_1"


async def test_json_schema_output_is_asked_as_response_format(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = json_handler(completion('{"city": "Paris"}'))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = await routed.client().responses.create(
        model="test-model",
        input="Where?",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert orjson.loads(response.output_text) == {"city": "Paris"}
    sent = orjson.loads(upstream.requests[-1]["body"])
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"background": True}, "background"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"stream": "yes"}, "stream"),
        ({"input": {"text": "x"}}, "input"),
    ],
)
async def test_what_the_upstream_cannot_do_is_a_400_and_nothing_is_sent(
    upstream: Upstream, routed: Gateway, extra: dict[str, Any], param: str
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{routed.url}/api/v1/responses", json={"model": "test-model", "input": "hi", **extra}) as response,
    ):
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert upstream.requests == []


async def test_an_error_after_the_start_is_an_error_event_then_the_end(upstream: Upstream, routed: Gateway) -> None:
    upstream.handler = sse_handler(
        [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), b"data: {broken\n\n"], done=False
    )
    events = await raw_events(routed, {"model": "test-model", "input": "hi"})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "upstream_protocol_error"
    assert "response.completed" not in [event["type"] for event in events]


# ---------------------------------------------------------------- translated: Anthropic


async def test_an_anthropic_upstream_answers_responses(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(
        {
            "providers": {"claude": {"kind": "anthropic", "base_url": upstream.url, "api_key": ANTHROPIC_KEY}},
            "routes": [{"model": "claude", "provider": "claude", "upstream_model": CLAUDE}],
        }
    )
    upstream.handler = message_handler([{"type": "text", "text": "Bonjour."}], output_tokens=3)
    response = await gateway.client().responses.create(
        model="claude", input="Say hi in French", instructions="Be brief."
    )
    assert response.output_text == "Bonjour." and response.status == "completed"
    assert response.usage is not None and response.usage.output_tokens == 3
    sent = orjson.loads(upstream.requests[-1]["body"])
    assert sent["system"] == "Be brief." and sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Say hi in French"}]}
    ]


# ---------------------------------------------------------------- forwarded: an upstream that serves the Responses API


async def test_a_responses_upstream_gets_the_request_as_it_came_and_its_answer_goes_on(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(native_tree(upstream.url, upstream_model="gpt-4.1"))
    answer = native_events([" Hi"])[-1]["response"]
    payload = orjson.dumps(answer)
    upstream.handler = json_handler(payload)
    body = {
        "model": "test-model",
        "input": "hi",
        "previous_response_id": "resp_prev",
        "store": True,
        "tools": [{"type": "web_search"}],
    }
    async with aiohttp.ClientSession() as http, http.post(f"{gateway.url}/v1/responses", json=body) as response:
        assert response.status == 200 and await response.read() == payload
    sent = upstream.requests[-1]
    assert sent["path"] == "/v1/responses"
    assert orjson.loads(sent["body"]) == {**body, "model": "gpt-4.1", "max_output_tokens": 4096}
    assert sent["headers"]["Authorization"] == "Bearer sk-upstream-secret-key"


async def test_a_responses_upstream_that_ignores_the_limit_is_cut_streamed_and_not(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Tokenizers
) -> None:
    gateway = await gateway_factory(native_tree(upstream.url))
    counter = tokenizers.for_model("test-model")
    client = gateway.client()
    upstream.handler = events_handler(native_events(WORDS), hang=True)
    deltas, last = "", None
    async for event in await client.responses.create(
        model="test-model", input="Count", max_output_tokens=16, stream=True
    ):
        if event.type == "response.output_text.delta":
            deltas += event.delta
        last = event
    assert counter.count(deltas) == 16 and last is not None and last.type == "response.incomplete"
    assert (
        last.response.incomplete_details is not None and last.response.incomplete_details.reason == "max_output_tokens"
    )
    assert last.response.output[0].status == "incomplete"
    assert orjson.loads(upstream.requests[-1]["body"])["max_output_tokens"] == 16
    upstream.handler = events_handler(native_events(WORDS), hang=True)
    await raw_events(gateway, {"model": "test-model", "input": "Count", "max_output_tokens": 16})

    upstream.handler = json_handler(native_events(WORDS)[-1]["response"])
    whole = await client.responses.create(model="test-model", input="Count", max_output_tokens=16)
    assert whole.status == "incomplete" and counter.count(whole.output_text) == 16
    assert whole.usage is not None and whole.usage.output_tokens == 16


async def test_a_responses_upstreams_stream_within_the_limit_passes_unchanged(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(native_tree(upstream.url))
    events = native_events(["Hello", " there"])
    upstream.handler = events_handler(events)
    assert await raw_events(gateway, {"model": "test-model", "input": "hi"}) == events


async def test_a_responses_upstreams_error_event_reaches_the_client_without_the_key(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(native_tree(upstream.url))
    error = {
        "type": "error",
        "code": "server_error",
        "message": "boom near sk-upstream-secret-key",
        "param": None,
        "sequence_number": 5,
    }
    upstream.handler = events_handler([*native_events(["Hel", "lo"])[:5], error])
    events = await raw_events(gateway, {"model": "test-model", "input": "hi"})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "server_error"
    assert "sk-upstream-secret-key" not in orjson.dumps(events).decode() and "[redacted]" in events[-1]["message"]

    upstream.handler = events_handler([{**error, "code": "rate_limit_exceeded", "sequence_number": 0}])
    with pytest.raises(openai.RateLimitError):  # before the answer began: the attempt's failure, with its status
        await gateway.client().responses.create(model="test-model", input="hi", stream=True)


def test_responses_api_is_on_for_openais_own_api_and_only_for_openai_and_azure() -> None:
    def load(providers: dict[str, Any]) -> Any:
        tree = {"providers": providers, "routes": [{"model": "m", "provider": next(iter(providers))}]}
        return parse_config(tree, source="test.yaml", env={}, overrides={})

    assert load({"oa": {"kind": "openai", "base_url": "https://api.openai.com/v1"}}).providers["oa"].responses_api
    assert not load({"v": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}}).providers["v"].responses_api
    assert (
        not load({"oa": {"kind": "openai", "base_url": "https://api.openai.com/v1", "responses_api": False}})
        .providers["oa"]
        .responses_api
    )
    with pytest.raises(ConfigError) as raised:
        load({"c": {"kind": "anthropic", "responses_api": True}})
    assert "test.yaml: providers.c.responses_api: only openai and azure" in str(raised.value)
