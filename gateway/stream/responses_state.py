"""One Response of OpenAI's Responses API as its event stream goes, as pure code.

The event names and fields are the API reference's "Streaming events" (openapi.yaml:
`ResponseStreamEvent` and the `Response*Event` schemas it lists). A `ResponseState`
either makes the events of a Response it is told about, piece by piece (the
translation of a chat completions stream, providers.responses), or follows the events
an upstream that speaks the Responses API sends (`observe`, for stream.responses_limiter),
and in both cases can close what is still open and end the Response: after the last
piece, or after a cut.

    response.created, response.in_progress
    response.output_item.added                 (a message, or a function_call)
      response.content_part.added              (a message's output_text or refusal part)
      response.output_text.delta ... .done     (response.refusal.delta ... .done)
      response.content_part.done
      response.function_call_arguments.delta ... .done
    response.output_item.done
    response.completed | response.incomplete   (the whole Response, with its usage)
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

TERMINAL = frozenset(("response.completed", "response.incomplete", "response.failed"))
TEXT_KINDS = {"output_text": "text", "refusal": "refusal"}  # a content part's type, and its text field
DELTA_EVENTS = {"output_text": "response.output_text.delta", "refusal": "response.refusal.delta"}
DONE_EVENTS = {"output_text": "response.output_text.done", "refusal": "response.refusal.done"}


def new_id(prefix: str) -> str:
    """An id of OpenAI's form: `resp_...`, `msg_...`, `fc_...`."""
    return f"{prefix}_{uuid.uuid4().hex}"


def encode_event(event: dict[str, Any]) -> bytes:
    """One event as OpenAI sends them: `event: <type>` and its JSON on one `data:` line."""
    return b"".join((b"event: ", str(event["type"]).encode(), b"\ndata: ", orjson.dumps(event), b"\n\n"))


def responses_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """Chat completions' usage in the Responses API's names (`ResponseUsage`)."""
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    completion = completion if isinstance(completion, int) else 0
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else None
    reasoning = completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else None
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached if isinstance(cached, int) else 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        "total_tokens": prompt + completion,
    }


def chat_usage(usage: Any) -> dict[str, Any] | None:
    """A Responses API usage in chat completions' names (the request record's), or None when it
    is not one a client could read."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    result: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    details = usage.get("input_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        result["prompt_tokens_details"] = {"cached_tokens": details["cached_tokens"]}
    return result


def finished_response(
    response: dict[str, Any], output: list[dict[str, Any]], status: str, reason: str | None, usage: dict[str, Any]
) -> dict[str, Any]:
    """The Response as it ends: `completed`, or `incomplete` with `incomplete_details.reason`
    (max_output_tokens, content_filter)."""
    return {
        **response,
        "status": status,
        "completed_at": int(time.time()) if status == "completed" else None,
        "incomplete_details": {"reason": reason} if reason else None,
        "output": output,
        "usage": usage,
    }


class ResponseState:
    """The Response, its output items by output_index, and the next sequence number."""

    __slots__ = ("done_parts", "items", "message", "open", "response", "sequence")

    def __init__(self, response: dict[str, Any] | None = None) -> None:
        self.response: dict[str, Any] = response or {}  # the object response.created gave (status in_progress)
        self.items: dict[int, dict[str, Any]] = {}  # output items so far, their text as delivered
        self.open: set[int] = set()  # output indexes whose output_item.done has not come
        self.done_parts: set[tuple[int, int]] = set()  # (output_index, content_index) whose part is done
        self.message: int | None = None  # the output index of the message being written (making events)
        self.sequence = 0  # the next event's sequence_number

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self.sequence}
        self.sequence += 1
        return event

    @property
    def output(self) -> list[dict[str, Any]]:
        return [self.items[index] for index in sorted(self.items)]

    # ------------------------------------------------------------ making events

    def start(self) -> list[dict[str, Any]]:
        snapshot = {**self.response, "status": "in_progress", "output": []}
        return [
            self.event("response.created", response=snapshot),
            self.event("response.in_progress", response=snapshot),
        ]

    def text(self, kind: str, delta: str) -> list[dict[str, Any]]:
        """`delta` of the message's text (kind output_text) or refusal: the message and the part
        are added first when they are not open yet."""
        events = []
        if self.message is None or self.message not in self.open:
            self.message = len(self.items)
            item: dict[str, Any] = {
                "id": new_id("msg"),
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self.items[self.message] = item
            self.open.add(self.message)
            events.append(
                self.event("response.output_item.added", output_index=self.message, item={**item, "content": []})
            )
        index, item = self.message, self.items[self.message]
        parts: list[dict[str, Any]] = item["content"]
        if not parts or parts[-1]["type"] != kind or (index, len(parts) - 1) in self.done_parts:
            part: dict[str, Any] = {"type": kind, TEXT_KINDS[kind]: ""}
            if kind == "output_text":
                part.update(annotations=[], logprobs=[])
            parts.append(part)
            events.append(
                self.event(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=len(parts) - 1,
                    part=dict(part),
                )
            )
        parts[-1][TEXT_KINDS[kind]] += delta
        fields: dict[str, Any] = {"item_id": item["id"], "output_index": index, "content_index": len(parts) - 1}
        if kind == "output_text":
            fields["logprobs"] = []
        events.append(self.event(DELTA_EVENTS[kind], **fields, delta=delta))
        return events

    def function_call(self, call_id: str, name: str) -> tuple[int, list[dict[str, Any]]]:
        """A new function_call item: its output index, and the event that adds it."""
        index = len(self.items)
        item = {
            "id": new_id("fc"),
            "type": "function_call",
            "status": "in_progress",
            "call_id": call_id,
            "name": name,
            "arguments": "",
        }
        self.items[index] = item
        self.open.add(index)
        return index, [self.event("response.output_item.added", output_index=index, item=dict(item))]

    def arguments(self, index: int, delta: str) -> list[dict[str, Any]]:
        item = self.items[index]
        item["arguments"] += delta
        return [
            self.event("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=delta)
        ]

    def close(self, status: str) -> list[dict[str, Any]]:
        """The events that end every open part and item, each item given `status`
        (completed, or incomplete after a cut)."""
        events: list[dict[str, Any]] = []
        for index in sorted(self.open):
            item = self.items[index]
            if item.get("type") == "message":
                for position, part in enumerate(item.get("content") or ()):
                    if (index, position) not in self.done_parts and isinstance(part, dict):
                        events += self._close_part(index, position, item, part)
            elif item.get("type") == "function_call":
                events.append(
                    self.event(
                        "response.function_call_arguments.done",
                        item_id=item.get("id"),
                        output_index=index,
                        name=item.get("name"),
                        arguments=item.get("arguments"),
                    )
                )
            item["status"] = status
            events.append(self.event("response.output_item.done", output_index=index, item=item))
        self.open.clear()
        return events

    def _close_part(
        self, index: int, position: int, item: dict[str, Any], part: dict[str, Any]
    ) -> list[dict[str, Any]]:
        self.done_parts.add((index, position))
        kind = part.get("type")
        where = {"item_id": item.get("id"), "output_index": index, "content_index": position}
        events = []
        if kind in TEXT_KINDS:
            field = TEXT_KINDS[kind]
            extra: dict[str, Any] = {"logprobs": []} if kind == "output_text" else {}
            events.append(self.event(DONE_EVENTS[kind], **where, **extra, **{field: part.get(field, "")}))
        events.append(self.event("response.content_part.done", **where, part=part))
        return events

    def finish(self, status: str, reason: str | None, usage: dict[str, Any]) -> list[dict[str, Any]]:
        """The last event: response.completed, or response.incomplete with its reason."""
        response = finished_response(self.response, self.output, status, reason, usage)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return [self.event(kind, response=response)]

    # ------------------------------------------------------------ following an upstream's events

    def observe(self, event: dict[str, Any]) -> None:
        """Take in an upstream's event (its fields as the API reference gives them); what does not
        fit what came before is left out of the state, never raised about."""
        sequence = event.get("sequence_number")
        if type(sequence) is int:
            self.sequence = max(self.sequence, sequence + 1)
        kind = event.get("type")
        index = event.get("output_index")
        if kind in ("response.created", "response.in_progress", "response.queued"):
            if isinstance(event.get("response"), dict):
                self.response = event["response"]
        elif kind == "response.output_item.added" and type(index) is int and isinstance(event.get("item"), dict):
            item = dict(event["item"])
            if isinstance(item.get("content"), list):
                item["content"] = [dict(part) if isinstance(part, dict) else part for part in item["content"]]
            self.items[index] = item
            self.open.add(index)
        elif kind == "response.output_item.done" and type(index) is int and isinstance(event.get("item"), dict):
            self.items[index] = event["item"]
            self.open.discard(index)
        elif type(index) is int and index in self.items:
            self._observe_part(kind, self.items[index], index, event)

    def _observe_part(self, kind: Any, item: dict[str, Any], index: int, event: dict[str, Any]) -> None:
        position = event.get("content_index")
        parts = item.get("content")
        if kind == "response.function_call_arguments.delta" and isinstance(event.get("delta"), str):
            item["arguments"] = str(item.get("arguments") or "") + event["delta"]
        elif kind == "response.function_call_arguments.done" and isinstance(event.get("arguments"), str):
            item["arguments"] = event["arguments"]
        elif not isinstance(parts, list) or type(position) is not int:
            return
        elif kind == "response.content_part.added" and isinstance(event.get("part"), dict):
            while len(parts) <= position:
                parts.append({})
            parts[position] = dict(event["part"])
        elif kind == "response.content_part.done":
            self.done_parts.add((index, position))
            if position < len(parts) and isinstance(event.get("part"), dict):
                parts[position] = event["part"]
        elif kind in ("response.output_text.delta", "response.refusal.delta") and position < len(parts):
            part = parts[position]
            field = "text" if kind == "response.output_text.delta" else "refusal"
            if isinstance(part, dict) and isinstance(event.get("delta"), str):
                part[field] = str(part.get(field) or "") + event["delta"]
