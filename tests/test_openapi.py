"""GET /openapi.json: a valid OpenAPI 3.1 document of every endpoint the gateway serves, made for
this gateway (its routes, its keys), and the pages that read it, none of which asks for a key."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from conftest import GatewayFactory
from openai_extract import CHAT, SHIPPED, SHIPPED_EXTRACTS, SPEC, Extract, extract, load_spec
from openapi_spec_validator import validate

PAGES = ["/openapi.json", "/docs", "/redoc", "/", "/playground"]
SHARED_SCHEMAS = SPEC.parent / "chat-schemas.json"
SHIPPED_SCHEMAS = SHIPPED / "chat-schemas.json"

DEMO = {"providers": {"demo": {"kind": "mock"}}, "routes": [{"model": "demo", "provider": "demo"}]}
KEYED = {**DEMO, "auth": {"keys": [{"id": "k", "key": "sk-docs-test-key-0123456789"}]}}


async def fetch_document(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/openapi.json") as response:
        assert response.status == 200 and response.content_type == "application/json"
        document: dict[str, Any] = await response.json()
        return document


async def test_the_document_is_valid_openapi_3_1(gateway_factory: GatewayFactory) -> None:
    document = await fetch_document((await gateway_factory(DEMO)).url)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on the first error


async def test_every_endpoint_the_gateway_serves_is_described_and_nothing_else(
    gateway_factory: GatewayFactory,
) -> None:
    """A new endpoint without its entry in gateway/api/docs/operations.py fails here."""
    gateway = await gateway_factory(DEMO)
    document = await fetch_document(gateway.url)
    described = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    pages = {"/", "/playground", "/openapi.json", "/docs", "/redoc"}
    served = {
        (route.method, route.resource.canonical)
        for route in gateway.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    served = {(method, path) for method, path in served if path not in pages and "/assets/" not in path}
    served = {(method, path) for method, path in served if not path.startswith("/playground/")}
    assert described == served
    assert ("POST", "/v1/chat/completions") in described and ("GET", "/api/v1/models/{model}") in described
    assert ("POST", "/v1/responses") in described and ("POST", "/api/v1/embeddings") in described
    assert ("POST", "/api/v1/debates") in described


async def test_the_document_asks_for_a_key_only_when_the_gateway_has_keys(gateway_factory: GatewayFactory) -> None:
    open_document = await fetch_document((await gateway_factory(DEMO)).url)
    keyed_document = await fetch_document((await gateway_factory(KEYED)).url)
    for document, needs_key in ((open_document, False), (keyed_document, True)):
        chat = document["paths"]["/v1/chat/completions"]["post"]
        assert bool(chat["security"]) is needs_key
        assert document["paths"]["/health"]["get"]["security"] == []
    assert keyed_document["paths"]["/v1/chat/completions"]["post"]["security"] == [
        {"bearerKey": []},
        {"apiKeyHeader": []},
    ]


async def test_the_chat_operation_reuses_openai_schemas_with_the_gateway_additions(
    gateway_factory: GatewayFactory,
) -> None:
    document = await fetch_document((await gateway_factory(DEMO)).url)
    chat = document["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/CreateChatCompletionRequest"}
    assert {example["value"]["model"] for example in body["examples"].values()} == {"demo"}  # a route of this table
    ok = chat["responses"]["200"]
    assert set(ok["headers"]) == {
        "x-request-id",
        "x-gateway-max-tokens",
        "x-gateway-provider",
        "x-gateway-upstream-model",
        "x-gateway-attempts",
    }
    schemas = document["components"]["schemas"]
    assert schemas["GatewayChatCompletion"]["properties"]["quorum"] == {"$ref": "#/components/schemas/Quorum"}
    assert "CreateChatCompletionStreamResponse" in schemas and "$defs" not in json.dumps(document)
    for status in ("400", "401", "403", "404", "413", "502", "504"):
        assert chat["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }


async def test_embeddings_and_responses_reuse_openai_schemas_with_what_the_gateway_does(
    gateway_factory: GatewayFactory,
) -> None:
    document = await fetch_document((await gateway_factory(DEMO)).url)
    schemas = document["components"]["schemas"]
    embeddings = document["paths"]["/api/v1/embeddings"]["post"]
    body = embeddings["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/GatewayCreateEmbeddingRequest"}
    assert schemas["GatewayCreateEmbeddingRequest"]["allOf"][0] == {
        "$ref": "#/components/schemas/CreateEmbeddingRequest"
    }
    assert {"$ref": "#/components/schemas/CreateEmbeddingResponse"} in schemas["GatewayEmbeddingList"]["anyOf"]
    assert set(embeddings["responses"]["200"]["headers"]) == {
        "x-request-id",
        "x-gateway-provider",
        "x-gateway-upstream-model",
        "x-gateway-attempts",
    }

    responses = document["paths"]["/v1/responses"]["post"]
    body = responses["requestBody"]["content"]["application/json"]
    assert schemas["GatewayCreateResponse"]["allOf"][0] == {"$ref": "#/components/schemas/CreateResponse"}
    assert {example["value"]["model"] for example in body["examples"].values()} == {"demo"}
    ok = responses["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Response"}
    assert "x-gateway-max-tokens" in ok["headers"]
    events = ok["content"]["text/event-stream"]["schema"]["anyOf"]
    named = {event["properties"]["event"].get("const") for event in events}
    assert {"response.created", "response.output_text.delta", "response.completed", "error"} <= named
    assert None in named  # a forwarded route's other events
    assert "previous_response_id" in responses["responses"]["400"]["description"]
    for operation in (embeddings, responses):
        for status in ("400", "401", "403", "404", "413", "502", "504"):
            assert operation["responses"][status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorResponse"
            }


def test_the_shipped_openai_schemas_are_the_shared_copy_unchanged() -> None:
    if not SHARED_SCHEMAS.exists():
        pytest.skip(f"{SHARED_SCHEMAS} is missing (the shared folder beside this clone)")
    assert SHIPPED_SCHEMAS.read_bytes() == SHARED_SCHEMAS.read_bytes()


@pytest.fixture(scope="module")
def openai_spec() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is missing (the shared folder beside this clone)")
    return load_spec()


def test_the_extractor_makes_the_shared_chat_schemas_byte_for_byte(openai_spec: dict[str, Any]) -> None:
    """tests/openai_extract.py extracts as the shared chat-schemas.json was extracted..."""
    if not SHARED_SCHEMAS.exists():
        pytest.skip(f"{SHARED_SCHEMAS} is missing (the shared folder beside this clone)")
    assert extract(openai_spec, CHAT).encode() == SHARED_SCHEMAS.read_bytes()


@pytest.mark.parametrize("which", SHIPPED_EXTRACTS, ids=lambda which: which.file)
def test_the_shipped_embeddings_and_responses_schemas_are_extracted_unchanged(
    openai_spec: dict[str, Any], which: Extract
) -> None:
    """...and so were the shipped embeddings-schemas.json and responses-schemas.json, from the shared
    openapi.yaml (`python tests/openai_extract.py` writes them again)."""
    assert (SHIPPED / which.file).read_text(encoding="utf-8") == extract(openai_spec, which)


@pytest.mark.parametrize("path", PAGES)
async def test_the_pages_need_no_key_when_the_gateway_has_keys(gateway_factory: GatewayFactory, path: str) -> None:
    gateway = await gateway_factory(KEYED)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.url}{path}") as response:
            assert response.status == 200
            if response.content_type == "text/html":
                assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        async with session.get(f"{gateway.url}/v1/models") as response:
            assert response.status == 401  # the model endpoints still do


async def test_the_pages_assets_are_served(gateway_factory: GatewayFactory) -> None:
    gateway = await gateway_factory(DEMO)
    assets = {
        "/docs/assets/swagger-ui-bundle.js": "SwaggerUIBundle",
        "/docs/assets/swagger-ui.css": ".swagger-ui",
        "/docs/assets/swagger-init.js": "openapi.json",
        "/redoc/assets/redoc.standalone.js": "Redoc",
        "/playground/app.js": "v1/models",
        "/playground/style.css": "prefers-color-scheme",
    }
    async with aiohttp.ClientSession() as session:
        for path, text in assets.items():
            async with session.get(f"{gateway.url}{path}") as response:
                assert response.status == 200, path
                assert text in await response.text(), path
