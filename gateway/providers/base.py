"""The interface every provider adapter implements: build, translate, map errors.

An adapter is pure translation between OpenAI's chat completions API and one
upstream's protocol; it does no I/O. The pipeline sends what it builds through
the transport the runtime chose for its provider. Besides chat completions, an
adapter builds the upstream's embeddings request and, where the upstream serves
it (`responses_api`), its Responses API request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .. import __version__
from ..config import ProviderConfig, Target
from ..config.secrets import Redactor
from ..errors import UpstreamError, UpstreamProtocolError, UpstreamStatusError, is_error_status
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

    body: dict[str, Any]  # the client's request, as it came (or translated, for /v1/responses)
    model: str  # the model name to send upstream
    max_tokens: int  # the effective limit on completion tokens; 0 where none is generated (embeddings)
    stream: bool
    request_id: str
    target: Target | None = None  # the route's target being tried (deployment, api_version)
    choices: int = 1  # the answers asked for (chat completions' n), each held to max_tokens


class StreamTranslator(Protocol):
    finished: bool  # the upstream has said its stream is over
    passthrough: bool  # the last translate() gave the event's one chunk, unchanged: its bytes may go on as they are

    def translate(self, event: SSEEvent) -> list[dict[str, Any]]:
        """Chat completion chunks for one upstream event; raises UpstreamError for an error event."""
        ...


class Provider(Protocol):
    config: ProviderConfig
    native_responses: bool  # its non-streaming responses are OpenAI chat completions as they are

    def build_request(self, call: UpstreamCall) -> UpstreamRequest:
        """The chat completions request (or the upstream's own protocol's) for `call`."""
        ...

    def embeddings_request(self, call: UpstreamCall) -> UpstreamRequest:
        """The client's embeddings request (OpenAI's `CreateEmbeddingRequest`) for the upstream's
        embeddings endpoint, with the upstream model name; raises InvalidRequest (400) when the
        upstream has no embeddings API."""
        ...

    def responses_request(self, call: UpstreamCall) -> UpstreamRequest:
        """The client's Responses API request (OpenAI's `CreateResponse`), forwarded to an upstream
        that serves it (`config.responses_api`), with the upstream model name and
        `max_output_tokens` the effective limit; raises InvalidRequest where none does."""
        ...

    def translate_response(self, payload: bytes) -> dict[str, Any]: ...

    def translate_responses(self, payload: bytes) -> dict[str, Any]:
        """An upstream's Response (served by the Responses API itself), parsed and checked;
        raises UpstreamProtocolError, or the upstream's error when that is all it holds."""
        ...

    def responses_events(self) -> StreamTranslator:
        """The parser of an upstream's Responses API events: each event's JSON as it came; an
        error event (`error`, `response.failed`) raised as the gateway's error, redacted."""
        ...

    def translate_embeddings(self, payload: bytes) -> dict[str, Any]:
        """The upstream's embeddings answer, parsed and checked (`CreateEmbeddingResponse`);
        raises UpstreamProtocolError, or the upstream's error when that is all it holds."""
        ...

    def stream_translator(self) -> StreamTranslator: ...

    def map_error(self, status: int, payload: bytes) -> UpstreamError:
        """The upstream's error of this status and body, its secrets redacted (upstream_error)."""
        ...


def parse_json(payload: bytes, what: str) -> Any:
    """An upstream's body as JSON; raises UpstreamProtocolError naming `what` when it is not."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise UpstreamProtocolError(f"The upstream's {what} is not valid JSON.") from None


def error_from_payload(status: int, payload: bytes, redactor: Redactor) -> UpstreamError:
    """An upstream's error body in OpenAI's shape; its message only, never raw HTML."""
    try:
        document = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        document = None
    return error_from_document(status, document, redactor)


def error_from_document(status: int, document: Any, redactor: Redactor) -> UpstreamError:
    """`{"error": {"message", "type", "code", "param"}}`, `{"error": "..."}` or `{"message": "..."}`."""
    message = kind = code = param = None
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        if isinstance(error.get("message"), str) and error["message"]:
            message = error["message"]
        kind, code, param = (_text_or_none(error.get(name)) for name in ("type", "code", "param"))
    elif isinstance(error, str) and error:
        message = error
    elif isinstance(document, dict) and isinstance(document.get("message"), str):
        message = document["message"]
    return upstream_error(status, message, redactor, type=kind, code=code, param=param)


def upstream_error(
    status: object,
    message: str | None,
    redactor: Redactor,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
) -> UpstreamError:
    """The one place an upstream's error becomes the gateway's, whichever protocol and path
    it came by (an error status, an error event).

    Every configured secret is redacted from each field, whichever the upstream put it in.
    The client gets the upstream's status only when it is an HTTP error status (400-599):
    any other (99, 101, 200, 204, 600, 1000, a string) is the upstream breaking the
    protocol, a 502 upstream_protocol_error whose message says what it sent.
    """
    if message is None:
        message = f"The upstream answered with HTTP {status}."
    if not is_error_status(status):
        sent = orjson.dumps(status, default=str).decode()
        message = f"The upstream sent an error with status {sent}, not an HTTP error status (400-599): {message}"
        return UpstreamProtocolError(redactor.text(message))
    return UpstreamStatusError(
        status,
        redactor.text(message),
        type=redactor.optional(type),
        code=redactor.optional(code),
        param=redactor.optional(param),
    )


def _text_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)
