"""The SSE decoder and encoder, on their own: every way TCP may split a stream."""

from __future__ import annotations

import random
import re

import orjson
import pytest

from gateway.stream.sse import DONE, SSEDecoder, SSEEvent, encode_events, encode_json

RECORDED = (
    b": keep-alive comment\n\n"
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel\xc3\xa9"}}]}\r\n\r\n'
    b"event: message\n"
    b'data: {"id":"c1",\n'
    b'data: "choices":[{"index":0,"delta":{"content":"lo"}}]}\n\n'
    b'data:{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\r\r'
    b"id: 7\nretry: 1000\n\n"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent(b'{"id":"c1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}'),
    SSEEvent(b'{"id":"c1","choices":[{"index":0,"delta":{"content":"Hel\xc3\xa9"}}]}'),
    SSEEvent(b'{"id":"c1",\n"choices":[{"index":0,"delta":{"content":"lo"}}]}', "message"),
    SSEEvent(b'{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}'),
    SSEEvent(b"[DONE]"),
]


def decode_all(parts: list[bytes]) -> tuple[list[SSEEvent], bool]:
    decoder = SSEDecoder()
    events = [event for part in parts for event in decoder.decode(part)]
    events += decoder.flush()
    return events, decoder.incomplete


def test_whole_recorded_stream() -> None:
    assert decode_all([RECORDED]) == (EXPECTED, False)


def test_every_split_into_two_reads_gives_the_same_events() -> None:
    for cut in range(len(RECORDED) + 1):
        assert decode_all([RECORDED[:cut], RECORDED[cut:]]) == (EXPECTED, False), cut


def test_every_split_into_three_reads_gives_the_same_events() -> None:
    for first in range(0, len(RECORDED), 7):
        for second in range(first, len(RECORDED) + 1):
            parts = [RECORDED[:first], RECORDED[first:second], RECORDED[second:]]
            assert decode_all(parts)[0] == EXPECTED, (first, second)


def test_byte_by_byte() -> None:
    assert decode_all([bytes([b]) for b in RECORDED]) == (EXPECTED, False)


def test_several_events_in_one_read_come_out_in_order() -> None:
    decoder = SSEDecoder()
    assert decoder.decode(b"data: 1\n\ndata: 2\n\ndata: 3") == [SSEEvent(b"1"), SSEEvent(b"2")]
    assert decoder.decode(b"\n\n") == [SSEEvent(b"3")]


@pytest.mark.parametrize(
    ("stream", "events", "incomplete"),
    [
        (b'data: whole\n\ndata: {"half', [SSEEvent(b"whole")], True),  # closed mid-line: that line is dropped
        (b"data: complete line\n", [SSEEvent(b"complete line")], False),  # complete lines, no blank line
        (b"data: a\r", [SSEEvent(b"a")], False),  # a lone \r ends a line too
        (b": only a comment\n\n", [], False),
        (b"event: ping\n\n", [], False),  # an event with no data is not dispatched
        (b"data\n\n", [SSEEvent(b"")], False),  # a field with no colon has an empty value
        (b"data:  two spaces\n\n", [SSEEvent(b" two spaces")], False),  # only one space is stripped
        (b"data: a\n\n\ndata: b\n\n\n\n: c\n\n", [SSEEvent(b"a"), SSEEvent(b"b")], False),  # extra blank lines
        (b"event: x\n\ndata: a\n\n", [SSEEvent(b"a")], False),  # a blank line resets the event type
    ],
)
def test_edges(stream: bytes, events: list[SSEEvent], incomplete: bool) -> None:
    assert decode_all([stream]) == (events, incomplete)


def test_encoding_is_one_clean_event_that_decodes_back() -> None:
    value = {"content": "line one\nline two", "emoji": "\u2603"}
    encoded = encode_json(value)
    assert encoded.startswith(b"data: ") and encoded.endswith(b"\n\n") and encoded.count(b"\n") == 2
    assert [orjson.loads(event.data) for event in decode_all([encoded])[0]] == [value]
    assert decode_all([DONE])[0] == [SSEEvent(b"[DONE]")]


def test_several_payloads_encode_as_one_event_each() -> None:
    payloads = [orjson.dumps({"n": n, "text": "a\nb"}) for n in range(3)] + [b"[DONE]"]
    encoded = encode_events(payloads)
    assert encoded.endswith(DONE) and encoded.count(b"\n\n") == len(payloads)
    assert [event.data for event in decode_all([encoded])[0]] == payloads
    assert encode_events([b"[DONE]"]) == DONE


def reference_events(stream: bytes) -> list[SSEEvent]:
    """The event-stream rules applied line by line, as plainly as they read: the decoder,
    with its shortcut for streams of single `data: ` lines, must always agree."""
    *lines, _unterminated = re.split(rb"\r\n|\r|\n", stream)
    events: list[SSEEvent] = []
    data: list[bytes] = []
    name: str | None = None
    for line in [*lines, b""]:  # a complete event at the very end still counts
        if not line:
            if data:
                events.append(SSEEvent(b"\n".join(data), name))
            data, name = [], None
        elif not line.startswith(b":"):
            field, _, value = line.partition(b":")
            value = value[1:] if value.startswith(b" ") else value
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value.decode()
    return events


def random_stream(rng: random.Random, *, plain: bool) -> bytes:
    """Events as upstreams send them; `plain`: nearly all single `data: ` lines."""
    pieces = []
    for _ in range(rng.randint(0, 12)):
        payload = orjson.dumps({"content": rng.choice(["", "a", "h\u00e9", "\U0001f600", "x" * 40])})
        kind = (
            "data"
            if plain and rng.random() < 0.9
            else rng.choice(["data", "multi", "named", "comment", "id", "blank", "nospace"])
        )
        end = "\n" if plain or rng.random() < 0.7 else rng.choice(["\r\n", "\r"])
        if kind == "data":
            lines = [b"data: " + payload]
        elif kind == "multi":
            lines = [b"data: " + payload[:5], b"data: " + payload[5:]]
        elif kind == "named":
            lines = [b"event: message", b"data: " + payload]
        elif kind == "comment":
            lines = [b": ping"]
        elif kind == "id":
            lines = [b"id: 7", b"data: " + payload]
        elif kind == "nospace":
            lines = [b"data:" + payload]
        else:
            lines = []
        pieces.append(b"".join(line + end.encode() for line in lines) + end.encode())
    return b"".join(pieces)


@pytest.mark.parametrize("plain", [True, False])
def test_random_streams_split_anywhere_decode_as_the_rules_say(plain: bool) -> None:
    rng = random.Random(20261124 + plain)
    for case in range(400):
        stream = random_stream(rng, plain=plain)
        cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(0, 4)))
        parts = [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=False)]
        assert decode_all(parts)[0] == reference_events(stream), (case, stream, cuts)
