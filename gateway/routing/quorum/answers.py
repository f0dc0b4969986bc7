"""One answer of a council (a member's in a round, or the judge's), built from the deltas of
its stream, and the council's usage summed over every call.

Pure code: the member calls (api.council) feed each limited chunk's delta to `Answer.add`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ...errors import GatewayError

USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")
MEMBER, JUDGE = "member", "judge"  # the roles of a call


@dataclass(slots=True, eq=False)
class Answer:
    """What one call answered, filled in as its stream comes (`add`), or how it failed (`failure`)."""

    member: str  # the route asked
    round: int  # 1, 2, ...; the judge's is the last round's
    role: str = MEMBER
    provider: str = ""  # of the target that answered (or of the last one tried)
    model: str = ""  # the upstream model
    content: str = ""
    refusal: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # whole calls, merged from their deltas
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None  # OpenAI's usage; None: unknown (failed, or stopped before it began)
    duration_ms: int = 0  # from the call's start to its end
    truncated: bool = False  # the gateway cut it to max_tokens
    failure: GatewayError | None = None

    def add(self, delta: dict[str, Any], finish_reason: str | None) -> None:
        """Take in one chunk's delta for choice 0 (OpenAI's `ChatCompletionStreamResponseDelta`)."""
        text = delta.get("content")
        if isinstance(text, str):
            self.content += text
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self.refusal = (self.refusal or "") + refusal
        for position, call in enumerate(delta.get("tool_calls") or ()):
            if isinstance(call, dict):
                self._add_tool_call(call, position)
        if finish_reason:
            self.finish_reason = finish_reason

    def _add_tool_call(self, delta: dict[str, Any], position: int) -> None:
        """Merge a tool call's delta by its index: the first gives id, type and name, the
        arguments come in pieces."""
        index = delta.get("index", position)
        found = next((call for call in self.tool_calls if call["index"] == index), None)
        given = delta.get("function")
        function: dict[str, Any] = given if isinstance(given, dict) else {}
        if found is None:
            found = {"index": index, "id": delta.get("id"), "type": delta.get("type") or "function"}
            found["function"] = {"name": function.get("name") or "", "arguments": ""}
            self.tool_calls.append(found)
        elif delta.get("id") and not found["id"]:
            found["id"] = delta["id"]
        if function.get("name") and not found["function"]["name"]:
            found["function"]["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            found["function"]["arguments"] += function["arguments"]

    @property
    def usable(self) -> bool:
        """Whether it counts towards the quorum: it did not fail, and holds something."""
        return self.failure is None and bool(self.content.strip() or self.refusal or self.tool_calls)

    @property
    def error(self) -> dict[str, Any] | None:
        """`{"message", "code"}` of its failure (the code, else the error's type), or None."""
        if self.failure is None:
            return None
        return {"message": self.failure.message, "code": self.failure.code or self.failure.type}

    def message_delta(self) -> dict[str, Any]:
        """The whole answer as one chunk delta (what the client gets when a member's answer wins a vote)."""
        delta: dict[str, Any] = {"content": self.content}
        if self.refusal:
            delta["refusal"] = self.refusal
        if self.tool_calls:
            delta["tool_calls"] = [dict(call) for call in self.tool_calls]
        return delta

    def entry(self) -> dict[str, Any]:
        """The answer in the `quorum` field of the client's answer (a round's, or the judge's)."""
        entry: dict[str, Any] = {
            "member": self.member,
            "provider": self.provider,
            "model": self.model,
            "content": self.content,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "duration_ms": self.duration_ms,
            "error": self.error,
        }
        if self.refusal:
            entry["refusal"] = self.refusal
        if self.tool_calls:
            entry["tool_calls"] = [
                {key: value for key, value in call.items() if key != "index"} for call in self.tool_calls
            ]
        return entry


def total_usage(usages: Iterable[dict[str, Any] | None]) -> dict[str, int]:
    """OpenAI's three counts summed over calls; an unknown usage (None) or count adds nothing."""
    total = dict.fromkeys(USAGE_COUNTS, 0)
    for usage in usages:
        if not usage:
            continue
        for name in USAGE_COUNTS:
            value = usage.get(name)
            if type(value) is int:
                total[name] += value
    return total
