"""The shapes of OpenAI's chat completions and chunks, checked where an upstream sends them.

Only the fields a client reads are checked, and only their types, so that the check
stays cheap on every chunk: id, object, created, model, and each choice's index,
finish_reason, logprobs and the role, content, refusal and tool_calls of its delta
(or message). The SDKs expect a string or null where content is: anything else there
is an upstream protocol error, never passed on. A null stands for an absent field.
Fields the gateway does not know are left alone.
"""

from __future__ import annotations

from typing import Any

from ..errors import UpstreamProtocolError

CHUNK = "chat.completion.chunk"
COMPLETION = "chat.completion"
TEXT_FIELDS = frozenset(("content", "refusal", "role"))  # a string or null each


def check_chunk(chunk: dict[str, Any]) -> None:
    """Raises UpstreamProtocolError unless `chunk` has a `chat.completion.chunk`'s shape.

    Written for speed, as it runs on every chunk: one function, and the strings and
    nulls that a delta nearly always holds pass with one test each.
    """
    get = chunk.get
    if get("object") != CHUNK or type(get("id")) is not str or type(get("created")) is not int:
        raise identity_error("chunk", CHUNK)
    if type(get("model")) is not str:
        raise identity_error("chunk", CHUNK)
    choices = get("choices")
    if type(choices) is not list:
        raise shape_error("chunk", "choices", "an array")
    for choice in choices:
        if type(choice) is not dict:
            raise shape_error("chunk", "choices[]", "an object")
        get = choice.get
        delta = get("delta")
        finish_reason = get("finish_reason")
        if type(get("index")) is not int:
            raise shape_error("chunk", "choices[].index", "an integer")
        if type(delta) is not dict:
            raise shape_error("chunk", "choices[].delta", "an object")
        if finish_reason is not None and type(finish_reason) is not str:
            raise shape_error("chunk", "choices[].finish_reason", "a string or null")
        if len(delta) != 1 or type(delta.get("content")) is not str:  # else the usual {"content": "..."}
            for key, value in delta.items():
                if value is not None and (type(value) is not str or key == "tool_calls"):
                    check_field(key, value, "delta", "chunk")
        logprobs = get("logprobs")
        if logprobs is not None and not valid_logprobs(logprobs):
            raise shape_error("chunk", "choices[].logprobs", "null or an object of arrays (content, refusal)")


def check_completion(completion: dict[str, Any]) -> None:
    """Raises UpstreamProtocolError unless `completion` has a `chat.completion`'s shape."""
    check_identity(completion, COMPLETION, "response")
    for choice in choices_of(completion, "response"):
        check_choice(choice, "message", "response")


def check_identity(value: dict[str, Any], kind: str, what: str) -> None:
    if (
        type(value.get("id")) is not str
        or value.get("object") != kind
        or type(value.get("created")) is not int
        or type(value.get("model")) is not str
    ):
        raise identity_error(what, kind)


def identity_error(what: str, kind: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"The upstream sent a {what} whose id, object, created or model is not a {kind}'s.")


def choices_of(value: dict[str, Any], what: str) -> list[Any]:
    choices = value.get("choices")
    if type(choices) is not list:
        raise shape_error(what, "choices", "an array")
    return choices


def check_choice(choice: Any, body: str, what: str) -> None:
    """A choice: its index, finish_reason, logprobs, and its `body` (delta or message)."""
    if type(choice) is not dict or type(choice.get("index")) is not int:
        raise shape_error(what, "choices[].index", "an integer")
    message = choice.get(body)
    if type(message) is not dict:
        raise shape_error(what, f"choices[].{body}", "an object")
    for key, value in message.items():
        if value is not None:
            check_field(key, value, body, what)
    finish_reason = choice.get("finish_reason")
    if finish_reason is not None and type(finish_reason) is not str:
        raise shape_error(what, "choices[].finish_reason", "a string or null")
    logprobs = choice.get("logprobs")
    if logprobs is not None and not valid_logprobs(logprobs):
        raise shape_error(what, "choices[].logprobs", "null or an object of arrays (content, refusal)")


def check_embeddings(document: dict[str, Any]) -> None:
    """Raises UpstreamProtocolError unless `document` has the shape of OpenAI's
    `CreateEmbeddingResponse`: `data`, an array of `{"index", "embedding"}` whose embedding is
    an array of numbers or (encoding_format base64) a string. The vectors' numbers are not
    looked at one by one: they go to the client as the upstream sent them."""
    if document.get("object") != "list":
        raise shape_error("embeddings response", "object", '"list"')
    data = document.get("data")
    if type(data) is not list:
        raise shape_error("embeddings response", "data", "an array")
    for item in data:
        if type(item) is not dict or type(item.get("index")) is not int:
            raise shape_error("embeddings response", "data[].index", "an integer")
        if type(item.get("embedding")) not in (list, str):
            raise shape_error("embeddings response", "data[].embedding", "an array of numbers or a base64 string")


def check_field(key: str, value: Any, body: str, what: str) -> None:
    """One field of a delta or message, not null."""
    if key in TEXT_FIELDS:
        if type(value) is not str:
            raise shape_error(what, f"choices[].{body}.{key}", "a string or null")
    elif key == "tool_calls":
        check_tool_calls(value, f"choices[].{body}.tool_calls", what, streamed=body == "delta")


def check_tool_calls(calls: Any, where: str, what: str, *, streamed: bool) -> None:
    if type(calls) is not list:
        raise shape_error(what, where, "an array")
    for call in calls:
        if type(call) is not dict:
            raise shape_error(what, f"{where}[]", "an object")
        if streamed and type(call.get("index")) is not int:
            raise shape_error(what, f"{where}[].index", "an integer")
        for key in ("id", "type"):
            if call.get(key) is not None and type(call[key]) is not str:
                raise shape_error(what, f"{where}[].{key}", "a string or null")
        function = call.get("function")
        if function is None:
            continue
        if type(function) is not dict:
            raise shape_error(what, f"{where}[].function", "an object")
        for key in ("name", "arguments"):
            if function.get(key) is not None and type(function[key]) is not str:
                raise shape_error(what, f"{where}[].function.{key}", "a string or null")


def valid_logprobs(logprobs: Any) -> bool:
    if type(logprobs) is not dict:
        return False
    return all(logprobs.get(key) is None or type(logprobs[key]) is list for key in ("content", "refusal"))


def shape_error(what: str, field: str, expected: str) -> UpstreamProtocolError:
    return UpstreamProtocolError(f"The upstream sent a {what} whose {field} is not {expected}.")
