"""The pipeline's reads from the upstream: what waits, for how long, and what does not."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import Limits
from gateway.errors import UpstreamTimeout
from gateway.pipeline.chunks import timed_read
from gateway.pipeline.clock import Clock


class BufferedResponse:
    """An upstream body that has `ready` bytes received; a read that waits hangs forever."""

    status = 200

    def __init__(self, ready: bytes | None) -> None:
        self.headers: dict[str, str] = {}
        self.ready = ready

    def read_ready(self) -> bytes | None:
        return self.ready

    async def read_chunk(self) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def release(self) -> None: ...

    def close(self) -> None: ...


def clock_started(seconds_ago: float, **limits: float) -> Clock:
    loop = asyncio.get_running_loop()
    return Clock(Limits(**limits), loop.time() - seconds_ago, loop.time)


async def test_bytes_already_received_are_read_without_waiting() -> None:
    clock = clock_started(0.0, first_token_timeout=0.05)
    assert await timed_read(BufferedResponse(b"data: x\n\n"), clock) == b"data: x\n\n"
    assert await timed_read(BufferedResponse(b""), clock) == b""  # the body's end, already seen


async def test_a_read_that_waits_is_bounded_by_the_nearest_limit() -> None:
    clock = clock_started(0.0, first_token_timeout=0.05)
    with pytest.raises(UpstreamTimeout) as raised:
        await timed_read(BufferedResponse(None), clock)
    assert raised.value.kind == "first_token"


async def test_bytes_already_received_past_the_total_limit_end_the_stream() -> None:
    """An upstream that never lets a read wait is still held to the total limit."""
    clock = clock_started(2.0, timeout=1.0)
    with pytest.raises(UpstreamTimeout) as raised:
        await timed_read(BufferedResponse(b"data: x\n\n"), clock)
    assert raised.value.kind == "total"
