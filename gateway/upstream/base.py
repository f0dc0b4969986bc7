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
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes: ...

    async def read_chunk(self) -> bytes:
        """The next bytes of the body as they arrive; b"" at its end."""
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
    async def send(self, request: UpstreamRequest, *, connect_timeout: float) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...
