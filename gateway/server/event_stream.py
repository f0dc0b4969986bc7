"""The server-sent events response a stream goes out in, and writes that a stalled client cannot hold up."""

from __future__ import annotations

import asyncio

from aiohttp import web

STALLED_CLIENT_BYTES = 64 * 1024  # aiohttp waits for the transport to drain above this


class EventStreamResponse(web.StreamResponse):
    """A streamed response whose headers go out with its first bytes, in one write
    (as aiohttp's own web.Response does): the first chunk is written right after prepare()."""

    _send_headers_immediately = False


async def write_bounded(
    request: web.Request, response: web.StreamResponse, data: bytes, timeout: float, *, last: bool = False
) -> None:
    """Write (`last`: and end the response); a client that leaves STALLED_CLIENT_BYTES
    unread for `timeout` seconds is cut off: its connection is aborted and TimeoutError
    raised. Only a write that can block pays for a timer.
    """
    write = response.write_eof if last else response.write
    transport = request.transport
    if transport is None or transport.get_write_buffer_size() + len(data) < STALLED_CLIENT_BYTES:
        await write(data)
        return
    try:
        async with asyncio.timeout(timeout):
            await write(data)
    except TimeoutError:
        transport.abort()
        raise
