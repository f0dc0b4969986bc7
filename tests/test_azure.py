"""Azure OpenAI behind the OpenAI API: the deployment URL, api-version and the api-key header."""

from __future__ import annotations

from conftest import GatewayFactory, Upstream
from fakes import completion, json_handler, sse_handler, text_stream
from test_limits_e2e import collect

MESSAGES = [{"role": "user", "content": "hi"}]


def azure_tree(url: str) -> dict:
    return {
        "providers": {"azure": {"kind": "azure", "base_url": url, "api_key": "azure-secret-key", "api_version": "2024-10-21",
                                "deployment": "provider-deployment"}},
        "routes": [
            {"model": "gpt-4o", "targets": [{"provider": "azure", "model": "gpt-4o", "deployment": "my-gpt4o", "api_version": "2025-01-01-preview"}]},
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
    texts, finishes, _ = await collect(await client.chat.completions.create(model="default-deployment", messages=MESSAGES, stream=True))
    assert texts[0] == "streamed from azure" and finishes[0] == "stop"
    sent = upstream.requests[-1]
    assert sent["path"] == "/openai/deployments/provider-deployment/chat/completions"
    assert sent["query"] == {"api-version": "2024-10-21"}
