"""The server-sent events response a stream goes out in (aiohttp-sse's `EventSourceResponse`),
and writes that a stalled client cannot hold up.

aiohttp-sse gives the event stream's headers (`Content-Type: text/event-stream`,
`Cache-Control: no-cache`, `X-Accel-Buffering: no`), a `: ping` comment every
`server.sse_keepalive` seconds so that proxies between the gateway and the client
keep a quiet stream open, and a kernel send timeout (TCP_USER_TIMEOUT) of
`server.send_timeout`. The chunks are encoded by the pipeline (stream.sse), so their
bytes are written as they are, several events in one write where they came together.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp_sse import EventSourceResponse

STALLED_CLIENT_BYTES = 64 * 1024  # aiohttp waits for the transport to drain above this


class EventStream(EventSourceResponse):
    """An event stream whose headers go out with its first bytes, in one write, as aiohttp's
    own web.Response sends its headers with its body (aiohttp's class attribute for it)."""

    _send_headers_immediately = False

    def __init__(self, *, headers: dict[str, str], keepalive: float, send_timeout: float) -> None:
        super().__init__(
            headers=headers, sep="\n", allow_all_methods=True, ping_interval=keepalive, send_timeout=send_timeout
        )


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
