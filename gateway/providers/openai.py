"""Any OpenAI-compatible server: OpenAI, vLLM, Ollama, llama.cpp, Groq, ..."""

from __future__ import annotations

from typing import Any

import orjson

from ..config import ProviderConfig
from ..config.secrets import Redactor
from ..errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from ..stream.sse import SSEEvent
from ..upstream.base import UpstreamRequest
from .base import (
    USER_AGENT,
    UpstreamCall,
    error_from_document,
    error_from_payload,
    parse_json,
    provider_headers,
    upstream_error,
)
from .shapes import check_chunk, check_completion, check_embeddings

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

    def url_for(self, call: UpstreamCall, endpoint: str = "chat/completions") -> str:
        """`{base_url}/{endpoint}`: chat/completions, embeddings or responses."""
        return self._url if endpoint == "chat/completions" else f"{self.config.base_url}/{endpoint}"

    def responses_url(self, call: UpstreamCall) -> str:
        return self.url_for(call, "responses")

    def headers_for(self, call: UpstreamCall) -> dict[str, str]:
        headers = {**self._headers, "x-request-id": call.request_id}
        if call.stream:
            headers["Accept"] = "text/event-stream"
        return headers

    def embeddings_request(self, call: UpstreamCall) -> UpstreamRequest:
        body = {**call.body, "model": call.model}
        return UpstreamRequest(
            url=self.url_for(call, "embeddings"), body=orjson.dumps(body), headers=self.headers_for(call)
        )

    def responses_request(self, call: UpstreamCall) -> UpstreamRequest:
        if not self.config.responses_api:
            raise InvalidRequest(f"The provider {self.config.name!r} does not serve the Responses API.")
        body = {**call.body, "model": call.model, "max_output_tokens": call.max_tokens}
        return UpstreamRequest(
            url=self.responses_url(call), body=orjson.dumps(body), headers=self.headers_for(call), stream=call.stream
        )

    def build_request(self, call: UpstreamCall) -> UpstreamRequest:
        body = dict(call.body)
        body["model"] = call.model
        for name in TOKEN_LIMIT_FIELDS:
            body.pop(name, None)
        body[self.config.max_tokens_field] = call.max_tokens
        if call.stream and self.config.stream_usage:
            options = body.get("stream_options")
            body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
        return UpstreamRequest(
            url=self.url_for(call), body=orjson.dumps(body), headers=self.headers_for(call), stream=call.stream
        )

    def translate_response(self, payload: bytes) -> dict[str, Any]:
        completion = self.success_document(payload, "choices", "a chat completion")
        check_completion(completion)
        return completion

    def translate_embeddings(self, payload: bytes) -> dict[str, Any]:
        document = self.success_document(payload, "data", "a list of embeddings", named="embeddings response")
        check_embeddings(document)
        return document

    def success_document(self, payload: bytes, items: str, kind: str, *, named: str = "response") -> dict[str, Any]:
        """A success's body: a JSON object whose list `items` holds the answer. Raises
        UpstreamProtocolError when it is not JSON (`named`: what the message calls it) or not
        an object (`kind`: what it should be), and the upstream's own error, redacted, when
        the body holds only that."""
        document = parse_json(payload, named)
        if not isinstance(document, dict):
            raise UpstreamProtocolError(f"The upstream's response is not {kind}.")
        if not isinstance(document.get(items), list) and document.get("error"):
            raise error_from_document(200, document, self._redactor)
        return document

    def stream_translator(self) -> OpenAIStreamTranslator:
        return OpenAIStreamTranslator(self._redactor)

    def translate_responses(self, payload: bytes) -> dict[str, Any]:
        response = self.success_document(payload, "output", "a Response")
        if response.get("object") != "response" or not isinstance(response.get("output"), list):
            raise UpstreamProtocolError("The upstream's response is not a Response (object, output).")
        return response

    def responses_events(self) -> ResponsesEvents:
        return ResponsesEvents(self._redactor)

    def map_error(self, status: int, payload: bytes) -> UpstreamError:
        return error_from_payload(status, payload, self._redactor)


IDENTITY = ("id", "object", "created", "model")  # what every chunk of a stream repeats
MAX_HELD = 8  # chunks with no identity held until the stream's first chunk with one


class OpenAIStreamTranslator:
    """OpenAI's chunks are already what the client wants: check their shape (providers.shapes),
    pass them on.

    Azure sends annotations with no identity (id, object and model empty, created 0):
    the prompt's content filter results before the first chunk, the text's last ones
    after the finish. They take the stream's identity, so that every chunk the client
    gets is a chunk; the ones that come first wait for it.
    """

    __slots__ = ("_held", "_identity", "_redactor", "finished", "passthrough")

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.finished = False
        self._redactor = redactor or Redactor()  # none given: nothing configured to hide (unit tests)
        self.passthrough = True  # the last translate() gave the event's own chunk, unchanged
        self._identity: dict[str, Any] | None = None  # the stream's id, object, created, model
        self._held: list[dict[str, Any]] = []  # annotations that came before the identity

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
        try:
            check_chunk(chunk)
        except UpstreamProtocolError:
            if chunk.get("id") or chunk.get("object"):
                raise
            return self._annotation(chunk)  # no identity: Azure's
        self.passthrough = True
        if self._identity is None:
            self._identity = {key: chunk.get(key) for key in IDENTITY}
            if self._held:
                held, self._held = self._held, []
                self.passthrough = False
                return [*(stamped(annotation, self._identity) for annotation in held), chunk]
        return [chunk]

    def _annotation(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        """A chunk with no identity: stamped with the stream's, or held until it is known."""
        self.passthrough = False
        if self._identity is not None:
            return [stamped(chunk, self._identity)]
        if chunk.get("choices") or len(self._held) >= MAX_HELD:
            raise UpstreamProtocolError("The upstream sent chunks with no id before the first one with an id.")
        self._held.append(chunk)
        return []


def stamped(chunk: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
    """An annotation as a chunk of the stream of `identity`, with a delta for each choice."""
    chunk.update(identity)
    choices = chunk.setdefault("choices", [])
    for choice in choices if isinstance(choices, list) else ():
        if isinstance(choice, dict):
            choice.setdefault("delta", {})
            choice.setdefault("finish_reason", None)
    check_chunk(chunk)
    return chunk


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


RESPONSES_ERROR_STATUSES = {"rate_limit_exceeded": 429, "server_error": 500, "vector_store_timeout": 504}
FINISHED_EVENTS = frozenset(("response.completed", "response.incomplete"))


class ResponsesEvents:
    """An upstream's Responses API events (the API reference's `ResponseStreamEvent`), parsed: each
    event's JSON object as it came. An `error` event or `response.failed` is raised as the
    gateway's error, redacted: of status 429 for rate_limit_exceeded, 500 for server_error,
    400 for the other codes of a failed request (invalid_prompt, invalid_image, ...)."""

    passthrough = False

    __slots__ = ("_redactor", "finished")

    def __init__(self, redactor: Redactor) -> None:
        self.finished = False
        self._redactor = redactor

    def translate(self, event: SSEEvent) -> list[dict[str, Any]]:
        if event.data == b"[DONE]":  # what some servers add after the Response's end
            return []
        try:
            data = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("The upstream sent an event that is not valid JSON.") from None
        if not isinstance(data, dict) or type(data.get("type")) is not str:
            raise UpstreamProtocolError("The upstream sent an event that is not a Responses API event.")
        kind = data["type"]
        if kind == "error":
            raise self._error(data)
        if kind == "response.failed":
            response = data.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise self._error(error if isinstance(error, dict) else {})
        if kind in FINISHED_EVENTS:
            self.finished = True
        return [data]

    def _error(self, error: dict[str, Any]) -> UpstreamError:
        code = error.get("code")
        status = RESPONSES_ERROR_STATUSES.get(code, 400 if code else 502) if isinstance(code, str) else 502
        message = error.get("message") if isinstance(error.get("message"), str) else "The upstream's response failed."
        return upstream_error(status, message, self._redactor, code=str(code) if code is not None else None)
