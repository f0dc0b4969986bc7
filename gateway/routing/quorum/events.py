"""What a council tells whoever watches it, as it works: the events of /api/v1/debates.

Each event has its public name (`name`, the `event:` line) and its JSON (`data()`).
The chat endpoint reads only the verdict's deltas; the debates endpoint sends them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class RoundBegins:
    name: ClassVar[str] = "round"
    round: int

    def data(self) -> dict[str, Any]:
        return {"round": self.round}


@dataclass(frozen=True, slots=True)
class MemberDelta:
    """Some of a member's text, as it streams."""

    name: ClassVar[str] = "member.delta"
    round: int
    member: str
    content: str

    def data(self) -> dict[str, Any]:
        return {"round": self.round, "member": self.member, "content": self.content}


@dataclass(frozen=True, slots=True)
class MemberDone:
    name: ClassVar[str] = "member.done"
    round: int
    member: str
    finish_reason: str | None
    usage: dict[str, Any] | None

    def data(self) -> dict[str, Any]:
        return {"round": self.round, "member": self.member, "finish_reason": self.finish_reason, "usage": self.usage}


@dataclass(frozen=True, slots=True)
class MemberFailed:
    """A member left out of this round (and of the rounds after it): `error` is `{"message", "code"}`."""

    name: ClassVar[str] = "member.error"
    round: int
    member: str
    error: dict[str, Any]

    def data(self) -> dict[str, Any]:
        return {"round": self.round, "member": self.member, "error": self.error}


@dataclass(frozen=True, slots=True)
class VerdictDelta:
    """Some of the final answer, as a chunk's delta (content, and a refusal or tool calls when it has them)."""

    name: ClassVar[str] = "verdict.delta"
    delta: dict[str, Any]

    def data(self) -> dict[str, Any]:
        data = {"content": self.delta.get("content") or ""}
        data.update((key, self.delta[key]) for key in ("refusal", "tool_calls") if self.delta.get(key))
        return data


Event = RoundBegins | MemberDelta | MemberDone | MemberFailed | VerdictDelta
Observer = Callable[[Event], None]  # called in order, on the event loop; must not block
