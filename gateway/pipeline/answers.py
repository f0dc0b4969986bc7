"""A stream's chunks as values, for the gateway itself to read (a quorum route's member
calls and judge), with the same stages as a client's stream (pipeline.chunks) but no
encoding at the end:

    transport response -> timed read -> SSEDecoder.decode -> translator.translate
      -> StreamLimiter.limit -> the chunks, one list per upstream read
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

from ..errors import UpstreamProtocolError
from ..providers import Provider, StreamTranslator
from ..stream.limiter import StreamLimiter
from ..stream.sse import EventTooLarge, SSEDecoder, SSEEvent
from ..stream.tokens import INLINE_CHARS
from ..upstream.base import UpstreamResponse
from .chunks import timed_read
from .clock import Clock


async def answer_chunks(
    response: UpstreamResponse, provider: Provider, limiter: StreamLimiter, clock: Clock
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The chunks the limiter lets through (OpenAI's `chat.completion.chunk`s, cut to the
    budget), one non-empty list per upstream read that gave any; nothing is held back
    (`limiter.begun` says when the answer has begun). Ends when the answer does (the
    upstream's end, or a cut: the upstream is then closed); raises UpstreamError for a
    timeout, an error event, an event over limits.max_event_bytes, or a stream that ends
    before the answer is complete.

    The caller closes `response` when this ends early (an error, a cancellation).
    """
    decoder = SSEDecoder(max_event_bytes=clock.limits.max_event_bytes)
    translator = provider.stream_translator()
    while True:
        data = await timed_read(response, clock)
        too_large: EventTooLarge | None = None
        try:
            events = decoder.decode(data) if data else decoder.flush()
        except EventTooLarge as exc:  # the whole events before it still count, then the error
            events, too_large = exc.complete, exc
        out: list[dict[str, Any]] = []
        if sum(len(event.data) for event in events) > INLINE_CHARS:  # parsed and counted off the event loop
            any_chunk = await asyncio.to_thread(limited, events, translator, limiter, out)
        else:
            any_chunk = limited(events, translator, limiter, out)
        if any_chunk or (clock.last_chunk_at is not None and events):
            clock.last_chunk_at = clock.now()  # the idle timeout starts again
        if out:
            yield out
        if translator.finished or limiter.done:
            clock.upstream_done_at = time.perf_counter()
            if translator.finished:
                response.release()
            else:
                response.close()  # the upstream ignored max_tokens: stop it generating
            return
        if too_large is not None:
            raise too_large
        if not data:
            if not limiter.all_finished:
                raise UpstreamProtocolError("The upstream's stream ended before the answer was complete.")
            clock.upstream_done_at = time.perf_counter()
            return


def limited(
    events: list[SSEEvent], translator: StreamTranslator, limiter: StreamLimiter, out: list[dict[str, Any]]
) -> bool:
    """Translate and limit the events of one read, up to the end of the answer, putting the
    chunks to pass on into `out`; returns whether any chunk came of them."""
    any_chunk = False
    for event in events:
        for chunk in translator.translate(event):
            any_chunk = True
            kept = limiter.limit(chunk)
            if kept is not None:
                out.append(kept)
        if translator.finished or limiter.done:
            break
    return any_chunk
