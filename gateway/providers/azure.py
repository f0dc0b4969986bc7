"""Azure OpenAI: OpenAI's protocol at a deployment's URL, with an `api-key` header."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from ..config import ProviderConfig
from .base import UpstreamCall
from .openai import OpenAIProvider


class AzureProvider(OpenAIProvider):
    @staticmethod
    def auth_headers(config: ProviderConfig) -> dict[str, str]:
        return {"api-key": config.api_key} if config.api_key else {}

    def url_for(self, call: UpstreamCall) -> str:
        """`{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`

        The deployment is the target's, else the provider's, else the upstream model name.
        """
        target = call.target
        deployment = (target and target.deployment) or self.config.deployment or call.model
        api_version = (target and target.api_version) or self.config.api_version
        query = urlencode({"api-version": api_version})
        return f"{self.config.base_url}/openai/deployments/{quote(deployment, safe='')}/chat/completions?{query}"
