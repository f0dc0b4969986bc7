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
