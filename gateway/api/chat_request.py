"""What the gateway reads from a chat completions request (OpenAI's `CreateChatCompletionRequest`):
only what routing and safety need.

Everything else in the body is forwarded as it came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Limits
from ..errors import InvalidRequest
from .parsing import model_of, positive_int, stream_of

TOKEN_LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
MOST_CHOICES = 128  # n's maximum in OpenAI's CreateChatCompletionRequest


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    requested_max_tokens: int | None
    choices: int
    include_usage: bool

    @property
    def prompt(self) -> Any:
        """The messages, as the client sent them."""
        return self.body["messages"]

    def completion_cap(self, limits: Limits) -> int:
        """The most completion tokens its answer may hold under `limits`: max_tokens a choice."""
        return min(self.requested_max_tokens or limits.max_tokens, limits.max_tokens) * self.choices


def parse_chat_request(body: dict[str, Any], *, default_model: str | None) -> ChatRequest:
    model = model_of(body, default_model=default_model)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array of message objects.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"'messages[{index}]' must be an object.", param=f"messages[{index}]")
        if not isinstance(message.get("role"), str) or not message["role"]:
            raise InvalidRequest(f"'messages[{index}].role' must be a string.", param=f"messages[{index}].role")

    stream = stream_of(body)

    requested = None
    for name in TOKEN_LIMIT_FIELDS:
        value = body.get(name)
        if value is None:
            continue
        if not positive_int(value):
            raise InvalidRequest(f"'{name}' must be a positive integer.", param=name)
        requested = value if requested is None else min(requested, value)

    choices = body.get("n")
    if choices is None:
        choices = 1
    elif not positive_int(choices) or choices > MOST_CHOICES:
        raise InvalidRequest(f"'n' must be an integer from 1 to {MOST_CHOICES}.", param="n")

    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    include_usage = bool(options and options.get("include_usage"))

    return ChatRequest(
        body=body,
        model=model,
        stream=stream,
        requested_max_tokens=requested,
        choices=choices,
        include_usage=include_usage,
    )
