"""The event streams of the streamed endpoints, described event by event: each schema is one
server-sent event as OpenAPI 3.2 describes it (`data` holds JSON of a `contentSchema`, `event`
the event's name), and a stream's schema is the `anyOf` of its events.
"""

from __future__ import annotations

from typing import Any

from .schemas import ref


def event(data: dict[str, Any], *, name: str | None = None, description: str = "") -> dict[str, Any]:
    """One server-sent event as OpenAPI 3.2 describes it (`schema` of text/event-stream, one event):
    `data` holds JSON of the schema `data`; `name`: the event's `event:` field (None: unnamed)."""
    described: dict[str, Any] = {
        "type": "object",
        "properties": {
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
        "required": ["data"],
    }
    if name is not None:
        described["properties"]["event"] = {"const": name}
        described["required"].append("event")
    if description:
        described["description"] = description
    return described


CHAT_STREAM = {
    "description": (
        "With `stream: true`, server-sent events: `data: ` then one `chat.completion.chunk` a line, the last "
        '`data: [DONE]`. An error after the stream has started comes as a last event `data: {"error": {...}}` and '
        "the stream closes without `[DONE]`. A `: ping` comment goes out every `server.sse_keepalive` seconds. "
        "(The schema describes one event.)"
    ),
    "anyOf": [
        event(ref("GatewayChatCompletionChunk"), description="A chunk."),
        {
            "type": "object",
            "description": "The end of a complete answer.",
            "properties": {"data": {"const": "[DONE]"}},
            "required": ["data"],
        },
        event(ref("ErrorResponse"), description="An error after the stream began: the last event."),
    ],
}


def debate_event(name: str, description: str, **properties: Any) -> dict[str, Any]:
    data = {"type": "object", "properties": properties, "required": list(properties)}
    return event(data, name=name, description=description)


ROUND = {"type": "integer", "minimum": 1}
DEBATE_STREAM = {
    "description": (
        "Server-sent named events (`event:` line, then one `data:` line of JSON), in this order: for each "
        "round, `round`, then each member's `member.delta`s and its `member.done` or `member.error`; then "
        "`verdict.delta`s (for `fastest` and `vote`, the winner's text), and last `done`. An error before the end "
        "is an `error` event with OpenAI's error object. (The schema describes one event.)"
    ),
    "anyOf": [
        debate_event("round", "A round begins.", round=ROUND),
        debate_event(
            "member.delta",
            "A member's text as it streams.",
            round=ROUND,
            member={"type": "string"},
            content={"type": "string"},
        ),
        debate_event(
            "member.done",
            "A member's answer is complete.",
            round=ROUND,
            member={"type": "string"},
            finish_reason={"type": ["string", "null"]},
            usage={"anyOf": [ref("CompletionUsage"), {"type": "null"}]},
        ),
        debate_event(
            "member.error", "A member failed (left out).", round=ROUND, member={"type": "string"}, error=ref("Error")
        ),
        debate_event("verdict.delta", "The final answer as it streams.", content={"type": "string"}),
        debate_event(
            "done",
            "The council's work, and the usage of every upstream call.",
            quorum=ref("Quorum"),
            usage=ref("CompletionUsage"),
        ),
        event(ref("ErrorResponse"), name="error", description="An error before the end: the last event."),
    ],
}


RESPONSES_MADE = (  # the events of a translated route, by name: the schema of its data, and what it says
    ("response.created", "ResponseCreatedEvent", "The Response begins: `status: in_progress`, no output yet."),
    ("response.in_progress", "ResponseInProgressEvent", "The same Response, in progress."),
    (
        "response.output_item.added",
        "ResponseOutputItemAddedEvent",
        "An output item begins: a message or a function call.",
    ),
    ("response.content_part.added", "ResponseContentPartAddedEvent", "A message's part begins: text or a refusal."),
    ("response.output_text.delta", "ResponseTextDeltaEvent", "A piece of the text."),
    ("response.refusal.delta", "ResponseRefusalDeltaEvent", "A piece of a refusal."),
    ("response.function_call_arguments.delta", "ResponseFunctionCallArgumentsDeltaEvent", "A piece of the arguments."),
    ("response.output_text.done", "ResponseTextDoneEvent", "A part's whole text."),
    ("response.refusal.done", "ResponseRefusalDoneEvent", "A part's whole refusal."),
    ("response.function_call_arguments.done", "ResponseFunctionCallArgumentsDoneEvent", "A call's whole arguments."),
    ("response.content_part.done", "ResponseContentPartDoneEvent", "A message's part is complete."),
    ("response.output_item.done", "ResponseOutputItemDoneEvent", "An output item is complete (`incomplete` if cut)."),
    ("response.completed", "ResponseCompletedEvent", "The whole Response, with its usage: the last event."),
    (
        "response.incomplete",
        "ResponseIncompleteEvent",
        "The whole Response, cut short (`incomplete_details.reason`: `max_output_tokens`, or `content_filter`): the "
        "last event.",
    ),
)
RESPONSES_STREAM = {
    "description": (
        "With `stream: true`, OpenAI's Responses events: each an `event:` line naming its type, then one `data:` line "
        "of its JSON, numbered by `sequence_number`. In order: `response.created`, `response.in_progress`, then for "
        "each output item its `response.output_item.added`, its parts' `.added`, `.delta`s and `.done`s (or a "
        "function call's arguments), its `response.output_item.done`, and last `response.completed` or "
        "`response.incomplete`; no `[DONE]`. An answer cut at `max_output_tokens` ends with the cut delta, the "
        "`.done` events of what was open, then `response.incomplete`. An error after the stream has started is a last "
        "`error` event, and no `response.completed` follows. A `: ping` comment goes out every "
        "`server.sse_keepalive` seconds. A forwarded route passes on the upstream's other events too. (The schema "
        "describes one event.)"
    ),
    "anyOf": [
        *(event(ref(schema), name=name, description=description) for name, schema, description in RESPONSES_MADE),
        event(ref("ResponseErrorEvent"), name="error", description="An error after the stream began: the last event."),
        {
            "type": "object",
            "description": (
                "A forwarded route only: any other of OpenAI's events (`response.queued`, `response.failed`, "
                "reasoning, built-in tool calls, ...), as the upstream sent it."
            ),
            "properties": {
                "event": {"type": "string", "not": {"enum": [name for name, _, _ in RESPONSES_MADE] + ["error"]}},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": ref("ResponseStreamEvent"),
                },
            },
            "required": ["event", "data"],
        },
    ],
}
