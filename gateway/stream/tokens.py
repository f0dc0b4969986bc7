"""Token counting over tiktoken, with encodings loaded once at start-up.

A `TokenCounter` answers three questions about text in one encoding: how many
tokens it has, where tiktoken's pre-tokenizer splits it (tokens never cross those
pieces, which is what makes incremental counting exact), and which prefix of it
holds at most N tokens. When an encoding cannot be loaded (no network, no cache),
an `ApproximateCounter` stands in, so that a request never fails for want of one.
"""

from __future__ import annotations

import asyncio
import fnmatch
import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson
import regex
import tiktoken
from tiktoken.model import MODEL_PREFIX_TO_ENCODING, MODEL_TO_ENCODING

log = logging.getLogger("gateway.tokens")

DEFAULT_ENCODING = "o200k_base"
CHAT_ENCODINGS = ("o200k_base", "cl100k_base")  # what a glob route may load; older encodings only by exact name


class TokenCounter(Protocol):
    name: str

    def __hash__(self) -> int: ...  # counters key caches (count_role)

    def count(self, text: str) -> int: ...

    def pieces(self, text: str) -> list[str]: ...

    def prefix(self, text: str, tokens: int) -> str: ...


LONG_PIECE = 2048  # characters: a run without (or of only) white space longer than this is counted in slices
SLICE = 65536  # characters tiktoken is given at once when counting a long text (each slice holds the GIL)
INLINE_CHARS = 65536  # longer texts are counted on a worker thread, not on the event loop
SPACE_AFTER_TEXT = re.compile(r"(?<=\S)\s")  # a place where a pre-tokenizer piece always ends


class TiktokenCounter:
    """Exact counts, except inside runs longer than LONG_PIECE characters with no white space
    (base64, a repeated character), which are counted in slices of LONG_PIECE: tiktoken's work on
    one piece grows faster than its length (a 10 MB piece took seconds), so a slice boundary may
    add a token where BPE would have merged across it; counts there are never below the exact."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.name = encoding.name
        self._encoding = encoding
        self._encode = encoding.encode_ordinary
        self._split = regex.compile(encoding._pat_str).findall

    def count(self, text: str) -> int:
        if len(text) <= LONG_PIECE or (len(text) <= SLICE and not long_runs(text)):
            return len(self._encode(text))
        return sum(len(self._encode(part)) for part in sliced(text))

    def pieces(self, text: str) -> list[str]:
        runs = long_runs(text) if len(text) > LONG_PIECE else []
        if not runs:
            return self._split(text)
        pieces: list[str] = []
        last = 0
        for start, end in runs:
            pieces.extend(self._split(text[last:start]))
            pieces.extend(text[at : min(at + LONG_PIECE, end)] for at in range(start, end, LONG_PIECE))
            last = end
        pieces.extend(self._split(text[last:]))
        return pieces

    def prefix(self, text: str, tokens: int) -> str:
        """The text of its first `tokens` tokens; a character split by the cut is dropped.
        The work is bounded by what the cut needs: slices past it are not counted."""
        if len(text) <= LONG_PIECE or (len(text) <= SLICE and not long_runs(text)):
            return self._prefix(text, tokens)
        kept: list[str] = []
        for part in sliced(text):
            count = len(self._encode(part))
            if count > tokens:
                kept.append(self._prefix(part, tokens))
                break
            kept.append(part)
            tokens -= count
        return "".join(kept)

    def _prefix(self, text: str, tokens: int) -> str:
        ids = self._encode(text)[: max(tokens, 0)]
        return self._encoding.decode_bytes(ids).decode("utf-8", errors="ignore")


def sliced(text: str) -> list[str]:
    """`text` in parts that count to the same as the whole: long runs in LONG_PIECE slices (the
    one approximation), and what lies between them cut where a piece ends, every SLICE characters."""
    parts: list[str] = []
    last = 0
    for start, end in long_runs(text):
        if start > last:
            parts.extend(at_piece_ends(text[last:start]))
        parts.extend(text[at : min(at + LONG_PIECE, end)] for at in range(start, end, LONG_PIECE))
        last = end
    if last < len(text):
        parts.extend(at_piece_ends(text[last:]))
    return parts


WORD_RUN, SPACE_RUN = re.compile(r"\S*"), re.compile(r"\s*")


def long_runs(text: str) -> list[tuple[int, int]]:
    """(start, end) of every run of non-white-space, or of white space, longer than LONG_PIECE.

    Such a run covers one of the positions LONG_PIECE, 2 x LONG_PIECE, ...: only those are
    looked at, each run measured from there, so the work is one short match per LONG_PIECE
    characters (a regular expression for long runs tries every position: slow on megabytes).
    """
    runs: list[tuple[int, int]] = []
    covered = 0
    for position in range(LONG_PIECE, len(text), LONG_PIECE):
        if position < covered:
            continue
        run = SPACE_RUN if text[position].isspace() else WORD_RUN
        end = run.match(text, position).end()  # type: ignore[union-attr]
        # backwards, read in reverse: the run does not reach past the last position looked at,
        # or that one would have covered this one
        start = position - run.match(text[position - LONG_PIECE : position][::-1]).end()  # type: ignore[union-attr]
        if end - start > LONG_PIECE:
            runs.append((start, end))
            covered = end
    return runs


TAIL_CHARS = 4 * LONG_PIECE  # how much of a long text's end tail_start() looks at


def tail_start(text: str) -> int:
    """Where a piece ends within the last TAIL_CHARS characters of `text` (0 when none is found
    there): splitting only what follows into pieces finds the same last pieces as splitting it all."""
    if len(text) <= TAIL_CHARS:
        return 0
    found = SPACE_AFTER_TEXT.search(text, len(text) - TAIL_CHARS)
    return found.start() if found else 0


def at_piece_ends(text: str) -> list[str]:
    """`text` cut into parts of about SLICE characters, each cut before white space that follows text."""
    parts: list[str] = []
    start = 0
    while len(text) - start > SLICE:
        cut = SPACE_AFTER_TEXT.search(text, start + SLICE)
        if cut is None:
            break
        parts.append(text[start : cut.start()])
        start = cut.start()
    parts.append(text[start:])
    return parts


class ApproximateCounter:
    """About four characters a token: used only when an encoding is missing."""

    CHARS_PER_TOKEN = 4
    _split = re.compile(r"\s*\S+|\s+").findall

    def __init__(self, name: str) -> None:
        self.name = f"approximate ({name} unavailable)"

    def count(self, text: str) -> int:
        return math.ceil(len(text) / self.CHARS_PER_TOKEN)

    def pieces(self, text: str) -> list[str]:
        return self._split(text)

    def prefix(self, text: str, tokens: int) -> str:
        return text[: max(tokens, 0) * self.CHARS_PER_TOKEN]


def encoding_name_for_model(model: str) -> str:
    """tiktoken's encoding for a model name; o200k_base for models it does not know."""
    try:
        return tiktoken.encoding_name_for_model(model)
    except KeyError:
        return DEFAULT_ENCODING


def encodings_for(models: Iterable[str]) -> set[str]:
    """The encodings a set of model names (or globs) may need."""
    return {name for model in models for name in encoding_names_for_pattern(model)}


def encoding_names_for_pattern(pattern: str) -> set[str]:
    """The encodings a route's model name (or glob) may need."""
    if not any(char in pattern for char in "*?["):
        return {encoding_name_for_model(pattern)}
    names = {name for model, name in MODEL_TO_ENCODING.items() if fnmatch.fnmatchcase(model, pattern)}
    names |= {name for prefix, name in MODEL_PREFIX_TO_ENCODING.items() if fnmatch.fnmatchcase(prefix + "x", pattern)}
    return (names & set(CHAT_ENCODINGS)) or {DEFAULT_ENCODING}


class Tokenizers:
    """The token counters the routes need, loaded before the server takes traffic."""

    def __init__(self, counters: Mapping[str, TokenCounter]) -> None:
        self._counters = dict(counters)
        self._by_model: dict[str, TokenCounter] = {}

    @classmethod
    def load(cls, encoding_names: Iterable[str]) -> Tokenizers:
        counters: dict[str, TokenCounter] = {}
        for name in sorted(set(encoding_names) | {DEFAULT_ENCODING}):
            counters[name] = load_counter(name)
        return cls(counters)

    def extended(self, encoding_names: Iterable[str]) -> Tokenizers:
        """These counters plus any of `encoding_names` not loaded yet (for a reload)."""
        counters = dict(self._counters)
        for name in set(encoding_names) - set(counters):
            counters[name] = load_counter(name)
        return Tokenizers(counters)

    @property
    def loaded(self) -> list[str]:
        return [name for name, counter in self._counters.items() if isinstance(counter, TiktokenCounter)]

    def for_model(self, model: str) -> TokenCounter:
        counter = self._by_model.get(model)
        if counter is None:
            name = encoding_name_for_model(model)
            counter = self._counters.get(name) or self._counters[DEFAULT_ENCODING]
            if len(self._by_model) < 10_000:  # model names come from clients through glob routes
                self._by_model[model] = counter
        return counter


def load_counter(name: str) -> TokenCounter:
    try:
        return TiktokenCounter(tiktoken.get_encoding(name))
    except Exception as exc:  # tiktoken raises whatever its download raised
        log.warning(
            "tiktoken encoding %s could not be loaded (%s); counting tokens approximately. "
            "Set TIKTOKEN_CACHE_DIR to a folder holding the encoding to count exactly.",
            name,
            type(exc).__name__,
        )
        return ApproximateCounter(name)


# ------------------------------------------------------------ prompt tokens

TOKENS_PER_MESSAGE = 3  # OpenAI's per-message overhead for current chat models
TOKENS_PER_NAME = 1
TOKENS_PER_REPLY = 3  # every reply is primed with <|start|>assistant<|message|>


def count_prompt_tokens(messages: list[Any], counter: TokenCounter) -> int:
    """Prompt tokens of chat messages, after OpenAI's published counting recipe."""
    total = TOKENS_PER_REPLY
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "role" and isinstance(value, str):
                total += count_role(value, counter)
            elif key == "name" and isinstance(value, str):
                total += TOKENS_PER_NAME + counter.count(value)
            elif type(value) is str:  # the usual content: spares _texts' generator
                total += counter.count(value)
            else:
                total += sum(counter.count(text) for text in _texts(value))
    return total


NOT_PROMPT = frozenset(  # request fields (chat completions' and the Responses API's) no model reads as its prompt
    (
        "model", "messages", "input", "instructions", "stream_options", "metadata", "user", "logit_bias",
        "modalities", "service_tier", "reasoning_effort", "reasoning", "prompt_cache_key", "safety_identifier",
        "verbosity", "stop", "include", "truncation", "previous_response_id", "conversation", "audio", "tool_choice",
        "function_call",
    )
)  # fmt: skip


def prompt_extras(body: dict[str, Any]) -> list[Any]:
    """What a model reads with a request's messages (or input): its tools and functions, a
    response_format's (or text.format's) JSON schema, and any field the gateway does not know
    to be a setting (an OpenAI-compatible server may read it). Their JSON is counted as
    prompt tokens, as upstreams bill them; numbers, booleans and nulls are settings."""
    return [value for key, value in body.items() if key not in NOT_PROMPT and isinstance(value, (str, list, dict))]


def extras_json(extras: list[Any]) -> str:
    """The JSON of a request's extras (prompt_extras) as the upstream gets them (orjson, as the
    providers encode a request), "" for none."""
    return orjson.dumps(extras).decode() if extras else ""


class PromptTokens:
    """A request's prompt tokens, counted when first asked for and then kept (a stream's
    usage chunk and its metrics may both ask; an upstream that reports usage spares it).

    `await ready()` before a count may be needed counts a long prompt on a worker thread,
    so that calling it then never holds the event loop up.
    """

    __slots__ = ("_count", "_counter", "_extras", "_extras_json", "_messages", "_most_chars")

    def __init__(
        self,
        messages: list[Any],
        counter: TokenCounter,
        *,
        most_chars: int | None = None,
        extras: list[Any] | None = None,
    ) -> None:
        """`most_chars`: what the messages' text cannot be longer than (the size of the JSON body
        they came in), when known: below INLINE_CHARS, ready() need not measure them.
        `extras`: the request's other parts a model reads (prompt_extras), counted as their JSON."""
        self._messages = messages
        self._counter = counter
        self._count: int | None = None
        self._most_chars = most_chars
        self._extras = extras or []
        self._extras_json: str | None = None

    def __call__(self) -> int:
        if self._count is None:  # set once, whole: a worker thread (ready) may be counting meanwhile
            count = count_prompt_tokens(self._messages, self._counter)
            extras = self._extras_text()
            self._count = count + (self._counter.count(extras) if extras else 0)
        return self._count

    def _extras_text(self) -> str:
        if self._extras_json is None:
            self._extras_json = extras_json(self._extras)
        return self._extras_json

    @property
    def counter(self) -> TokenCounter:
        """The encoding the prompt is counted in."""
        return self._counter

    def could_be(self, count: int) -> bool:
        """Whether an upstream could count `count` prompt tokens for this request: a token is at
        least a byte of text, so at most the body's bytes (most_chars) plus PROMPT_SLACK for what
        an upstream adds around them (chat templates, a tool-use system prompt); any count when
        the body's size is not known, or it holds media (an image's tokens are not its bytes)."""
        if self._most_chars is None or count <= self._most_chars + PROMPT_SLACK:
            return True
        return any(holds_media(message) for message in self._messages)

    async def ready(self) -> None:
        if self._count is None:
            long = self._most_chars is None or self._most_chars > INLINE_CHARS
            if long and prompt_chars(self._messages) + len(self._extras_text()) > INLINE_CHARS:
                await asyncio.to_thread(self)
            else:
                self()


def prompt_chars(messages: list[Any]) -> int:
    """The characters of text in chat messages (the cost of counting them)."""
    return sum(len(text) for message in messages if isinstance(message, dict) for text in _texts(message))


@functools.lru_cache(maxsize=64)
def count_role(role: str, counter: TokenCounter) -> int:
    """A role name's tokens: roles are a handful of words, counted once and kept."""
    return counter.count(role)


MEDIA_PARTS = ("image_url", "input_audio", "file", "input_image", "input_file")  # chat's and the Responses API's
PROMPT_SLACK = 4096  # tokens an upstream may add around a prompt's text (templates, tool-use instructions)


def holds_media(value: Any) -> bool:
    """Whether a message (or any value inside one) holds an image, audio or a file part."""
    if isinstance(value, list):
        return any(holds_media(item) for item in value)
    if isinstance(value, dict):
        return value.get("type") in MEDIA_PARTS or any(
            holds_media(item) for item in value.values() if isinstance(item, (list, dict))
        )
    return False


def _texts(value: Any) -> Iterable[str]:
    """Every string inside a message value (content parts, tool calls), images excepted."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        if value.get("type") in MEDIA_PARTS:
            return
        for key, item in value.items():
            if key not in ("type", "id"):
                yield from _texts(item)


# ------------------------------------------------------------ embedding inputs


def embedding_inputs(inputs: Any) -> list[str | list[int]]:
    """An embeddings request's `input` (OpenAI's `CreateEmbeddingRequest`) one input at a time: a
    string or one token array is one input; an array of strings or of token arrays, each item."""
    if isinstance(inputs, str):
        return [inputs]
    if isinstance(inputs, list) and inputs and all(isinstance(item, int) for item in inputs):
        return [inputs]
    return list(inputs) if isinstance(inputs, list) else []


def count_input_tokens(inputs: Any, counter: TokenCounter) -> int:
    """The tokens of an embeddings request's `input`: its strings counted, its token arrays'
    tokens taken as they are (already being tokens)."""
    return sum(
        counter.count(item) if isinstance(item, str) else len(item)
        for item in embedding_inputs(inputs)
        if isinstance(item, (str, list))
    )


def input_chars(inputs: Any) -> int:
    """The characters of text in an embeddings `input` (the cost of counting it)."""
    if isinstance(inputs, str):
        return len(inputs)
    return sum(len(item) for item in inputs if isinstance(item, str)) if isinstance(inputs, list) else 0
