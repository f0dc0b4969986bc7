"""Provider adapters through the real transport, with aioresponses answering: what each
upstream is sent, and how its error statuses come back. No sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import orjson
import pytest
from mocked import MockedUpstreams, sent

from gateway.config import ProviderConfig, Target, UpstreamConfig
from gateway.errors import UpstreamStatusError
from gateway.pipeline.exchange import status_error
from gateway.providers import UpstreamCall, create_provider
from gateway.upstream.client import HTTPResponse, UpstreamClient

OPENAI = ProviderConfig(
    name="openai",
    kind="openai",
    base_url="https://api.openai.test/v1",
    api_key="sk-openai-secret-0123456789",
    headers={"OpenAI-Organization": "org-gateway"},
)
AZURE = ProviderConfig(
    name="azure",
    kind="azure",
    base_url="https://example.openai.azure.test",
    api_key="azure-secret-key-0123456789",
    api_version="2024-10-21",
    deployment="gpt-4o-prod",
)
ANTHROPIC = ProviderConfig(
    name="claude",
    kind="anthropic",
    base_url="https://api.anthropic.test",
    api_key="sk-ant-secret-0123456789",
    headers={"Authorization": "Bearer never-sent", "anthropic-beta": "some-feature"},
)
OPENAI_URL = "https://api.openai.test/v1/chat/completions"
ANTHROPIC_URL = "https://api.anthropic.test/v1/messages"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


@pytest.fixture
def upstreams() -> Iterator[MockedUpstreams]:
    with MockedUpstreams() as mocked:
        yield mocked


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream_client = UpstreamClient(UpstreamConfig())
    yield upstream_client
    await upstream_client.aclose()


async def send(
    client: UpstreamClient,
    config: ProviderConfig,
    body: dict[str, Any],
    *,
    stream: bool = False,
    model: str = "gpt-4o-mini",
    target: Target | None = None,
) -> HTTPResponse:
    """Build the adapter's request for `body` and send it through the provider's transport."""
    call = UpstreamCall(body=body, model=model, max_tokens=50, stream=stream, request_id="req-unit-1", target=target)
    request = create_provider(config).build_request(call)
    return await client.for_provider(config).send(request, connect_timeout=5)


@pytest.mark.parametrize(
    ("config", "body", "stream", "expected"),
    [
        pytest.param(
            OPENAI,
            {"model": "smart", "messages": MESSAGES, "max_completion_tokens": 999, "temperature": 0.2},
            False,
            {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.2, "max_tokens": 50},
            id="completion: model replaced, max_tokens set, the client's limit field gone",
        ),
        pytest.param(
            OPENAI,
            {"model": "smart", "messages": MESSAGES, "stream": True, "stream_options": {"include_obfuscation": False}},
            True,
            {
                "model": "gpt-4o-mini",
                "messages": MESSAGES,
                "stream": True,
                "stream_options": {"include_obfuscation": False, "include_usage": True},
                "max_tokens": 50,
            },
            id="stream: include_usage added to the client's stream_options",
        ),
        pytest.param(
            replace(OPENAI, max_tokens_field="max_completion_tokens", stream_usage=False),
            {"model": "smart", "messages": MESSAGES, "stream": True, "max_tokens": 999},
            True,
            {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "max_completion_tokens": 50},
            id="stream: max_completion_tokens field, stream_usage off",
        ),
    ],
)
async def test_openai_request_carries_key_request_id_model_and_limit(
    client: UpstreamClient,
    upstreams: MockedUpstreams,
    config: ProviderConfig,
    body: dict[str, Any],
    stream: bool,
    expected: dict[str, Any],
) -> None:
    """The OpenAI adapter's request reaches base_url/chat/completions with the key, the request
    id and the configured headers, its model and max tokens replaced, usage asked for when streaming."""
    upstreams.post(OPENAI_URL, payload={"choices": []})
    response = await send(client, config, body, stream=stream)
    response.release()
    assert response.status == 200
    [request] = sent(upstreams, OPENAI_URL)
    assert request.body == expected
    headers = request.headers
    assert headers["Authorization"] == f"Bearer {config.api_key}"
    assert headers["x-request-id"] == "req-unit-1"
    assert headers["OpenAI-Organization"] == "org-gateway"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("llm-gateway/")
    if stream:
        assert headers["Accept"] == "text/event-stream" and headers["Accept-Encoding"] == "identity"
    else:
        assert "Accept" not in headers and "Accept-Encoding" not in headers


@pytest.mark.parametrize(
    ("model", "target", "url"),
    [
        pytest.param(
            "gpt-4o",
            None,
            "https://example.openai.azure.test/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21",
            id="the provider's deployment and api_version",
        ),
        pytest.param(
            "gpt-4o",
            Target(provider="azure", deployment="eu-west", api_version="2025-01-01-preview"),
            "https://example.openai.azure.test/openai/deployments/eu-west/chat/completions?api-version=2025-01-01-preview",
            id="the target's deployment and api_version win",
        ),
    ],
)
async def test_azure_url_names_the_deployment_and_api_version(
    client: UpstreamClient, upstreams: MockedUpstreams, model: str, target: Target | None, url: str
) -> None:
    """Azure is sent OpenAI's body at the deployment's URL with api-version, keyed by api-key, not Authorization."""
    upstreams.post(url, payload={"choices": []})
    response = await send(client, AZURE, {"messages": MESSAGES}, model=model, target=target)
    response.release()
    [request] = sent(upstreams, url)
    assert request.headers["api-key"] == AZURE.api_key and "Authorization" not in request.headers
    assert request.headers["x-request-id"] == "req-unit-1"
    assert request.body == {"messages": MESSAGES, "model": model, "max_tokens": 50}


async def test_azure_without_a_deployment_uses_the_model_name_escaped(
    client: UpstreamClient, upstreams: MockedUpstreams
) -> None:
    """With no deployment configured, the upstream model name is the deployment, escaped into one path segment."""
    config = ProviderConfig(name="azure", kind="azure", base_url=AZURE.base_url, api_key="k", api_version="v1")
    url = "https://example.openai.azure.test/openai/deployments/team%2Fgpt%204o/chat/completions?api-version=v1"
    upstreams.post(url, payload={"choices": []})
    response = await send(client, config, {"messages": MESSAGES}, model="team/gpt 4o")
    response.release()
    assert len(sent(upstreams, url)) == 1


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_request_goes_to_messages_with_x_api_key(
    client: UpstreamClient, upstreams: MockedUpstreams, stream: bool
) -> None:
    """Anthropic is sent a Messages body (system apart, max_tokens always) at /v1/messages with
    x-api-key and anthropic-version, and never the configured Authorization header."""
    upstreams.post(ANTHROPIC_URL, payload={"type": "message", "content": []})
    body = {"messages": MESSAGES, "stream": stream, "stream_options": {"include_usage": True}, "seed": 7}
    response = await send(client, ANTHROPIC, body, stream=stream, model="claude-sonnet-4-5")
    response.release()
    [request] = sent(upstreams, ANTHROPIC_URL)
    expected: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "system": "Be brief.",
    }
    if stream:
        expected["stream"] = True
    assert request.body == expected
    headers = request.headers
    assert headers["x-api-key"] == ANTHROPIC.api_key and "Authorization" not in headers
    assert headers["anthropic-version"] == "2023-06-01" and headers["anthropic-beta"] == "some-feature"
    assert headers["x-request-id"] == "req-unit-1"
    assert headers.get("Accept") == ("text/event-stream" if stream else None)


ERRORS: list[Any] = [
    pytest.param(
        OPENAI,
        429,
        {"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "rate_limit_error", "code": None}},
        {"retry-after": "7"},
        (429, "Rate limit reached for gpt-4o-mini", "rate_limit_error", None, 7.0),
        id="openai 429, retry-after in seconds",
    ),
    pytest.param(
        OPENAI,
        503,
        {"error": {"message": "overloaded"}},
        {"retry-after-ms": "1500", "retry-after": "9"},
        (503, "overloaded", "service_unavailable_error", None, 1.5),
        id="openai 503, retry-after-ms wins",
    ),
    pytest.param(
        OPENAI,
        503,
        {"error": {"message": "overloaded"}},
        {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"},
        (503, "overloaded", "service_unavailable_error", None, 0.0),
        id="retry-after as a date already past",
    ),
    pytest.param(
        OPENAI,
        503,
        {"error": {"message": "overloaded"}},
        {"retry-after": "soon"},
        (503, "overloaded", "service_unavailable_error", None, None),
        id="retry-after unreadable",
    ),
    pytest.param(
        OPENAI,
        401,
        {"error": {"message": "Incorrect API key provided: sk-openai-secret-0123456789.", "code": "invalid_api_key"}},
        {},
        (401, "Incorrect API key provided: [redacted].", "invalid_request_error", "invalid_api_key", None),
        id="openai 401 echoing the key: redacted",
    ),
    pytest.param(
        OPENAI,
        502,
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        {},
        (502, "The upstream answered with HTTP 502.", "server_error", None, None),
        id="an HTML page is never shown",
    ),
    pytest.param(
        AZURE,
        400,
        {"error": {"message": "The response was filtered", "code": "content_filter", "param": "prompt"}},
        {},
        (400, "The response was filtered", "invalid_request_error", "content_filter", None),
        id="azure 400 content filter",
    ),
    pytest.param(
        ANTHROPIC,
        529,
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"retry-after": "2"},
        (529, "Overloaded", "service_unavailable_error", "overloaded_error", 2.0),
        id="anthropic 529 overloaded",
    ),
    pytest.param(
        ANTHROPIC,
        401,
        {"type": "error", "error": {"type": "authentication_error", "message": "bad key sk-ant-secret-0123456789"}},
        {},
        (401, "bad key [redacted]", "invalid_request_error", "authentication_error", None),
        id="anthropic 401 echoing the key: redacted",
    ),
]


@pytest.mark.parametrize(("config", "status", "body", "headers", "expected"), ERRORS)
async def test_error_statuses_are_mapped_with_status_message_and_retry_after(
    client: UpstreamClient,
    upstreams: MockedUpstreams,
    config: ProviderConfig,
    status: int,
    body: dict[str, Any] | bytes,
    headers: dict[str, str],
    expected: tuple[int, str, str, str | None, float | None],
) -> None:
    """An upstream's error status keeps its status and message (secrets redacted, no HTML) and its retry-after."""
    url = ANTHROPIC_URL if config.kind == "anthropic" else OPENAI_URL
    if config.kind == "azure":
        url = f"{config.base_url}/openai/deployments/{config.deployment}/chat/completions?api-version={config.api_version}"
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    upstreams.post(url, status=status, body=raw, headers=headers)
    response = await send(client, config, {"messages": MESSAGES})
    assert response.status == status
    error = await status_error(create_provider(config), response)
    assert isinstance(error, UpstreamStatusError)
    assert (error.status, error.message, error.type, error.code, error.retry_after) == expected
    assert config.api_key not in error.to_json().decode()
