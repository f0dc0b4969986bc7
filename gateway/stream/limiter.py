"""The max_tokens budget and the cut, as pure code over OpenAI chunks and completions.

Whatever an upstream sends, a client receives at most `max_tokens` completion
tokens per choice, counted with tiktoken over content, refusal and tool-call
arguments. The delta that crosses the limit is cut at a token boundary and its
choice ends with `finish_reason: "length"`.

Counting is incremental: tokens never cross tiktoken's pre-tokenizer pieces, so
all but the last two pieces of a text are counted once and put aside; only the
open tail is counted again when the next delta arrives.

Chunks and completions come in the shape the provider adapters guarantee (checked
by providers.shapes, or built so): the limiter reads their fields without testing
their types again, as it runs on every chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

from ..errors import UpstreamProtocolError
from .tokens import PromptTokens, TokenCounter, tail_start

TEXT_FIELDS = ("content", "refusal")
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")
CHOICE_FIELDS = frozenset(("index", "delta", "finish_reason", "logprobs"))  # what every choice of a chunk has
CHUNK_FIELDS = frozenset(  # what every chunk of a stream has: a chunk of these alone says nothing
    ("id", "object", "created", "model", "system_fingerprint", "service_tier", "obfuscation", "choices", "usage")
)
OPEN_PIECES = 2  # pieces at the end of a text that a later delta may still change
PENDING_BYTES = 16 * 1024  # deltas left uncounted at most, per choice: they are counted once past it
PENDING_DELTAS = 32  # and as many deltas: each held costs ~120 bytes of objects, a long stream's RSS
UNLIMITED = 1 << 62
MOST_TOKENS = 2**31 - 1  # no request's count comes near it (the ledger's token columns hold no more)
MOST_REASONING = 2**20  # reasoning tokens believed beyond max_tokens: 32 times DeepSeek's longest chain of thought


class TextCount:
    """The token count of one growing text (a choice's content, one tool call's arguments)."""

    __slots__ = ("committed", "open", "open_bytes", "total")

    def __init__(self) -> None:
        self.committed = 0  # tokens of the text before `open`, final
        self.open = ""  # the last pieces, whose tokens may still change
        self.open_bytes = 0
        self.total = 0

    @property
    def slack(self) -> int:
        """How many more tokens `open` may turn into when text is appended: at most one a byte."""
        return self.open_bytes - (self.total - self.committed)

    def _set_open(self, text: str) -> None:
        self.open = text
        self.open_bytes = len(text) if text.isascii() else len(text.encode())

    def add(self, delta: str, allowance: int, counter: TokenCounter) -> tuple[str, bool]:
        """Append `delta` while the text stays within `allowance` tokens.

        Returns the part of `delta` accepted and whether it had to be cut.
        """
        text = self.open + delta
        if allowance < UNLIMITED:  # the cut first: its work ends where the allowance does
            kept = counter.prefix(text, allowance - self.committed)
            if len(kept) < len(text):
                accepted = kept[len(self.open) :] if kept.startswith(self.open) else ""
                self._set_open(self.open + accepted)
                self.total = self.committed + counter.count(self.open)
                return accepted, True
        self.total = self.committed + counter.count(text)
        start = tail_start(text)  # only the end of a long text is split into pieces
        pieces = counter.pieces(text[start:])
        if len(pieces) > OPEN_PIECES or start:
            tail = "".join(pieces[-OPEN_PIECES:])
            self._set_open(tail)
            self.committed = self.total - counter.count(tail)
        else:
            self._set_open(text)
        return delta, False

    def extend(self, delta: str, counter: TokenCounter) -> None:
        """Append `delta` with no allowance and no split: one count, for a text whose
        end is near (the next `add()` splits it again, so counting stays correct)."""
        self._set_open(self.open + delta)
        self.total = self.committed + counter.count(self.open)


class ChoiceBudget:
    """Tokens delivered so far in one choice, across all its texts, against `limit`.

    A token is never shorter than one byte. Appending to a text can re-tokenize only
    its open tail, which then holds at most one token a byte: so while the tokens
    counted, plus that slack, plus the bytes not yet counted stay within the limit, no
    delta can need a cut. Those deltas wait in `pending`, and tiktoken runs only when
    the limit comes near, when a count is asked for, or when PENDING_DELTAS (or
    PENDING_BYTES) wait. `room` is what is left of that
    bound: limit - used - slack - the pending deltas' bytes.
    """

    __slots__ = ("cut", "entries", "finished", "limit", "pending", "pending_bytes", "room", "texts", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: dict[str, int] = {}  # logprobs entries sent so far, by text (content, refusal)
        self.texts: dict[Any, TextCount] = {}
        self.used = 0  # tokens counted
        self.room = limit
        self.cut = False
        self.finished = False
        self.pending: list[tuple[Any, str]] = []  # (text key, delta) not counted yet, in order
        self.pending_bytes = 0

    def take(self, key: Any, delta: str, counter: TokenCounter) -> str:
        """The part of `delta` (appended to the text `key`) that stays within the limit."""
        size = len(delta) if delta.isascii() else len(delta.encode())
        if size <= self.room:
            self.room -= size
            self.pending.append((key, delta))
            self.pending_bytes += size
            if self.pending_bytes > PENDING_BYTES or len(self.pending) >= PENDING_DELTAS:
                self.settle(counter)  # count as it comes: memory and each count stay bounded
            return delta
        self.settle(counter)
        text = self.texts.get(key)
        if text is None:
            text = self.texts[key] = TextCount()
        before = text.total
        accepted, cut = text.add(delta, self.limit - (self.used - before), counter)
        self.used += text.total - before
        self._reset_room()
        self.cut = self.cut or cut
        return accepted

    def settle(self, counter: TokenCounter, *, final: bool = False) -> int:
        """Count what is pending; returns the exact tokens delivered.

        `final`: no more deltas are expected (the stream or completion has ended), so
        the texts are only counted, not split for the deltas to come.
        """
        if not self.pending:
            return self.used
        grouped: dict[Any, list[str]] = {}
        for key, delta in self.pending:
            grouped.setdefault(key, []).append(delta)
        self.pending.clear()
        self.pending_bytes = 0
        for key, parts in grouped.items():
            text = self.texts.get(key)
            if text is None:
                text = self.texts[key] = TextCount()
            before = text.total
            if final:
                text.extend("".join(parts), counter)
            else:
                text.add("".join(parts), UNLIMITED, counter)
            self.used += text.total - before
        self._reset_room()
        return self.used

    def _reset_room(self) -> None:
        self.room = self.limit - self.used - sum(text.slack for text in self.texts.values())

    @property
    def delivered(self) -> bool:
        return bool(self.used or self.pending)


def limit_delta(delta: dict[str, Any], budget: ChoiceBudget, counter: TokenCounter) -> None:
    """Cut a chunk's delta (or a completion's message) in place to what the budget allows."""
    for key in TEXT_FIELDS:
        text = delta.get(key)
        if text:
            if budget.cut:
                delta[key] = None if key == "refusal" else ""
            else:
                accepted = budget.take(key, text, counter)
                if accepted is not text:
                    delta[key] = accepted
    calls = delta.get("tool_calls")
    if not calls:
        return
    kept: list[Any] = []
    for position, call in enumerate(calls):
        if budget.cut or not isinstance(call, dict):
            break
        function = call.get("function")
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if isinstance(arguments, str) and arguments:
            accepted = budget.take(("tool_call", call.get("index", position)), arguments, counter)
            if accepted is not arguments:
                function["arguments"] = accepted  # type: ignore[index]
        kept.append(call)
    if len(kept) != len(calls):
        if kept:
            delta["tool_calls"] = kept
        else:
            del delta["tool_calls"]


def limit_logprobs(logprobs: dict[str, Any], budget: ChoiceBudget) -> None:
    """Cut a choice's logprobs in place with its text: one entry a token, so after a cut
    no more entries than the tokens of that text delivered (the gateway's own count)."""
    for key in TEXT_FIELDS:
        entries = logprobs.get(key)
        if not entries:
            continue
        sent = budget.entries.get(key, 0)
        if budget.cut:
            text = budget.texts.get(key)
            room = max((text.total if text else 0) - sent, 0)
            if len(entries) > room:
                entries = logprobs[key] = entries[:room]
        budget.entries[key] = sent + len(entries)


def carries_text(delta: Any) -> bool:
    return isinstance(delta, dict) and any(delta.get(key) for key in (*TEXT_FIELDS, "tool_calls"))


def begins_answer(choice: dict[str, Any], delta: Any) -> bool:
    """Whether a choice carries some of the answer: a finish reason, or a delta with more than
    its role (content, refusal, tool calls, and what else an upstream streams: reasoning, audio)."""
    if choice.get("finish_reason"):
        return True
    return isinstance(delta, dict) and any(value for key, value in delta.items() if key != "role")


def annotates(value: dict[str, Any], common: frozenset[str]) -> bool:
    """Whether a choice or chunk holds anything beyond the fields `common` to all
    (Azure's content filter results, prompt filter results)."""
    return any(item is not None and key not in common for key, item in value.items())


class StreamLimiter:
    """Applies the budget to each `chat.completion.chunk` of a stream, in order."""

    def __init__(
        self,
        *,
        max_tokens: int,
        counter: TokenCounter,
        choices: int,
        prompt_tokens: Callable[[], int],
    ) -> None:
        self.max_tokens = max_tokens
        self.counter = counter
        self.expected_choices = choices
        self.choices: dict[Any, ChoiceBudget] = {}
        self.upstream_usage: dict[str, Any] | None = None
        self.truncated = False
        self.changed = False  # whether the last chunk passed on differs from the upstream's
        self.done = False  # cut, and every choice has ended: nothing more goes out (stop the upstream)
        self.begun = False  # a chunk of the answer has gone out, not only a role or filter results
        self._finished = 0  # choices that have ended
        self.last_chunk: dict[str, Any] | None = None
        self._prompt_tokens = prompt_tokens

    @property
    def all_finished(self) -> bool:
        return self._finished >= self.expected_choices

    def limit(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk to send on (changed in place where cut), or None to drop it.

        `changed` tells whether the chunk sent on differs from the upstream's.
        """
        usage = chunk.get("usage")
        self.changed = usage is not None
        if usage is not None:  # the upstream's figures, for the gateway; a null stays as OpenAI sends it
            del chunk["usage"]
            if valid_usage(usage):
                self.upstream_usage = usage
        choices = chunk.get("choices")
        self.last_chunk = chunk
        if not choices:  # nothing empty goes out after a choice has finished
            return None if usage or (self._finished and not annotates(chunk, CHUNK_FIELDS)) else chunk
        if len(choices) == 1:  # n=1, nearly every chunk
            return chunk if self._limit_choice(choices[0]) else None
        kept = [choice for choice in choices if self._limit_choice(choice)]
        if not kept:
            return None
        if len(kept) != len(choices):
            chunk["choices"] = kept
        return chunk

    def _limit_choice(self, choice: Any) -> bool:
        """Whether the choice goes out; sets `changed` when it is cut or dropped."""
        index = choice["index"]
        budget = self.choices.get(index)
        if budget is None:
            check_index(index, self.expected_choices)
            budget = self.choices[index] = ChoiceBudget(self.max_tokens)
        delta = choice.get("delta")
        if budget.finished:  # only annotations may follow the end (Azure's last content-filter results)
            if carries_text(delta) or choice.get("finish_reason") or not annotates(choice, CHOICE_FIELDS):
                self.changed = True
                return False
            return True
        limit_delta(delta, budget, self.counter)
        logprobs = choice.get("logprobs")
        if logprobs:
            limit_logprobs(logprobs, budget)
        if budget.cut:
            choice["finish_reason"] = "length"
            self.truncated = self.changed = True
        if choice.get("finish_reason"):
            budget.finished = True
            self._finished += 1
            self.done = self.truncated and self.all_finished
        if not self.begun:
            self.begun = begins_answer(choice, delta)
        return True

    async def usage_ready(self) -> None:
        """Count what usage() will need that could be long (the prompt) on a worker thread, so
        that usage() never holds the event loop up."""
        await prompt_ready(self.upstream_usage, self._upstream_usage_holds(), self._prompt_tokens)

    def usage(self) -> dict[str, Any]:
        """The upstream's figures when it sent believable ones and nothing was cut, else the
        gateway's own (with the upstream's prompt count, when that one is believable)."""
        if self.upstream_usage is not None and self._upstream_usage_holds():
            return self.upstream_usage
        return own_usage(self.upstream_usage, self._prompt_tokens, self.completion_tokens)

    def _upstream_usage_holds(self) -> bool:
        return not self.truncated and believable_usage(
            self.upstream_usage, self.max_tokens * self.expected_choices, self._prompt_tokens
        )

    @property
    def completion_tokens(self) -> int:
        return sum(budget.settle(self.counter, final=True) for budget in self.choices.values())

    @property
    def delivered(self) -> bool:
        """Whether any content has gone out (cheap: counts nothing)."""
        return any(budget.delivered for budget in self.choices.values())

    def usage_chunk(self) -> dict[str, Any]:
        last = self.last_chunk or {}
        chunk: dict[str, Any] = {
            key: last[key]
            for key in ("id", "object", "created", "model", "system_fingerprint", "service_tier")
            if key in last
        }
        chunk.setdefault("object", "chat.completion.chunk")
        chunk["choices"] = []
        chunk["usage"] = self.usage()
        return chunk


def limit_completion(
    completion: dict[str, Any],
    *,
    max_tokens: int,
    counter: TokenCounter,
    prompt_tokens: Callable[[], int],
    choices: int = 1,
) -> tuple[bool, bool]:
    """Cut a `chat.completion` in place to max_tokens per choice (of the `choices` asked for)
    and make its usage true.

    Returns whether anything was cut, and whether anything changed at all. Raises
    UpstreamProtocolError for a choice the request did not ask for.
    """
    truncated = False
    budgets = []
    for choice in completion.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        check_index(choice.get("index"), choices)
        budget = ChoiceBudget(max_tokens)
        limit_delta(message, budget, counter)
        if budget.cut:
            choice["finish_reason"] = "length"
            truncated = True
            if isinstance(choice.get("logprobs"), dict):
                limit_logprobs(choice["logprobs"], budget)
        budgets.append(budget)
    usage = completion.get("usage")
    if not truncated and believable_usage(usage, max_tokens * choices, prompt_tokens):
        return False, False
    completion_tokens = sum(budget.settle(counter, final=True) for budget in budgets)
    completion["usage"] = own_usage(usage if valid_usage(usage) else None, prompt_tokens, completion_tokens)
    return truncated, True


def valid_usage(usage: Any) -> bool:
    """Whether an upstream's usage has OpenAI's shape (`CompletionUsage`): its three counts
    integers. Any other is replaced by the gateway's own count."""
    return type(usage) is dict and all(type(usage.get(name)) is int for name in USAGE_COUNTS)


def believable_count(count: Any) -> TypeGuard[int]:
    """A token count that could be true: an integer from 0 to MOST_TOKENS."""
    return type(count) is int and 0 <= count <= MOST_TOKENS


def check_index(index: Any, choices: int) -> None:
    """Raises UpstreamProtocolError unless `index` is one of the `choices` a request asked for
    (n): more would go round every choice's max_tokens."""
    if not 0 <= index < choices:
        raise UpstreamProtocolError(
            f"The upstream sent a choice with index {index}; the request asked for {choices} "
            f"(n), indexes 0 to {choices - 1}."
        )


def believable_usage(usage: Any, most_completion: int, prompt_tokens: Callable[[], int] | None = None) -> bool:
    """Whether an upstream's usage (OpenAI's `CompletionUsage`) could be true of an answer held
    to `most_completion` tokens (max_tokens for each choice: the gateway always sends it on),
    to the prompt `prompt_tokens` counts (PromptTokens.could_be): its three counts integers from
    0 to MOST_TOKENS, within those bounds. Any other is replaced by the gateway's own count:
    figures no request could have must not reach the client, the metrics, the ledger, a
    tokens-per-minute limit or a budget."""
    if type(usage) is not dict or not all(believable_count(usage.get(name)) for name in USAGE_COUNTS):
        return False
    completion = usage["completion_tokens"]
    if completion > most_completion and completion > most_completion + beyond_max_tokens(usage):
        return False
    return prompt_tokens is None or believable_prompt(usage["prompt_tokens"], prompt_tokens)


BEYOND_MAX_TOKENS = ("reasoning_tokens", "accepted_prediction_tokens", "rejected_prediction_tokens")


def beyond_max_tokens(usage: dict[str, Any]) -> int:
    """The completion tokens an upstream may count outside max_tokens, as its
    completion_tokens_details reports them, each up to MOST_REASONING: reasoning (DeepSeek's
    reasoner: max_tokens bounds the answer, its chain of thought may add 32K) and a predicted
    output's tokens (OpenAI bills them as completion)."""
    details = usage.get("completion_tokens_details")
    if type(details) is not dict:
        return 0
    counts = (details.get(name) for name in BEYOND_MAX_TOKENS)
    return sum(count for count in counts if believable_count(count) and count <= MOST_REASONING)


def believable_prompt(count: Any, prompt_tokens: Callable[[], int]) -> TypeGuard[int]:
    """Whether an upstream's prompt count could be true of the request `prompt_tokens` counts."""
    if not believable_count(count):
        return False
    return not isinstance(prompt_tokens, PromptTokens) or prompt_tokens.could_be(count)


async def prompt_ready(upstream: dict[str, Any] | None, holds: bool, prompt_tokens: Callable[[], int]) -> None:
    """Count the prompt on a worker thread (PromptTokens.ready) when own_usage will need the
    gateway's count of it: the upstream's usage does not hold (`holds`), nor its prompt count."""
    needed = not holds and not believable_prompt((upstream or {}).get("prompt_tokens"), prompt_tokens)
    if needed and isinstance(prompt_tokens, PromptTokens):
        await prompt_tokens.ready()


def own_usage(
    upstream: dict[str, Any] | None, prompt_tokens: Callable[[], int], completion_tokens: int
) -> dict[str, Any]:
    """The usage of an answer that was cut, or that the upstream did not count.

    The upstream's fields whose meaning a cut does not change are kept: prompt_tokens
    and prompt_tokens_details (cached tokens), and any other it reported. The
    completion is the gateway's count of what was delivered, and the total follows.
    completion_tokens_details is left out: each of its figures (reasoning, audio,
    accepted and rejected prediction tokens) is a part of the upstream's completion,
    which the cut replaced, so none of them is a part of the new one.
    """
    usage = {key: value for key, value in upstream.items() if key != "completion_tokens_details"} if upstream else {}
    reported = usage.get("prompt_tokens")
    prompt = reported if believable_prompt(reported, prompt_tokens) else prompt_tokens()
    usage.update(prompt_tokens=prompt, completion_tokens=completion_tokens, total_tokens=prompt + completion_tokens)
    return usage
