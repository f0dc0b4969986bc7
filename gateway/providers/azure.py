"""Azure OpenAI: OpenAI's protocol at a deployment's URL, with an `api-key` header.

Chat completions and embeddings go to the deployment's own path; the Responses API
(with `responses_api: true`) to the resource's `/openai/responses`, the deployment
named as the model (Azure OpenAI's "Responses API" documentation).
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote, urlencode

from ..config import ProviderConfig
from ..upstream.base import UpstreamRequest
from .base import UpstreamCall
from .openai import OpenAIProvider


class AzureProvider(OpenAIProvider):
    @staticmethod
    def auth_headers(config: ProviderConfig) -> dict[str, str]:
        return {"api-key": config.api_key} if config.api_key else {}

    def url_for(self, call: UpstreamCall, endpoint: str = "chat/completions") -> str:
        """`{base_url}/openai/deployments/{deployment}/{endpoint}?api-version=...`

        The deployment is the target's, else the provider's, else the upstream model name.
        """
        deployment = self.deployment(call)
        return f"{self.config.base_url}/openai/deployments/{quote(deployment, safe='')}/{endpoint}?{self.query(call)}"

    def responses_url(self, call: UpstreamCall) -> str:
        """`{base_url}/openai/responses?api-version=...`"""
        return f"{self.config.base_url}/openai/responses?{self.query(call)}"

    def responses_request(self, call: UpstreamCall) -> UpstreamRequest:
        """Azure names the deployment as the Responses API's model."""
        return super().responses_request(replace(call, model=self.deployment(call)))

    def deployment(self, call: UpstreamCall) -> str:
        target = call.target
        return (target and target.deployment) or self.config.deployment or call.model

    def query(self, call: UpstreamCall) -> str:
        target = call.target
        return urlencode({"api-version": (target and target.api_version) or self.config.api_version})
