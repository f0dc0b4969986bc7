"""aioresponses in front of the gateway's one ClientSession: upstreams that answer with no socket.

`MockedUpstreams` is aioresponses as it is, but for the response class it builds (see
`CompatibleResponse`). `sent()` reads back what the transport sent, from aioresponses'
public record of calls.

What aioresponses does not do as aiohttp would, and what follows for these tests:
  - the whole body is in the response before the first read (no TCP splits: test_sse.py
    covers those), and a read never waits;
  - no connector: nothing of TLS, the pool, Host or Content-Length, Accept-Encoding or
    decompression, nor header validation (test_upstream.py covers those on real sockets);
  - `trace_request_ctx` is passed along and recorded but no trace signal fires, so a
    pooled connection is never "reused" and the transport never tries a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aioresponses import aioresponses
from multidict import CIMultiDict
from yarl import URL


class RequestSent:
    """What aiohttp reads of a request that was already sent: how many bytes it had."""

    output_size = 0


class CompatibleResponse(aiohttp.ClientResponse):
    """aiohttp 3.14 made ClientResponse's `stream_writer` argument required; aioresponses 0.7.9
    (the latest) does not pass it (pnuckowski/aioresponses#289), so every mocked request failed."""

    def __init__(self, method: str, url: URL, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", RequestSent())
        super().__init__(method, url, **kwargs)


class MockedUpstreams(aioresponses):
    """aioresponses whose answers are built with `CompatibleResponse`."""

    def __enter__(self) -> MockedUpstreams:
        super().__enter__()
        return self

    def add(self, url: Any, method: str = "GET", **kwargs: Any) -> None:  # type: ignore[override]
        kwargs.setdefault("response_class", CompatibleResponse)
        super().add(url, method, **kwargs)


@dataclass(frozen=True)
class Sent:
    """One request as the transport handed it to the session."""

    headers: CIMultiDict[str]
    raw: bytes

    @property
    def body(self) -> Any:
        return orjson.loads(self.raw)


def sent(mocked: aioresponses, url: str) -> list[Sent]:
    """The POSTs sent to `url`, in order (an empty list when none was)."""
    calls = mocked.requests.get(("POST", URL(url)), [])
    return [Sent(CIMultiDict(call.kwargs["headers"]), call.kwargs["data"]) for call in calls]
