"""Server-sent events, as pure code: a step-by-step decoder and the encoders.

`SSEDecoder.decode(chunk)` takes bytes however TCP split them and returns the
events completed so far; `flush()` ends the stream. Line endings may be `\\n`,
`\\r\\n` or `\\r`; comment lines are skipped; several `data:` lines join with `\\n`
(the WHATWG event-stream rules).
"""

from __future__ import annotations

from functools import partial
from itertools import repeat
from typing import Any, NamedTuple

import orjson

from ..errors import UpstreamTooLarge

DONE_DATA = b"[DONE]"
DONE = b"data: [DONE]\n\n"


class SSEEvent(NamedTuple):
    data: bytes
    event: str | None = None


_event_of_pair = partial(tuple.__new__, SSEEvent)  # SSEEvent from a (data, event) pair, with no Python call


class EventTooLarge(UpstreamTooLarge):
    """An event over the decoder's cap; `complete` holds the whole events that came before it."""

    def __init__(self, limit: int, complete: list[SSEEvent]) -> None:
        super().__init__("stream has an event that", "limits.max_event_bytes", limit)
        self.complete = complete


class SSEDecoder:
    """A read made only of single-line `data: ` events (nearly every upstream's) is split
    on the event boundaries at once. Otherwise events are split on blank lines: an event
    of one `data: ` line is taken whole, any other is read line by line."""

    __slots__ = ("_partial", "incomplete", "max_event_bytes")

    def __init__(self, *, max_event_bytes: int = 1 << 62) -> None:
        self._partial = b""  # the unterminated event: its complete lines and maybe half a line
        self.incomplete = False  # set by flush() when the stream stopped inside a line
        self.max_event_bytes = max_event_bytes  # one event, or its unfinished part, may hold no more

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        """The events that `chunk` completes; raises EventTooLarge for an event (or what has
        come of one) over `max_event_bytes`, carrying the events completed before it, and
        keeps nothing of it."""
        text = self._partial + chunk if self._partial else chunk
        events = self._decode(text)
        if len(text) > self.max_event_bytes:  # only then can one event be over the cap
            self._check_sizes(events)
        return events

    def _check_sizes(self, events: list[SSEEvent]) -> None:
        for position, event in enumerate(events):
            if len(event.data) > self.max_event_bytes:
                self._partial = b""
                raise EventTooLarge(self.max_event_bytes, events[:position])
        if len(self._partial) > self.max_event_bytes:
            self._partial = b""
            raise EventTooLarge(self.max_event_bytes, events)

    def _decode(self, text: bytes) -> list[SSEEvent]:
        if text.startswith(b"data: ") and b"\r" not in text:
            simple = self._decode_data_lines(text)
            if simple is not None:
                return simple
        held = b""
        if b"\r" in text:
            if text.endswith(b"\r"):  # may be half of a \r\n split across reads
                text, held = text[:-1], b"\r"
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = text.split(b"\n\n")
        self._partial = blocks.pop() + held
        events: list[SSEEvent] = []
        for block in blocks:
            if block.startswith(b"data: ") and b"\n" not in block:
                events.append(SSEEvent(block[6:]))
            elif block:
                read_block(block.split(b"\n"), events)
        return events

    def _decode_data_lines(self, text: bytes) -> list[SSEEvent] | None:
        """The common case, in a few passes over the bytes: every event is one `data: `
        line. None when the text holds anything else (the caller reads it line by line)."""
        payloads = text[6:].split(b"\n\ndata: ")
        last = payloads[-1]
        last_newlines = last.count(b"\n")
        if text.count(b"\n") != 2 * (len(payloads) - 1) + last_newlines:
            return None  # an event of several lines, a comment, another field or an extra blank line
        if last_newlines == 0:  # the last event is still arriving
            self._partial = b"data: " + payloads.pop()
        elif last_newlines == 2 and last.endswith(b"\n\n"):
            payloads[-1] = last[:-2]
            self._partial = b""
        else:
            return None
        return list(map(_event_of_pair, zip(payloads, repeat(None))))

    def flush(self) -> list[SSEEvent]:
        """End of stream: a complete but unterminated event is kept; half a line is not."""
        text = self._partial.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        self._partial = b""
        lines = text.split(b"\n")
        if lines.pop():
            self.incomplete = True
        events: list[SSEEvent] = []
        read_block(lines, events)
        return events


def read_block(lines: list[bytes], events: list[SSEEvent]) -> None:
    """The lines of one event (an empty line, where one came first, ends an event with no lines)."""
    data: list[bytes] = []
    event: str | None = None
    for line in lines:
        if not line:
            if data:
                events.append(SSEEvent(b"\n".join(data), event))
                data = []
            event = None
            continue
        if line[0] == 0x3A:  # ":" starts a comment
            continue
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            data.append(value)
        elif name == b"event":
            event = value.decode("utf-8", errors="replace")
        # id and retry mean nothing to a relay of chat chunks
    if data:
        events.append(SSEEvent(b"\n".join(data), event))


def encode_events(payloads: list[bytes]) -> bytes:
    """One `data:` event for each payload (each a single line), in one piece of bytes."""
    return b"".join((b"data: ", b"\n\ndata: ".join(payloads), b"\n\n"))


def encode_json(value: Any) -> bytes:
    return encode_events([orjson.dumps(value)])


def encode_named(name: str, value: Any) -> bytes:
    """A named event: its `event:` line, then its JSON on one `data:` line (orjson escapes
    every line break inside a string, so the JSON is always one line)."""
    return b"".join((b"event: ", name.encode(), b"\ndata: ", orjson.dumps(value), b"\n\n"))
