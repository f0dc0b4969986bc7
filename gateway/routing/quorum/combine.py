"""Which answers are the same, and which group wins a vote: pure code over `Answer`s.

Answers are compared after normalising (the issue's rule): tool calls by name and
parsed arguments (in any order), a JSON answer (an object or an array) by its parsed
value, any other text by its words, whitespace collapsed and case folded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from .answers import Answer


def normalised(answer: Answer) -> str:
    """The key an answer is grouped by (and shown under in the report's `votes`)."""
    if answer.tool_calls:
        calls = sorted(
            (
                {"name": call["function"]["name"], "arguments": parsed(call["function"]["arguments"])}
                for call in answer.tool_calls
            ),
            key=canonical,
        )
        return canonical({"tool_calls": calls})
    text = (answer.content or answer.refusal or "").strip()
    if text[:1] in ("{", "["):
        try:
            return canonical(orjson.loads(text))
        except orjson.JSONDecodeError:
            pass  # text that only starts like JSON
    return " ".join(text.split()).casefold()


def parsed(arguments: str) -> Any:
    """A tool call's arguments as JSON, or as their text when they are not JSON."""
    try:
        return orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return " ".join(arguments.split())


def canonical(value: Any) -> str:
    """JSON text with sorted keys: equal values, equal texts."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def grouped(answers: Sequence[Answer]) -> dict[str, list[Answer]]:
    """The answers by their normalised form; groups in the order of their first answer, each
    group's answers in the order given (the members' order)."""
    groups: dict[str, list[Answer]] = {}
    for answer in answers:
        groups.setdefault(normalised(answer), []).append(answer)
    return groups


def leaders(groups: dict[str, list[Answer]]) -> list[str]:
    """The keys of the largest groups, in the groups' order: more than one is a tie."""
    most = max((len(members) for members in groups.values()), default=0)
    return [key for key, members in groups.items() if len(members) == most]


def agreed(answers: Sequence[Answer]) -> bool:
    """Whether every answer is the same (one answer agrees with itself; none is no agreement)."""
    return len(grouped(answers)) == 1
