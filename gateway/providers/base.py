"""The interface every provider adapter implements: build, translate, map errors.

An adapter is pure translation between OpenAI's chat completions API and one
upstream's protocol; it does no I/O. The pipeline sends what it builds through
the transport the runtime chose for its provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .. import __version__
from ..config import ProviderConfig, Target
from ..errors import UpstreamStatusError
from ..stream.sse import SSEEvent
from ..upstream.base import UpstreamRequest

USER_AGENT = f"llm-gateway/{__version__}"


def provider_headers(defaults: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
    """The headers sent with every request to a provider: `configured` (the provider's
    `headers` in gateway.yaml) replaces a default of the same name, whatever its case."""
    overridden = {name.lower() for name in configured}
    headers = {name: value for name, value in defaults.items() if name.lower() not in overridden}
    headers.update(configured)
    return headers


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    """What the gateway asks of an upstream for one client request."""

    body: dict[str, Any]  # the client's request, as it came
    model: str  # the model name to send upstream
    max_tokens: int  # the effective limit
    stream: bool
    request_id: str
    target: Target | None = None  # the route's target being tried (deployment, api_version)


class StreamTranslator(Protocol):
    finished: bool  # the upstream has said its stream is over
    passthrough: bool  # the last translate() gave the event's one chunk, unchanged: its bytes may go on as they are

    def translate(self, event: SSEEvent) -> list[dict[str, Any]]:
        """Chat completion chunks for one upstream event; raises UpstreamError for an error event."""
        ...


class Provider(Protocol):
    config: ProviderConfig
    native_responses: bool  # its non-streaming responses are OpenAI chat completions as they are

    def build_request(self, call: UpstreamCall) -> UpstreamRequest: ...

    def translate_response(self, payload: bytes) -> dict[str, Any]: ...

    def stream_translator(self) -> StreamTranslator: ...

    def map_error(self, status: int, payload: bytes) -> UpstreamStatusError: ...


def error_from_payload(status: int, payload: bytes, *, secrets: tuple[str, ...] = ()) -> UpstreamStatusError:
    """An upstream's error body in OpenAI's shape; its message only, never raw HTML."""
    message = f"The upstream answered with HTTP {status}."
    kind = code = param = None
    try:
        document = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
        kind = _text_or_none(error.get("type"))
        code = _text_or_none(error.get("code"))
        param = _text_or_none(error.get("param"))
    elif isinstance(error, str) and error:
        message = error
    elif isinstance(document, dict) and isinstance(document.get("message"), str):
        message = document["message"]
    return UpstreamStatusError(status, redact(message, secrets), type=kind, code=code, param=param)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 8 and secret in text:
            text = text.replace(secret, "[redacted]")
    return text


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)
