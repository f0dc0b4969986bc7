"""Anthropic's Messages API (`POST /v1/messages`) behind OpenAI's chat completions API.

Requests: system and developer messages join into the top-level `system`; tool
calls become `tool_use` blocks and tool messages `tool_result` blocks in a user
turn; turns of the same role are merged, as Anthropic wants them alternating.
Fields sent on: max_tokens (always), stop, temperature, top_p, top_k, tools,
tool_choice, parallel_tool_calls, user (as metadata.user_id) and stream.
Dropped, having no Anthropic meaning (Anthropic rejects unknown fields):
frequency_penalty, presence_penalty, logit_bias, logprobs, top_logprobs, seed,
response_format, stream_options, service_tier, store, metadata, modalities,
audio, prediction, reasoning_effort, web_search_options and any other field.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson

from ..config import ProviderConfig
from ..config.secrets import Redactor
from ..errors import InvalidRequest, UpstreamError, UpstreamProtocolError
from ..stream.sse import SSEEvent
from ..upstream.base import UpstreamRequest
from .base import USER_AGENT, UpstreamCall, error_from_document, parse_json, provider_headers, upstream_error

log = logging.getLogger("gateway.providers.anthropic")

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",  # documented as "treat the response as truncated"
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
ERROR_STATUSES = {  # Anthropic's error types and the HTTP status each stands for
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
STOP_REASON_NAME = re.compile(r"[a-z_]{1,40}")  # what Anthropic's stop reasons look like
INPUT_TOKEN_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
USAGE_FIELDS = (*INPUT_TOKEN_FIELDS, "output_tokens")
TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
MESSAGE_EVENTS = frozenset(("content_block_start", "content_block_delta", "message_delta", "message_stop"))


class AnthropicProvider:
    native_responses = False  # its messages are translated into chat completions

    def __init__(self, config: ProviderConfig, *, redactor: Redactor | None = None) -> None:
        """`redactor`: the snapshot's, holding every secret (default: this provider's own)."""
        self.config = config
        self._redactor = redactor if redactor is not None else Redactor.for_provider(config)
        self._url = f"{config.base_url}/v1/messages"
        extra = {name: value for name, value in config.headers.items() if name.lower() != "authorization"}
        defaults = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "anthropic-version": config.anthropic_version,
        }
        self._headers = provider_headers(defaults, extra)
        if config.api_key:
            self._headers["x-api-key"] = config.api_key

    def build_request(self, call: UpstreamCall) -> UpstreamRequest:
        headers = {**self._headers, "x-request-id": call.request_id}
        if call.stream:
            headers["Accept"] = "text/event-stream"
        return UpstreamRequest(
            url=self._url, body=orjson.dumps(messages_body(call)), headers=headers, stream=call.stream
        )

    def embeddings_request(self, call: UpstreamCall) -> UpstreamRequest:
        raise InvalidRequest(
            f"The model {call.model!r} is served by Anthropic (provider {self.config.name!r}), which has no "
            "embeddings API: route embedding models to an openai, azure or mock provider.",
            param="model",
        )

    def translate_embeddings(self, payload: bytes) -> dict[str, Any]:
        raise UpstreamProtocolError("Anthropic has no embeddings API.")  # never asked: embeddings_request refuses

    def responses_request(self, call: UpstreamCall) -> UpstreamRequest:
        raise InvalidRequest(f"The provider {self.config.name!r} (Anthropic) does not serve the Responses API.")

    def translate_responses(self, payload: bytes) -> dict[str, Any]:
        raise UpstreamProtocolError("Anthropic does not serve the Responses API.")  # never asked

    def responses_events(self) -> AnthropicStreamTranslator:
        raise UpstreamProtocolError("Anthropic does not serve the Responses API.")  # never asked

    def translate_response(self, payload: bytes) -> dict[str, Any]:
        message = parse_json(payload, "response")
        if isinstance(message, dict) and message.get("type") != "message" and message.get("error"):
            raise self._error(200, message)  # a success that is only an error
        return completion_from_message(message)

    def stream_translator(self) -> AnthropicStreamTranslator:
        return AnthropicStreamTranslator(self._redactor)

    def map_error(self, status: int, payload: bytes) -> UpstreamError:
        try:
            document = orjson.loads(payload)
        except orjson.JSONDecodeError:
            document = None
        return self._error(status, document)

    def _error(self, status: int, document: Any) -> UpstreamError:
        """Anthropic's `{"type": "error", "error": {"type", "message"}}`, else OpenAI's shapes."""
        error = document.get("error") if isinstance(document, dict) else None
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return anthropic_error(error, self._redactor, status=status)
        return error_from_document(status, document, self._redactor)


# ---------------------------------------------------------------- requests


def messages_body(call: UpstreamCall) -> dict[str, Any]:
    """The Messages API request for a client's chat completions request."""
    request = call.body
    if request.get("n") not in (None, 1):
        raise InvalidRequest("Anthropic models return one choice: 'n' must be 1.", param="n")
    system, turns = translate_messages(request["messages"])
    body: dict[str, Any] = {"model": call.model, "max_tokens": call.max_tokens, "messages": turns}
    if system:
        body["system"] = system
    for name in ("temperature", "top_p", "top_k"):
        if request.get(name) is not None:
            body[name] = request[name]
    stop = request.get("stop")
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    if any(sequences):
        body["stop_sequences"] = [sequence for sequence in sequences if sequence]
    if isinstance(request.get("user"), str) and request["user"]:
        body["metadata"] = {"user_id": request["user"]}
    if request.get("tools"):
        body["tools"] = [translate_tool(tool, index) for index, tool in enumerate(request["tools"])]
        choice = translate_tool_choice(request.get("tool_choice"), request.get("parallel_tool_calls"))
        if choice is not None:
            body["tool_choice"] = choice
    if call.stream:
        body["stream"] = True
    return body


def translate_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """The joined system text and the conversation as alternating Anthropic turns."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message["role"]
        if role in ("system", "developer"):
            system.append(system_text(message.get("content"), where))
        elif role == "user":
            append_turn(turns, "user", content_blocks(message.get("content"), where))
        elif role == "assistant":
            append_turn(turns, "assistant", assistant_blocks(message, where))
        elif role == "tool":
            append_turn(turns, "user", [tool_result_block(message, where)])
        else:
            raise InvalidRequest(f"'{where}.role' {role!r} is not supported by Anthropic.", param=f"{where}.role")
    return "\n\n".join(text for text in system if text), turns


def append_turn(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def system_text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    blocks = content_blocks(content, where)
    if any(block["type"] != "text" for block in blocks):
        raise InvalidRequest(f"'{where}.content' of a system message may hold only text.", param=f"{where}.content")
    return "\n".join(block["text"] for block in blocks)


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Text and image blocks for a message's content (a string or a list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content")
    blocks = []
    for position, part in enumerate(content):
        part_where = f"{where}.content[{position}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url"), part_where))
        else:
            raise InvalidRequest(
                f"'{part_where}' of type {kind!r} is not supported for Anthropic models.", param=part_where
            )
    return blocks


def image_block(image: Any, where: str) -> dict[str, Any]:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if comma and encoding == "base64" and media_type:
            return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
        raise InvalidRequest(f"'{where}.image_url.url' must be a base64 data URL.", param=f"{where}.image_url.url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(f"'{where}.image_url.url' must be an http(s) or data: URL.", param=f"{where}.image_url.url")


def assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = content_blocks(message.get("content"), where)
    for position, call in enumerate(message.get("tool_calls") or ()):
        call_where = f"{where}.tool_calls[{position}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'{call_where}' must be a function call with a name.", param=call_where)
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function["name"],
                "input": tool_arguments(function.get("arguments"), f"{call_where}.function.arguments"),
            }
        )
    return blocks


def tool_arguments(arguments: Any, where: str) -> dict[str, Any]:
    if arguments in (None, ""):
        return {}
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) else arguments
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(f"'{where}' must be a JSON object encoded as a string.", param=where)
    return value


def tool_result_block(message: dict[str, Any], where: str) -> dict[str, Any]:
    tool_call_id = message.get("tool_call_id")
    if not isinstance(tool_call_id, str) or not tool_call_id:
        raise InvalidRequest(f"'{where}.tool_call_id' must be a string.", param=f"{where}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_call_id}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            block["content"] = content
    elif content is not None:
        block["content"] = content_blocks(content, where)
    return block


def translate_tool(tool: Any, index: int) -> dict[str, Any]:
    function = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"'tools[{index}]' must be a function tool with a name.", param=f"tools[{index}]")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    result = {"name": function["name"], "input_schema": schema}
    if function.get("description"):
        result["description"] = function["description"]
    return result


def translate_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    result: dict[str, Any] | None
    if choice is None:
        result = {"type": "auto"} if parallel is False else None
    elif isinstance(choice, str) and choice in TOOL_CHOICES:
        result = {"type": TOOL_CHOICES[choice]}
    elif isinstance(choice, dict) and isinstance(function := choice.get("function"), dict) and function.get("name"):
        result = {"type": "tool", "name": str(function["name"])}
    else:
        raise InvalidRequest("'tool_choice' must be auto, required, none or a named function.", param="tool_choice")
    if result is not None and parallel is False and result["type"] != "none":
        result["disable_parallel_tool_use"] = True
    return result


# ---------------------------------------------------------------- responses


def completion_from_message(message: Any) -> dict[str, Any]:
    """An Anthropic message (parsed JSON) as a `chat.completion`."""
    content = message.get("content") if isinstance(message, dict) and message.get("type") == "message" else None
    if not isinstance(content, list):
        raise UpstreamProtocolError("The upstream's response is not an Anthropic message.")
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{required_text(message.get('id'), 'message id')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": required_text(message.get("model"), "message model"),
        "choices": [
            {
                "index": 0,
                "message": reply_message(content),
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
    }
    if isinstance(message.get("usage"), dict):
        completion["usage"] = openai_usage(message["usage"])
    return completion


def reply_message(content: list[Any]) -> dict[str, Any]:
    """The assistant message of text and tool_use blocks; thinking and other blocks are left out."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(optional_text(block.get("text"), "text block"))
        elif kind == "tool_use":
            arguments = orjson.dumps(tool_input(block.get("input"))).decode()
            calls.append(
                {
                    "id": required_text(block.get("id"), "tool_use id"),
                    "type": "function",
                    "function": {"name": required_text(block.get("name"), "tool_use name"), "arguments": arguments},
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    return reply


def finish_reason(stop_reason: Any) -> str:
    """OpenAI's finish_reason for Anthropic's stop_reason; an unknown one is logged (by name only:
    what an upstream sends could hold a secret) and answered as "stop"."""
    reason = FINISH_REASONS.get(stop_reason) if isinstance(stop_reason, str) else None
    if reason is None:
        name = stop_reason if isinstance(stop_reason, str) and STOP_REASON_NAME.fullmatch(stop_reason) else "?"
        log.warning("unknown Anthropic stop_reason %r answered as finish_reason 'stop'", name)
        return "stop"
    return reason


def openai_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's usage from Anthropic's: the prompt counts cache writes and reads too. Without
    input_tokens or output_tokens it holds neither count, so that the gateway counts them
    (stream.limiter), rather than a 0 that would pass for one."""
    if not all(type(usage.get(name)) is int for name in ("input_tokens", "output_tokens")):
        return {}
    prompt = sum(token_count(usage.get(name)) for name in INPUT_TOKEN_FIELDS)
    completion = token_count(usage.get("output_tokens"))
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    cached = token_count(usage.get("cache_read_input_tokens"))
    if cached:
        result["prompt_tokens_details"] = {"cached_tokens": cached}
    return result


def optional_text(value: Any, what: str) -> str:
    """A text field of Anthropic's: a string, or absent (null) for an empty one."""
    if value is None:
        return ""
    if type(value) is not str:
        raise UpstreamProtocolError(f"The upstream's {what} is not a string.")
    return value


def required_text(value: Any, what: str) -> str:
    if type(value) is not str:
        raise UpstreamProtocolError(f"The upstream's {what} is not a string.")
    return value


def tool_input(value: Any) -> dict[str, Any]:
    """A tool_use block's input: an object (absent or null for none)."""
    if value is None:
        return {}
    if type(value) is not dict:
        raise UpstreamProtocolError("The upstream's tool_use input is not an object.")
    return value


def token_count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def anthropic_error(error: dict[str, Any], redactor: Redactor, *, status: int | None = None) -> UpstreamError:
    """Anthropic's `{"type": ..., "message": ...}` error as the gateway's, in OpenAI's shape: its
    type becomes the `code` (`overloaded_error`), and `type` is OpenAI's for the status."""
    kind = str(error.get("type") or "api_error")
    message = error.get("message") if isinstance(error.get("message"), str) and error["message"] else None
    if status is None:
        status = ERROR_STATUSES.get(kind, 502)
    return upstream_error(status, message, redactor, code=kind)


# ---------------------------------------------------------------- streams


def block_index(index: Any) -> int:
    if type(index) is not int:
        raise UpstreamProtocolError("The upstream sent a content block event whose index is not an integer.")
    return index


@dataclass(slots=True)
class ToolBlock:
    """A tool_use block of the stream, as the tool call it becomes."""

    position: int  # the tool call's index
    start_input: Any  # the input content_block_start gave (Anthropic's own streams: {})
    streamed: bool = False  # input_json_delta has given some of the arguments
    open: bool = True  # its content_block_stop has not come yet


class AnthropicStreamTranslator:
    """Anthropic's stream events as `chat.completion.chunk`s: a stateful object with no I/O.

    The role and finish chunks also carry the usage so far (the gateway takes it off
    before they go out), so the prompt's true size is known even if the stream is cut.

    The chunks assemble into what completion_from_message() makes of the same answer
    (the property test in test_anthropic_streams.py): content stays null with no text
    block; a tool call's arguments are its input_json_deltas, or, when none came, its
    block's input as JSON when the block ends (`{}` for a tool with no arguments).
    """

    passthrough = False  # chunks are built here, not the upstream's bytes

    __slots__ = ("_created", "_id", "_model", "_redactor", "_text", "_tools", "_usage", "finished")

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.finished = False
        self._id = "chatcmpl-"
        self._model: str | None = None  # set by message_start
        self._created = int(time.time())
        self._usage: dict[str, int] = {}  # Anthropic's figures so far
        self._tools: dict[int, ToolBlock] = {}  # by content block index
        self._text: bool | None = None  # None: no text block yet; False: one, but no content sent; True: sent
        self._redactor = redactor or Redactor()  # none given: nothing configured to hide (unit tests)

    def translate(self, event: SSEEvent) -> list[dict[str, Any]]:
        data = parse_json(event.data, "event")
        if not isinstance(data, dict):
            raise UpstreamProtocolError("The upstream sent an event that is not a JSON object.")
        kind = data.get("type") or event.event
        if kind in MESSAGE_EVENTS and self._model is None:
            raise UpstreamProtocolError(f"The upstream sent {kind} before message_start.")
        match kind:
            case "message_start":
                return self._message_start(data.get("message"))
            case "content_block_start":
                return self._block_start(data.get("index"), data.get("content_block"))
            case "content_block_delta":
                return self._block_delta(data.get("index"), data.get("delta"))
            case "content_block_stop":
                tool = self._tools.get(block_index(data.get("index")))
                return self._end_tool(tool) if tool is not None else []
            case "message_delta":
                return self._message_delta(data.get("delta"), data.get("usage"))
            case "message_stop":
                self.finished = True
                return [self._chunk(None, usage=True)]
            case "error":
                error = data.get("error")
                raise anthropic_error(error if isinstance(error, dict) else {"message": str(error)}, self._redactor)
            case _:  # ping and event types Anthropic may add
                return []

    def _message_start(self, message: Any) -> list[dict[str, Any]]:
        if not isinstance(message, dict):
            raise UpstreamProtocolError("The upstream's message_start event holds no message.")
        self._id = f"chatcmpl-{required_text(message.get('id'), 'message id')}"
        self._model = required_text(message.get("model"), "message model")
        self._remember_usage(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": None}, usage=True)]

    def _block_start(self, index: Any, block: Any) -> list[dict[str, Any]]:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            return self._text_chunks(optional_text(block.get("text"), "text block"))
        if kind != "tool_use":
            return []
        position = len(self._tools)
        self._tools[block_index(index)] = ToolBlock(position, tool_input(block.get("input")))
        call = {
            "index": position,
            "id": required_text(block.get("id"), "tool_use id"),
            "type": "function",
            "function": {"name": required_text(block.get("name"), "tool_use name"), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, index: Any, delta: Any) -> list[dict[str, Any]]:
        kind = delta.get("type") if isinstance(delta, dict) else None
        if kind == "text_delta":
            return self._text_chunks(optional_text(delta.get("text"), "text_delta"))
        if kind == "input_json_delta":
            partial = optional_text(delta.get("partial_json"), "input_json_delta")
            tool = self._tools.get(block_index(index))
            if partial and tool is not None and tool.open:
                tool.streamed = True
                return [self._arguments(tool, partial)]
        return []  # thinking, signatures, citations: nothing OpenAI's chunks carry

    def _text_chunks(self, text: str) -> list[dict[str, Any]]:
        if not text:
            self._text = self._text or False
            return []
        self._text = True
        return [self._chunk({"content": text})]

    def _end_tool(self, tool: ToolBlock) -> list[dict[str, Any]]:
        """A tool call's whole arguments, at its block's end, when no input_json_delta gave them."""
        if not tool.open:
            return []
        tool.open = False
        return [] if tool.streamed else [self._arguments(tool, orjson.dumps(tool.start_input).decode())]

    def _arguments(self, tool: ToolBlock, arguments: str) -> dict[str, Any]:
        return self._chunk({"tool_calls": [{"index": tool.position, "function": {"arguments": arguments}}]})

    def _message_delta(self, delta: Any, usage: Any) -> list[dict[str, Any]]:
        self._remember_usage(usage)
        stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if stop_reason is None:
            return []
        ending = [chunk for tool in self._tools.values() for chunk in self._end_tool(tool)]
        if self._text is False:  # text blocks with no text: the content is empty, not null
            self._text = True
            ending.append(self._chunk({"content": ""}))
        return [*ending, self._chunk({}, finish_reason(stop_reason), usage=True)]

    def _remember_usage(self, usage: Any) -> None:
        """message_start's figures, then message_delta's running totals where it gives them."""
        if isinstance(usage, dict):
            for name in USAGE_FIELDS:
                if isinstance(usage.get(name), int):
                    self._usage[name] = usage[name]

    def _chunk(self, delta: dict[str, Any] | None, finish: str | None = None, *, usage: bool = False) -> dict[str, Any]:
        """A chunk for the one choice; with no delta, a chunk of no choices (the usage chunk)."""
        choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if usage:
            chunk["usage"] = openai_usage(self._usage)
        return chunk
