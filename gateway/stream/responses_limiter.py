"""The max_tokens budget and the cut on OpenAI's Responses API, as pure code: its event
stream (`ResponsesLimiter`) and whole Response objects (`limit_response`).

For an upstream that serves the Responses API itself. The output's visible tokens are
counted with tiktoken, as for chat (stream.limiter's ChoiceBudget, one budget for the
whole Response): output text, refusals and function call arguments. The delta that
crosses `max_output_tokens` is cut at a token boundary; what was still open is closed
(`.done` events, items of status `incomplete`), and the Response ends with
`response.incomplete`, `incomplete_details.reason: "max_output_tokens"`, and the
gateway's own count of the output tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GatewayError
from .limiter import ChoiceBudget, believable_usage, own_usage, prompt_ready
from .responses_state import TERMINAL, ResponseState, chat_usage, encode_event, responses_usage
from .tokens import TokenCounter

DELTAS = {  # the events whose delta is output, and the text each belongs to
    "response.output_text.delta": "text",
    "response.refusal.delta": "refusal",
    "response.function_call_arguments.delta": "arguments",
}
PART_TEXTS = {"output_text": "text", "refusal": "refusal"}  # a content part's type, and its text field
ANSWER_EVENTS = frozenset(("response.output_item.done", *TERMINAL))  # besides deltas, what begins the answer


class ResponsesLimiter:
    """Applies the budget to each event of a Responses stream, in order; the stream's output
    stage too (pipeline.chunks.ChunkOutput): events are encoded as they came, and after a cut
    `end()` gives the events that close the Response."""

    def __init__(self, *, max_tokens: int, counter: TokenCounter, prompt_tokens: Callable[[], int]) -> None:
        self.counter = counter
        self.max_tokens = max_tokens
        self.budget = ChoiceBudget(max_tokens)
        self.state = ResponseState()
        self.truncated = False
        self.changed = False
        self.done = False  # cut: nothing more goes out (stop the upstream)
        self.begun = False  # a delta, a finished item or the Response's end has come
        self.all_finished = False  # the upstream's terminal event has come
        self.upstream_usage: dict[str, Any] | None = None  # in chat completions' names
        self._prompt_tokens = prompt_tokens

    def limit(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The event to send on (its delta cut where the budget ends), or None to drop it."""
        kind = event.get("type")
        self.changed = False
        if self.done:
            return None
        if kind in DELTAS and isinstance(event.get("delta"), str):
            self.begun = True
            key = (DELTAS[kind], event.get("output_index"), event.get("content_index"))
            delta = event["delta"]
            accepted = self.budget.take(key, delta, self.counter) if delta else delta
            if accepted is not delta:
                event["delta"] = accepted
                self.changed = True
            if self.budget.cut:
                self.truncated = self.done = True
            if not accepted:  # nothing of it goes out: the events that close the Response take its number
                return None
            self.state.observe(event)
            return event
        if kind in ANSWER_EVENTS:
            self.begun = True
        if kind in TERMINAL:
            self.all_finished = True
            response = event.get("response")
            self.upstream_usage = chat_usage(response.get("usage") if isinstance(response, dict) else None)
            if self.upstream_usage is not None and not self._upstream_usage_holds() and isinstance(response, dict):
                response["usage"] = responses_usage(self.usage())  # figures no answer could have: the gateway's own
                self.changed = True
        self.state.observe(event)
        return event

    @property
    def delivered(self) -> bool:
        return self.budget.delivered

    async def usage_ready(self) -> None:
        await prompt_ready(self.upstream_usage, self._upstream_usage_holds(), self._prompt_tokens)

    def usage(self) -> dict[str, Any]:
        """The upstream's figures when it sent believable ones and nothing was cut, else the
        gateway's own (in chat completions' names, for the request's record)."""
        if self.upstream_usage is not None and self._upstream_usage_holds():
            return self.upstream_usage
        return own_usage(self.upstream_usage, self._prompt_tokens, self.budget.settle(self.counter, final=True))

    def _upstream_usage_holds(self) -> bool:
        return not self.truncated and believable_usage(self.upstream_usage, self.max_tokens, self._prompt_tokens)

    # ------------------------------------------------------------ the stream's output stage

    def add(self, event: dict[str, Any]) -> list[bytes]:
        return [encode_event(event)]

    def error_event(self, error: GatewayError) -> bytes:
        """The `error` event that ends a stream broken off after its start, numbered after the last."""
        event = self.state.event("error", code=error.code or error.type, message=error.message, param=error.param)
        return encode_event(event)

    def end(self, usage: dict[str, Any]) -> list[bytes]:
        """After a cut: the open parts and items closed as incomplete, then response.incomplete."""
        if not self.truncated:
            return []
        events = self.state.close("incomplete")
        events += self.state.finish("incomplete", "max_output_tokens", responses_usage(usage))
        return [encode_event(event) for event in events]


def limit_response(
    response: dict[str, Any], *, max_tokens: int, counter: TokenCounter, prompt_tokens: Callable[[], int]
) -> tuple[bool, bool]:
    """Cut a Response object in place to `max_tokens` output tokens and make its usage true.

    Returns whether anything was cut, and whether anything changed at all. Items after the
    cut are left out; the one cut is `incomplete`, and so is the Response.
    """
    budget = ChoiceBudget(max_tokens)
    kept: list[Any] = []
    for item in response.get("output") or ():
        if budget.cut:
            break
        kept.append(item)
        if isinstance(item, dict):
            limit_item(item, len(kept) - 1, budget, counter)
    usage = chat_usage(response.get("usage"))
    if not budget.cut and believable_usage(usage, max_tokens, prompt_tokens):
        return False, False
    if budget.cut:
        response.update(output=kept, status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    response["usage"] = responses_usage(own_usage(usage, prompt_tokens, budget.settle(counter, final=True)))
    return budget.cut, True


def limit_item(item: dict[str, Any], index: int, budget: ChoiceBudget, counter: TokenCounter) -> None:
    """One output item's text, refusal or arguments, cut to what the budget allows."""
    if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
        item["arguments"] = budget.take(("arguments", index), item["arguments"], counter)
    elif item.get("type") == "message" and isinstance(item.get("content"), list):
        parts = []
        for position, part in enumerate(item["content"]):
            if budget.cut:
                break
            parts.append(part)
            field = PART_TEXTS.get(str(part.get("type"))) if isinstance(part, dict) else None
            if field and isinstance(part.get(field), str):
                part[field] = budget.take((field, index, position), part[field], counter)
        item["content"] = parts
    if budget.cut:
        item["status"] = "incomplete"
