"""The answer a client got, kept when the ledger stores conversations (ledger.store_messages).

Fed with what went out after the limiter (so the text after any cut): each chunk of a
stream, or the whole completion. `answer()` gives one entry a choice, in OpenAI's message
shape: `{"index", "role", "content", "refusal", "tool_calls", "finish_reason"}`, the empty
fields left out.
"""

from __future__ import annotations

from typing import Any


class Transcript:
    """The choices of one answer, as they were delivered."""

    def __init__(self) -> None:
        self._choices: dict[int, dict[str, Any]] = {}

    def _choice(self, index: Any) -> dict[str, Any]:
        key = index if isinstance(index, int) else 0
        found = self._choices.get(key)
        if found is None:
            found = self._choices[key] = {"index": key, "role": "assistant", "content": [], "refusal": [], "calls": {}}
        return found

    def add_chunk(self, chunk: dict[str, Any]) -> None:
        """A `chat.completion.chunk` as it went out."""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            kept = self._choice(choice.get("index"))
            delta = choice.get("delta")
            if isinstance(delta, dict):
                for field in ("content", "refusal"):
                    if isinstance(delta.get(field), str):
                        kept[field].append(delta[field])
                for position, call in enumerate(delta.get("tool_calls") or ()):
                    if isinstance(call, dict):
                        self._add_call(kept, call.get("index", position), call)
            if choice.get("finish_reason"):
                kept["finish_reason"] = choice["finish_reason"]

    def add_completion(self, completion: dict[str, Any]) -> None:
        """A whole `chat.completion` as it went out."""
        for choice in completion.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            kept = self._choice(choice.get("index"))
            message = choice.get("message")
            if isinstance(message, dict):
                for field in ("content", "refusal"):
                    if isinstance(message.get(field), str):
                        kept[field].append(message[field])
                for position, call in enumerate(message.get("tool_calls") or ()):
                    if isinstance(call, dict):
                        self._add_call(kept, position, call)
            if choice.get("finish_reason"):
                kept["finish_reason"] = choice["finish_reason"]

    @staticmethod
    def _add_call(kept: dict[str, Any], index: Any, call: dict[str, Any]) -> None:
        found = kept["calls"].setdefault(index, {"id": None, "type": "function", "name": "", "arguments": []})
        if isinstance(call.get("id"), str):
            found["id"] = call["id"]
        function = call.get("function")
        if isinstance(function, dict):
            if isinstance(function.get("name"), str):
                found["name"] += function["name"]
            if isinstance(function.get("arguments"), str):
                found["arguments"].append(function["arguments"])

    def answer(self) -> list[dict[str, Any]]:
        """One entry a choice, by index."""
        answer = []
        for index in sorted(self._choices):
            kept = self._choices[index]
            entry: dict[str, Any] = {"index": index, "role": kept["role"], "content": "".join(kept["content"])}
            if kept["refusal"]:
                entry["refusal"] = "".join(kept["refusal"])
            if kept["calls"]:
                entry["tool_calls"] = [
                    {
                        "id": call["id"],
                        "type": call["type"],
                        "function": {"name": call["name"], "arguments": "".join(call["arguments"])},
                    }
                    for _, call in sorted(kept["calls"].items(), key=lambda item: str(item[0]))
                ]
            entry["finish_reason"] = kept.get("finish_reason")
            answer.append(entry)
        return answer
