"""Server-sent events, as pure code: a step-by-step decoder and the encoders.

`SSEDecoder.decode(chunk)` takes bytes however TCP split them and returns the
events completed so far; `flush()` ends the stream. Line endings may be `\\n`,
`\\r\\n` or `\\r`; comment lines are skipped; several `data:` lines join with `\\n`
(the WHATWG event-stream rules).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

DONE = b"data: [DONE]\n\n"
PING = b": ping\n\n"  # a comment: clients skip it, proxies see the stream is alive
HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEEvent(NamedTuple):
    data: bytes
    event: str | None = None


class SSEDecoder:
    __slots__ = ("_partial", "_data", "_event", "incomplete")

    def __init__(self) -> None:
        self._partial = b""  # an unterminated line
        self._data: list[bytes] = []  # data lines of the event being read
        self._event: str | None = None
        self.incomplete = False  # set by flush() when the stream stopped inside an event

    def decode(self, chunk: bytes) -> list[SSEEvent]:
        text = self._partial + chunk if self._partial else chunk
        held = b""
        if b"\r" in text:
            if text.endswith(b"\r"):  # may be half of a \r\n split across reads
                text, held = text[:-1], b"\r"
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = text.split(b"\n")
        self._partial = lines.pop() + held
        events: list[SSEEvent] = []
        for line in lines:
            if line:
                self._read_line(line)
            elif self._data:
                events.append(SSEEvent(b"\n".join(self._data), self._event))
                self._data = []
                self._event = None
            else:
                self._event = None
        return events

    def flush(self) -> list[SSEEvent]:
        """End of stream: a complete but unterminated event is kept; half a line is not."""
        events = self.decode(b"\n") if self._partial.endswith(b"\r") else []
        if self._partial:
            self.incomplete = True
            self._partial = b""
        if self._data:
            events.append(SSEEvent(b"\n".join(self._data), self._event))
            self._data = []
        self._event = None
        return events

    def _read_line(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ":" starts a comment
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
        elif name == b"event":
            self._event = value.decode("utf-8", errors="replace")
        # id and retry mean nothing to a relay of chat chunks


def encode_data(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def encode_json(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + b"\n\n"
