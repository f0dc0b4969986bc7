"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, Groq, ..."""

from __future__ import annotations

from typing import Any

import orjson

from ..config import ProviderConfig
from ..config.secrets import Redactor
from ..errors import UpstreamError, UpstreamProtocolError
from ..stream.sse import SSEEvent
from ..upstream.base import UpstreamRequest
from .base import (
    USER_AGENT,
    UpstreamCall,
    error_from_document,
    error_from_payload,
    provider_headers,
    upstream_error,
)

TOKEN_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens")


class OpenAIProvider:
    native_responses = True  # its completions are already OpenAI's: sent on unchanged when nothing was cut

    def __init__(self, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        """`redactor`: the snapshot's, holding every secret (default: this provider's own)."""
        self.config = config
        self._redactor = redactor if redactor is not None else Redactor.for_provider(config)
        self._url = f"{config.base_url}/chat/completions"
        defaults = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **self.auth_headers(config)}
        self._headers = provider_headers(defaults, config.headers)

    @staticmethod
    def auth_headers(config: ProviderConfig) -> dict[str, str]:
        return {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    def url_for(self, call: UpstreamCall) -> str:
        return self._url

    def build_request(self, call: UpstreamCall) -> UpstreamRequest:
        body = dict(call.body)
        body["model"] = call.model
        for name in TOKEN_LIMIT_FIELDS:
            body.pop(name, None)
        body[self.config.max_tokens_field] = call.max_tokens
        if call.stream and self.config.stream_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        headers = {**self._headers, "x-request-id": call.request_id}
        if call.stream:
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest(url=self.url_for(call), body=orjson.dumps(body), headers=headers, stream=call.stream)

    def translate_response(self, payload: bytes) -> dict[str, Any]:
        try:
            completion = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("The upstream's response is not valid JSON.") from None
        if not isinstance(completion, dict) or not isinstance(completion.get("choices"), list):
            if isinstance(completion, dict) and completion.get("error"):  # a success that is only an error
                raise error_from_document(200, completion, self._redactor)
            raise UpstreamProtocolError("The upstream's response is not a chat completion.")
        return completion

    def stream_translator(self) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(self._redactor)

    def map_error(self, status: int, payload: bytes) -> UpstreamError:
        return error_from_payload(status, payload, self._redactor)


class OpenAIStreamTranslator:
    """OpenAI's chunks are already what the client wants: check their shape, pass them on."""

    __slots__ = ("_redactor", "finished")
    passthrough = True  # one event, one chunk, whose JSON is the event's data

    def __init__(self, redactor: Redactor) -> None:
        self.finished = False
        self._redactor = redactor

    def translate(self, event: SSEEvent) -> list[dict[str, Any]]:
        data = event.data
        if data == b"[DONE]":
            self.finished = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("The upstream sent an event that is not valid JSON.") from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("The upstream sent an event that is not a chat completion chunk.")
        if chunk.get("error"):
            raise stream_error(chunk["error"], self._redactor)
        if not isinstance(chunk.get("choices"), list):
            raise UpstreamProtocolError("The upstream sent an event that is not a chat completion chunk.")
        return [chunk]


def stream_error(error: Any, redactor: Redactor) -> UpstreamError:
    """An error event in the upstream's stream, as the gateway's error: of its `status` if
    it gives one (upstream_error holds it to 400-599), else 502."""
    if not isinstance(error, dict):
        error = {"message": str(error)}
    status = error.get("status")
    if status is None:
        status = 502
    message = error.get("message") if isinstance(error.get("message"), str) else "The upstream reported an error."
    code = error.get("code")
    return upstream_error(
        status,
        message,
        redactor,
        type=error.get("type") if isinstance(error.get("type"), str) else None,
        code=str(code) if code is not None else None,
    )
