"""The upstream interface: what the pipeline sends, what comes back, and who sends it.

A `Transport` sends one `UpstreamRequest` and returns an `UpstreamResponse` whose
body is read whole with `read()` or piece by piece with `read_chunk()`. The caller
owns the response: it calls `release()` once done with a body that ended, or `close()`
to drop the connection at once (the upstream then stops generating).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """A POST to an upstream, as a provider adapter builds it."""

    url: str
    body: bytes  # JSON, encoded
    headers: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False  # the answer is an event stream: asked for uncompressed, so each event flushes


class UpstreamResponse(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The answer's headers, their names case-insensitive."""
        ...

    async def read(self, max_bytes: int) -> bytes:
        """The whole body, decompressed; raises UpstreamTooLarge past `max_bytes` (the
        connection is dropped and what was read let go) and UpstreamProtocolError when the
        body is cut off."""
        ...

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; b"" at its end; raises UpstreamProtocolError
        when the body is cut off."""
        ...

    def read_ready(self) -> bytes | None:
        """The bytes of the body already received, without waiting; b"" at its end,
        None when nothing is there yet (read_chunk() would wait)."""
        ...

    def release(self) -> None:
        """Done with the body: the connection goes back to the pool if the body has ended
        (what is left of it already arrived), else it is dropped; never waits."""
        ...

    def close(self) -> None:
        """Drop the connection at once (the upstream stops generating)."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> UpstreamResponse:
        """Send `request`; returns once the response's status and headers arrived, whatever the
        status. Raises UpstreamTimeout("connect") when no connection was had within
        `connect_timeout` seconds, UpstreamUnreachable when none could be made, and
        UpstreamProtocolError when the exchange broke before the headers (or was a redirect)."""
        ...
