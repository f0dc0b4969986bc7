"""The OpenAI adapter as pure code: the shapes of the chunks and completions it passes on."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fakes import chunk

from gateway.errors import UpstreamProtocolError
from gateway.providers.openai import OpenAIStreamTranslator
from gateway.stream.sse import SSEEvent

IDENTITY = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "gpt-4o-mini"}
NO_IDENTITY = {"id": "", "object": "", "created": 0, "model": ""}
PROMPT_FILTER = {**NO_IDENTITY, "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}


def event(data: dict[str, Any] | bytes) -> SSEEvent:
    return SSEEvent(data if isinstance(data, bytes) else orjson.dumps(data))


def translated(*events: dict[str, Any] | bytes) -> tuple[list[list[dict[str, Any]]], list[bool]]:
    """The chunks of each event, and whether each was passed through as the event's own chunk."""
    translator = OpenAIStreamTranslator()
    chunks, verbatim = [], []
    for data in events:
        chunks.append(translator.translate(event(data)))
        verbatim.append(translator.passthrough)
    return chunks, verbatim


# ---------------------------------------------------------------- identity


def test_an_annotation_before_the_first_chunk_waits_for_the_streams_identity() -> None:
    role = chunk({"role": "assistant", "content": ""})
    chunks, verbatim = translated(PROMPT_FILTER, role, chunk({"content": "Hi"}))
    assert chunks[0] == []
    assert chunks[1] == [{**IDENTITY, "choices": [], "prompt_filter_results": [{"prompt_index": 0}]}, role]
    assert chunks[2] == [chunk({"content": "Hi"})]
    assert verbatim[1:] == [False, True]  # the event that released it is re-encoded, the next goes as it came


def test_an_annotation_after_the_end_takes_the_streams_identity_and_a_delta() -> None:
    late = {
        **NO_IDENTITY,
        "usage": None,
        "choices": [{"index": 0, "finish_reason": None, "content_filter_results": {"hate": {"filtered": False}}}],
    }
    chunks, verbatim = translated(chunk({"content": "Hi"}), chunk({}, finish_reason="stop"), late)
    assert chunks[2] == [
        {
            **IDENTITY,
            "usage": None,
            "choices": [
                {
                    "index": 0,
                    "delta": {},
                    "finish_reason": None,
                    "content_filter_results": {"hate": {"filtered": False}},
                }
            ],
        }
    ]
    assert verbatim == [True, True, False]


def test_annotations_that_never_see_an_identity_are_left_out() -> None:
    chunks, _ = translated(PROMPT_FILTER, b"[DONE]")
    assert chunks == [[], []]


@pytest.mark.parametrize(
    "events",
    [
        [{**NO_IDENTITY, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}],
        [PROMPT_FILTER] * 9,  # more than the few an upstream may send before its first chunk
    ],
    ids=["content with no identity", "too many annotations before the first chunk"],
)
def test_chunks_with_no_identity_before_the_first_are_a_protocol_error(events: list[dict[str, Any]]) -> None:
    with pytest.raises(UpstreamProtocolError):
        translated(*events)
