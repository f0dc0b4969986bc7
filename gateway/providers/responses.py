"""OpenAI's Responses API behind a chat completions upstream, translated both ways, as pure code.

For every upstream that does not serve the Responses API itself (Anthropic, the mock,
OpenAI-compatible servers that speak only chat completions). The Responses API's
shapes are those of its API reference (openapi.yaml: `CreateResponse`, `Response`,
`ResponseStreamEvent`).

Requests (`chat_body`): `instructions` becomes a system message; `input` (text, or
message, function_call and function_call_output items) the messages; function `tools`,
`tool_choice`, `parallel_tool_calls`, `temperature`, `top_p`, `user`,
`safety_identifier`, `prompt_cache_key`, `service_tier`, `reasoning.effort`,
`text.format` (as response_format) and `text.verbosity` carry over; `max_output_tokens`
is the call's limit. Stateless: `store` is treated as false, and `include`, `metadata`
(echoed back), `stream_options`, `top_logprobs`, `prompt_cache_retention`,
`max_tool_calls` have nothing to do and are dropped; reasoning items of the input are
dropped (a chat model has no use for them). What needs state or a built-in tool is
refused with a 400 naming the field: `previous_response_id`, `conversation`, `prompt`,
`background`, `context_management`, `truncation: "auto"`, item references, file ids,
and tools other than functions. Fields the gateway does not know are sent on, as for
chat completions.

Answers: a `chat.completion` becomes a `Response` (`response_from_completion`); a
stream of chunks the Responses event sequence (`ResponsesStream`). `finish_reason`
length is `status: "incomplete"` with `reason: "max_output_tokens"`, content_filter
the same with `reason: "content_filter"`; usage comes in the Responses API's names.
"""

from __future__ import annotations

from typing import Any

from ..errors import GatewayError, InvalidRequest
from ..stream.responses_state import ResponseState, encode_event, finished_response, new_id, responses_usage

STATEFUL = {
    "previous_response_id": "the gateway keeps no responses: send the whole conversation in 'input'",
    "conversation": "the gateway keeps no conversations: send the whole conversation in 'input'",
    "prompt": "stored prompts live at OpenAI: send the prompt's text in 'instructions' and 'input'",
    "context_management": "context management needs a model that serves the Responses API",
}
DROPPED = frozenset(
    (
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "stream",
        "store",
        "include",
        "metadata",
        "stream_options",
        "top_logprobs",
        "prompt_cache_retention",
        "max_tool_calls",
        "n",  # not a Responses API field: a Response is one answer
        "background",
        "truncation",
        *STATEFUL,
    )
)
ROLES = frozenset(("user", "assistant", "system", "developer"))
VERBOSITIES = (None, "low", "medium", "high")
FINISH = {"length": ("incomplete", "max_output_tokens"), "content_filter": ("incomplete", "content_filter")}


# ---------------------------------------------------------------- requests


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat completions request for a Responses API request; raises InvalidRequest (400)
    naming the field a chat completions upstream cannot serve."""
    refuse_stateful(body)
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("'instructions' must be a string.", param="instructions")
    messages += input_messages(body.get("input"))
    if not messages:
        raise InvalidRequest("'input' holds nothing to answer.", param="input")
    chat: dict[str, Any] = {key: value for key, value in body.items() if key not in DROPPED}
    chat["messages"] = messages
    if body.get("tools"):
        chat["tools"] = chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = chat_tool_choice(body["tool_choice"])
    chat.update(text_options(body.get("text")))
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream"):
        chat["stream"] = True
    return chat


def refuse_stateful(body: dict[str, Any]) -> None:
    for field, why in STATEFUL.items():
        if body.get(field) is not None:
            raise InvalidRequest(f"'{field}' is not supported by this model's upstream: {why}.", param=field)
    if body.get("background"):
        raise InvalidRequest(
            "'background' is not supported by this model's upstream: background mode needs responses the "
            "gateway would keep.",
            param="background",
        )
    if body.get("truncation") not in (None, "disabled"):
        raise InvalidRequest(
            "'truncation' may only be 'disabled' for this model's upstream: it cannot drop input items.",
            param="truncation",
        )


def input_messages(value: Any) -> list[dict[str, Any]]:
    """Chat messages for `input`: text, or a list of items (messages, function calls and their outputs)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of input items.", param="input")
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(message(item, where))
        elif kind == "function_call":
            tool_call(messages, item, where)
        elif kind == "function_call_output":
            messages.append(tool_output(item, where))
        elif kind == "reasoning":
            continue  # a chat model has no use for another model's reasoning
        elif kind == "item_reference":
            raise InvalidRequest(
                f"'{where}' refers to a stored item; the gateway keeps none (store is treated as false): send the "
                "item itself (with the Vercel AI SDK, set providerOptions.openai.store to false).",
                param=where,
            )
        else:
            raise InvalidRequest(
                f"'{where}.type' {kind!r} is not supported by this model's upstream, which speaks chat completions.",
                param=f"{where}.type",
            )
    return messages


def message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"'{where}.role' must be one of user, assistant, system, developer.", param=f"{where}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content")
    parts = [content_part(part, f"{where}.content[{position}]") for position, part in enumerate(content)]
    if role == "assistant":  # a chat assistant message holds text (and a refusal), not input parts
        texts = [part.get("text") or "" for part in parts if part["type"] == "text"]
        refusals = [part.get("refusal") or "" for part in parts if part["type"] == "refusal"]
        reply: dict[str, Any] = {"role": role, "content": "".join(texts)}
        if refusals:
            reply["refusal"] = "".join(refusals)
        return reply
    return {"role": role, "content": parts}


def content_part(part: Any, where: str) -> dict[str, Any]:
    """A chat content part for a Responses content part."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text"):
        if not isinstance(part.get("text"), str):
            raise InvalidRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "refusal":
        return {"type": "refusal", "refusal": str(part.get("refusal") or "")}
    if kind == "input_image":
        if part.get("file_id") or not isinstance(part.get("image_url"), str):
            raise InvalidRequest(
                f"'{where}' must give an image_url (a URL or a data: URL): file ids name files stored at OpenAI.",
                param=f"{where}.image_url",
            )
        image = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file" and isinstance(part.get("file_data"), str) and not part.get("file_id"):
        file = {"file_data": part["file_data"]}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise InvalidRequest(
        f"'{where}' of type {kind!r} is not supported by this model's upstream (file ids and file URLs name files "
        "stored elsewhere).",
        param=where,
    )


def tool_call(messages: list[dict[str, Any]], item: dict[str, Any], where: str) -> None:
    """A function_call item joins the assistant message just before it, or starts one."""
    for key in ("call_id", "name", "arguments"):
        if not isinstance(item.get(key), str):
            raise InvalidRequest(f"'{where}.{key}' must be a string.", param=f"{where}.{key}")
    call = {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
        if not last.get("content"):
            last["content"] = None
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def tool_output(item: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(item.get("call_id"), str):
        raise InvalidRequest(f"'{where}.call_id' must be a string.", param=f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, list):  # a tool message of chat holds text parts only
        texts = []
        for position, part in enumerate(output):
            converted = content_part(part, f"{where}.output[{position}]")
            if converted["type"] != "text":
                raise InvalidRequest(
                    f"'{where}.output[{position}]' must be text for this model's upstream.",
                    param=f"{where}.output[{position}]",
                )
            texts.append(converted["text"])
        output = "".join(texts)
    if not isinstance(output, str):
        raise InvalidRequest(f"'{where}.output' must be a string or an array of parts.", param=f"{where}.output")
    return {"role": "tool", "tool_call_id": item["call_id"], "content": output}


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    converted = []
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise InvalidRequest(
                f"'tools[{index}].type' {kind!r} is not supported by this model's upstream: built-in tools "
                "need a model that serves the Responses API; function tools are translated.",
                param=f"tools[{index}].type",
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"'tools[{index}].name' must be a string.", param=f"tools[{index}].name")
        function: dict[str, Any] = {
            "name": tool["name"],
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
        }
        if tool.get("description"):
            function["description"] = tool["description"]
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        converted.append({"type": "function", "function": function})
    return converted


def chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        "'tool_choice' must be auto, none, required or a function for this model's upstream.", param="tool_choice"
    )


def text_options(text: Any) -> dict[str, Any]:
    """`text.format` as chat's response_format, `text.verbosity` as its verbosity."""
    if text is None:
        return {}
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    options: dict[str, Any] = {}
    if text.get("verbosity") is not None:
        options["verbosity"] = text["verbosity"]
    form = text.get("format")
    kind = form.get("type") if isinstance(form, dict) else None
    if form is None or kind == "text":
        return options
    if kind == "json_object":
        options["response_format"] = {"type": "json_object"}
    elif kind == "json_schema" and isinstance(form.get("name"), str) and isinstance(form.get("schema"), dict):
        schema = {key: form[key] for key in ("name", "schema", "strict", "description") if form.get(key) is not None}
        options["response_format"] = {"type": "json_schema", "json_schema": schema}
    else:
        raise InvalidRequest(
            "'text.format' must be text, json_object, or json_schema with a name and a schema.", param="text.format"
        )
    return options


# ---------------------------------------------------------------- answers


def base_response(body: dict[str, Any], *, model: str, max_output_tokens: int) -> dict[str, Any]:
    """The Response's fields that echo the request, as OpenAI's do (status in_progress, no output):
    only what a Response may hold, whatever the request held (what the translation did not read
    went upstream unchecked, and a lenient upstream takes it)."""
    response = {
        "id": new_id("resp"),
        "object": "response",
        "created_at": 0,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": max_output_tokens,
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": number_or_null(body, "temperature", 1.0),
        "text": echoed_text(body.get("text")),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": [echoed_tool(tool) for tool in body.get("tools") or ()],
        "top_p": number_or_null(body, "top_p", 1.0),
        "truncation": "disabled",
        "metadata": metadata if is_metadata(metadata := body.get("metadata")) else {},
    }
    if isinstance(body.get("user"), str):
        response["user"] = body["user"]
    return response


def number_or_null(body: dict[str, Any], field: str, default: float) -> Any:
    value = body.get(field, default)
    return value if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)) else default


def echoed_text(text: Any) -> dict[str, Any]:
    """`text` as a Response has it: the format chat_body accepted (text when none), and a known verbosity."""
    text = text if isinstance(text, dict) else {}
    echoed: dict[str, Any] = {"format": text["format"] if isinstance(text.get("format"), dict) else {"type": "text"}}
    if "verbosity" in text and text["verbosity"] in VERBOSITIES:
        echoed["verbosity"] = text["verbosity"]
    return echoed


def echoed_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """A function tool (chat_tools has checked its type and name) as a Response lists it: with its
    `parameters` and `strict`, null when the request left them out."""
    echoed = {"type": "function", "name": tool["name"]}
    if isinstance(tool.get("description"), str):
        echoed["description"] = tool["description"]
    parameters, strict = tool.get("parameters"), tool.get("strict")
    return {
        **echoed,
        "parameters": parameters if isinstance(parameters, dict) else None,
        "strict": strict if isinstance(strict, bool) else None,
    }


def is_metadata(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


def status_of(finish_reason: Any) -> tuple[str, str | None]:
    """The Response's status and incomplete reason for chat's finish_reason."""
    return FINISH.get(finish_reason, ("completed", None)) if isinstance(finish_reason, str) else ("completed", None)


def response_from_completion(completion: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """A `chat.completion` (its first choice) as a `Response`."""
    choices = completion.get("choices") or [{}]
    choice = choices[0]
    reply = choice.get("message") or {}
    status, reason = status_of(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    parts: list[dict[str, Any]] = []
    if reply.get("content") or not (reply.get("tool_calls") or reply.get("refusal")):
        parts.append({"type": "output_text", "text": reply.get("content") or "", "annotations": [], "logprobs": []})
    if reply.get("refusal"):
        parts.append({"type": "refusal", "refusal": reply["refusal"]})
    output: list[dict[str, Any]] = []
    if parts:
        output.append(
            {"id": new_id("msg"), "type": "message", "status": item_status, "role": "assistant", "content": parts}
        )
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        output.append(
            {
                "id": new_id("fc"),
                "type": "function_call",
                "status": item_status,
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "arguments": function.get("arguments") or "",
            }
        )
    response = {**base, "created_at": completion.get("created") or base["created_at"]}
    response["model"] = completion.get("model") or base["model"]
    usage = responses_usage(completion.get("usage") or {})
    return finished_response(response, output, status, reason, usage)


class ResponsesStream:
    """`chat.completion.chunk`s, after the limiter, as the Responses event sequence: a stateful
    object with no I/O, and the stream's output stage (pipeline.chunks.ChunkOutput)."""

    __slots__ = ("calls", "finish_reason", "started", "state")

    def __init__(self, base: dict[str, Any]) -> None:
        self.state = ResponseState(base)
        self.started = False
        self.calls: dict[int, int] = {}  # a chat tool call's index -> its function_call item's output index
        self.finish_reason: str | None = None

    def add(self, chunk: dict[str, Any]) -> list[bytes]:
        events = self._begin(chunk)
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for kind, field in (("output_text", "content"), ("refusal", "refusal")):
                if delta.get(field):
                    events += self.state.text(kind, delta[field])
            for position, call in enumerate(delta.get("tool_calls") or ()):
                events += self._tool_call(call, position)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return [encode_event(event) for event in events]

    def _begin(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        if self.started:
            return []
        self.started = True
        response = self.state.response
        response["created_at"] = chunk.get("created") or response["created_at"]
        response["model"] = chunk.get("model") or response["model"]
        return self.state.start()

    def _tool_call(self, call: Any, position: int) -> list[dict[str, Any]]:
        if not isinstance(call, dict):
            return []
        index = call.get("index", position)
        function = call.get("function") or {}
        events: list[dict[str, Any]] = []
        if index not in self.calls:
            self.calls[index], events = self.state.function_call(
                call.get("id") or new_id("call"), function.get("name") or ""
            )
        if function.get("arguments"):
            events += self.state.arguments(self.calls[index], function["arguments"])
        return events

    def end(self, usage: dict[str, Any]) -> list[bytes]:
        """The events that end the Response, given the stream's usage (chat completions' names)."""
        status, reason = status_of(self.finish_reason)
        events = [] if self.started else self._begin({})
        events += self.state.close("incomplete" if status == "incomplete" else "completed")
        events += self.state.finish(status, reason, responses_usage(usage))
        return [encode_event(event) for event in events]

    def error_event(self, error: GatewayError) -> bytes:
        """The `error` event that ends a stream broken off after its start."""
        return encode_event(
            self.state.event("error", code=error.code or error.type, message=error.message, param=error.param)
        )
