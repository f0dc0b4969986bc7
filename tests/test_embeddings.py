"""POST /v1/embeddings through the gateway: the openai SDK and LangChain's OpenAIEmbeddings,
against the mock, fake OpenAI and Azure upstreams on loopback, and an Anthropic route."""

from __future__ import annotations

import base64
import logging
from array import array
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from conftest import Gateway, GatewayFactory, Upstream, openai_route_config
from fakes import json_handler
from langchain_openai import OpenAIEmbeddings
from test_limits_e2e import wait_for
from test_metrics import fetch_metrics, samples, value

from gateway.stream.tokens import Tokenizers

UPSTREAM_KEY = "sk-upstream-secret-key"


def embeddings_body(vectors: list[Any], *, prompt_tokens: int | None = 5) -> dict[str, Any]:
    body: dict[str, Any] = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": "text-embedding-3-small",
    }
    if prompt_tokens is not None:
        body["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return body


@pytest.fixture
async def mocked(gateway_factory: GatewayFactory) -> Gateway:
    """The `demo` route on the built-in mock, and `claude` on an Anthropic provider."""
    return await gateway_factory(
        {
            "providers": {"demo": {"kind": "mock"}, "claude": {"kind": "anthropic", "api_key": "sk-ant-0123456789"}},
            "routes": [{"model": "demo", "provider": "demo"}, {"model": "claude", "provider": "claude"}],
        }
    )


# ---------------------------------------------------------------- the mock, through the SDK


async def test_the_mock_gives_the_same_vector_for_the_same_input_in_float_and_base64(
    mocked: Gateway, tokenizers: Tokenizers
) -> None:
    client = mocked.client()
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    # the SDK asks for base64 when no format is given, and decodes it
    first = await client.embeddings.create(model="demo", input=texts, dimensions=64)
    again = await client.embeddings.create(model="demo", input=texts, dimensions=64, encoding_format="float")
    assert [len(item.embedding) for item in first.data] == [64, 64]
    assert [item.embedding for item in first.data] == [item.embedding for item in again.data]
    assert first.data[0].embedding != first.data[1].embedding
    assert abs(sum(x * x for x in first.data[0].embedding) - 1.0) < 1e-5  # unit length
    expected = sum(tokenizers.for_model("demo").count(text) for text in texts)
    assert first.usage.prompt_tokens == expected and first.usage.total_tokens == expected
    default = await client.embeddings.create(model="demo", input="one", encoding_format="float")
    assert len(default.data[0].embedding) == 1536


async def test_base64_goes_to_the_client_as_the_upstream_sent_it(mocked: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"model": "demo", "input": [[1, 2, 3], [4, 5]], "encoding_format": "base64", "dimensions": 4}
        async with http.post(f"{mocked.url}/v1/embeddings", json=body) as response:
            assert response.status == 200
            answer = await response.json()
        body["encoding_format"] = "float"
        async with http.post(f"{mocked.url}/api/v1/embeddings", json=body) as response:
            floats = await response.json()
    assert answer["object"] == "list" and answer["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
    for encoded, plain in zip(answer["data"], floats["data"], strict=True):
        assert isinstance(encoded["embedding"], str)
        assert array("f", base64.b64decode(encoded["embedding"])).tolist() == plain["embedding"]


# ---------------------------------------------------------------- OpenAI and Azure upstreams


async def test_the_request_is_forwarded_intact_and_the_answer_passes_through_byte_for_byte(
    upstream: Upstream, routed: Gateway
) -> None:
    answer = orjson.dumps(embeddings_body(["AAAAAAAAgD8=", [0.5, -0.25]], prompt_tokens=7)) + b" "
    upstream.handler = json_handler(answer)
    request = {
        "model": "test-model",
        "input": [[9906, 1917], [1, 2]],
        "encoding_format": "base64",
        "dimensions": 2,
        "user": "user-7",
        "vendor_extension": {"keep": True},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{routed.url}/v1/embeddings", json=request, headers={"Authorization": "Bearer sk-client"}) as got,
    ):
        assert got.status == 200
        assert await got.read() == answer
        assert got.headers["x-gateway-provider"] == "up" and got.headers["x-gateway-attempts"] == "1"
    sent = upstream.requests[0]
    assert sent["path"] == "/v1/embeddings"
    assert orjson.loads(sent["body"]) == request
    assert sent["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"


@pytest.mark.parametrize("reported", [None, -1, 10**12], ids=["none", "negative", "more than the input's bytes"])
async def test_the_upstream_model_name_is_sent_and_the_tokens_are_counted_when_it_gives_none_that_could_be_true(
    upstream: Upstream, gateway_factory: GatewayFactory, tokenizers: Tokenizers, reported: int | None
) -> None:
    gateway = await gateway_factory(openai_route_config(upstream.url, upstream_model="text-embedding-3-small"))
    upstream.handler = json_handler(embeddings_body([[0.1, 0.2]], prompt_tokens=reported))
    await gateway.client().embeddings.create(model="test-model", input="How many tokens is this?")
    assert orjson.loads(upstream.requests[0]["body"])["model"] == "text-embedding-3-small"
    found = samples(await fetch_metrics(gateway))
    counted = tokenizers.for_model("text-embedding-3-small").count("How many tokens is this?")
    assert value(found, "gateway_tokens_total", route="test-model", type="prompt") == counted


async def test_azure_embeddings_go_to_the_deployment_with_its_key(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(
        {
            "providers": {
                "az": {
                    "kind": "azure",
                    "base_url": upstream.url,
                    "api_key": "azure-key-0123456789",
                    "api_version": "2024-10-21",
                }
            },
            "routes": [{"model": "embed", "targets": [{"provider": "az", "deployment": "emb-prod"}]}],
        }
    )
    upstream.handler = json_handler(embeddings_body([[1.0, 0.0]]))
    result = await gateway.client().embeddings.create(model="embed", input="hi", encoding_format="float")
    assert result.data[0].embedding == [1.0, 0.0]
    sent = upstream.requests[0]
    assert sent["path"] == "/openai/deployments/emb-prod/embeddings"
    assert sent["query"] == {"api-version": "2024-10-21"}
    assert sent["headers"]["api-key"] == "azure-key-0123456789" and "Authorization" not in sent["headers"]


async def test_an_anthropic_route_is_a_clear_400(mocked: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await mocked.client().embeddings.create(model="claude", input="hi")
    error = raised.value.body
    assert isinstance(error, dict) and error["param"] == "model"
    assert "Anthropic" in error["message"] and "no embeddings API" in error["message"]


# ---------------------------------------------------------------- retries, fallbacks, failures


async def test_a_failed_attempt_is_retried_then_falls_back(upstream: Upstream, gateway_factory: GatewayFactory) -> None:
    tree = openai_route_config(upstream.url, retries=1, fallbacks=["demo"])
    gateway = await gateway_factory(tree)
    answers = iter([503, 200])

    async def flaky(request: web.Request) -> web.Response:
        status = next(answers)
        if status != 200:
            return web.json_response({"error": {"message": "overloaded"}}, status=status)
        return web.json_response(embeddings_body([[0.5]]))

    upstream.handler = flaky
    async with aiohttp.ClientSession() as http:
        body = {"model": "test-model", "input": "x", "encoding_format": "float"}
        async with http.post(f"{gateway.url}/v1/embeddings", json=body) as response:
            assert response.status == 200 and response.headers["x-gateway-attempts"] == "2"
            assert (await response.json())["data"][0]["embedding"] == [0.5]
        upstream.handler = json_handler({"error": {"message": "down"}}, status=500)
        async with http.post(f"{gateway.url}/v1/embeddings", json=body) as response:
            assert response.status == 200, await response.text()
            assert response.headers["x-gateway-provider"] == "demo"  # the fallback route, on the mock
            assert len((await response.json())["data"][0]["embedding"]) == 1536


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (b"not json", "upstream_protocol_error"),
        ({"object": "list", "data": [{"index": 0, "embedding": 5}]}, "upstream_protocol_error"),
        ({"data": "nope"}, "upstream_protocol_error"),
    ],
)
async def test_an_answer_that_is_not_embeddings_is_a_502(
    upstream: Upstream, routed: Gateway, answer: Any, code: str
) -> None:
    upstream.handler = json_handler(answer)
    with pytest.raises(openai.APIStatusError) as raised:
        await routed.client().embeddings.create(model="test-model", input="x")
    assert raised.value.status_code == 502 and raised.value.code == code


@pytest.mark.parametrize("indexes", [[0], [0, 1, 2], [0, 0], [1, 2]], ids=["one short", "one more", "twice", "from 1"])
async def test_an_answer_without_one_embedding_for_each_input_is_a_502(
    upstream: Upstream, routed: Gateway, indexes: list[int]
) -> None:
    """A client pairs vectors with its inputs by index: a missing or extra one must not pass."""
    body = embeddings_body([[0.1]] * len(indexes))
    for item, index in zip(body["data"], indexes, strict=True):
        item["index"] = index
    upstream.handler = json_handler(body)
    with pytest.raises(openai.APIStatusError) as raised:
        await routed.client().embeddings.create(model="test-model", input=["first", "second"])
    assert raised.value.status_code == 502 and "embeddings for 2 inputs" in raised.value.message


async def test_a_slow_upstream_is_cut_off_at_the_routes_timeout(
    upstream: Upstream, gateway_factory: GatewayFactory
) -> None:
    gateway = await gateway_factory(openai_route_config(upstream.url, timeout=0.3))
    upstream.handler = json_handler(embeddings_body([[0.5]]), delay=5)
    with pytest.raises(openai.APIStatusError) as raised:
        await gateway.client().embeddings.create(model="test-model", input="x")
    assert raised.value.status_code == 504 and raised.value.code == "timeout"
    await wait_for(lambda: upstream.disconnects, timeout=2)  # the upstream connection was dropped


async def test_an_upstream_error_keeps_its_status_and_hides_the_providers_key(
    upstream: Upstream, routed: Gateway
) -> None:
    upstream.handler = json_handler(
        {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "invalid_request_error"}},
        status=401,
    )
    with pytest.raises(openai.AuthenticationError) as raised:
        await routed.client().embeddings.create(model="test-model", input="x")
    assert UPSTREAM_KEY not in str(raised.value.body) and "[redacted]" in str(raised.value.body)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "demo"}, "input"),
        ({"model": "demo", "input": ""}, "input"),
        ({"model": "demo", "input": []}, "input"),
        ({"model": "demo", "input": [""]}, "input[0]"),
        ({"model": "demo", "input": ["a", []]}, "input[1]"),
        ({"model": "demo", "input": ["a", [1]]}, "input"),
        ({"model": "demo", "input": [True]}, "input[0]"),
        ({"model": "demo", "input": [[1, -2]]}, "input[0]"),
        ({"model": "demo", "input": {"text": "a"}}, "input"),
        ({"model": "demo", "input": ["a"] * 2049}, "input"),
        ({"model": "demo", "input": "a", "encoding_format": "hex"}, "encoding_format"),
        ({"model": "demo", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "demo", "input": "a", "dimensions": "8"}, "dimensions"),
        ({"model": "demo", "input": "a", "user": 5}, "user"),
        ({"model": 5, "input": "a"}, "model"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(mocked: Gateway, body: dict[str, Any], param: str) -> None:
    async with aiohttp.ClientSession() as http, http.post(f"{mocked.url}/v1/embeddings", json=body) as response:
        assert response.status == 400
        error = (await response.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


async def test_too_many_dimensions_for_the_mock_is_its_400(mocked: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await mocked.client().embeddings.create(model="demo", input="a", dimensions=100_000)
    assert raised.value.param == "dimensions"


# ---------------------------------------------------------------- keys, metrics, the access log


async def test_keys_guard_embeddings_and_the_request_is_counted_and_logged(
    gateway_factory: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-gw-embed-0123456789abcdef"
    gateway = await gateway_factory(
        {
            "providers": {"demo": {"kind": "mock"}},
            "routes": [{"model": "demo", "provider": "demo"}, {"model": "other", "provider": "demo"}],
            "auth": {"keys": [{"id": "rag", "key": secret, "models": ["demo"]}]},
        }
    )
    caplog.set_level(logging.INFO, logger="gateway.access")
    with pytest.raises(openai.AuthenticationError):
        await gateway.client().embeddings.create(model="demo", input="hello")
    keyed = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        await keyed.embeddings.create(model="other", input="hello")
    result = await keyed.embeddings.create(model="demo", input="hello world")
    found = samples(await fetch_metrics(gateway))
    assert value(found, "gateway_requests_total", route="demo", key="rag", code="200", outcome="ok") == 1
    assert value(found, "gateway_tokens_total", route="demo", key="rag", type="prompt") == result.usage.prompt_tokens
    lines = [record.fields for record in caplog.records if record.name == "gateway.access"]  # type: ignore[attr-defined]
    line = next(line for line in reversed(lines) if line["path"] == "/v1/embeddings")
    assert line["path"] == "/v1/embeddings" and line["status"] == 200 and line["key"] == "rag"
    assert line["prompt_tokens"] == result.usage.prompt_tokens and line["stream"] is False
    assert line["cost_usd"] == 0.0 and line["completion_tokens"] == 0  # the mock costs nothing, as for chat
    assert value(found, "gateway_unpriced_requests_total", route="demo") == 0


# ---------------------------------------------------------------- LangChain


async def test_langchains_openai_embeddings(mocked: Gateway) -> None:
    """LangChain tokenizes long texts itself and sends token arrays; without that, the strings."""
    options = {"base_url": f"{mocked.url}/v1", "api_key": "unused", "max_retries": 0}
    tokenized = OpenAIEmbeddings(model="demo", dimensions=32, **options)
    documents = await tokenized.aembed_documents(["alpha beta", "gamma"])
    assert [len(vector) for vector in documents] == [32, 32]
    assert await tokenized.aembed_query("alpha beta") == documents[0]

    plain = OpenAIEmbeddings(model="demo", dimensions=32, check_embedding_ctx_length=False, **options)
    vectors = await plain.aembed_documents(["alpha beta", "gamma"])
    direct = await mocked.client().embeddings.create(model="demo", input=["alpha beta", "gamma"], dimensions=32)
    assert vectors == [pytest.approx(item.embedding) for item in direct.data]
