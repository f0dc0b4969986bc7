"""What every store of the rate limits' counts keeps: meters, counted all at once or not at all.

A meter is one limit a request is counted against (a key's requests per minute, a
route's tokens per minute, a key's requests in flight). The policy (policy/) decides
which meters a request has and what it takes of each; a store only counts.

Minute meters count in a sliding window of WINDOW_MS, kept in BUCKETS + 1 buckets of
BUCKET_MS: what was taken in bucket b is counted until bucket b + BUCKETS + 1 begins,
so for between 60 and 60.6 seconds. A minute meter never lets more than its limit
into any 60 seconds, and its window is exact to 1% (one bucket) of a minute: no
fixed-window burst of twice the limit at a minute's edge. In-flight meters hold one
slot per request until it is settled.

Every time is in whole milliseconds, so that the Python stores and Redis' script
compute the same buckets from the same clock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

WINDOW_MS = 60_000  # the minute of rpm and tpm
BUCKETS = 100  # a window's resolution: 1% of it
BUCKET_MS = WINDOW_MS // BUCKETS  # 600 ms
NEVER = -1  # Reading.wait: the request is larger than the limit, it never fits
UNKNOWN = -2  # Reading.wait: an in-flight meter is full; when a slot frees is not known


class StoreError(Exception):
    """The store did not answer (unreachable, too slow, failed); the request was not counted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason  # a short label for metrics: timeout, unreachable, error
        self.detail = detail


class Meter(NamedTuple):
    """One limit a request is counted against (a tuple: one is made for every request)."""

    name: str  # unique in the gateway, e.g. "key:team-search:rpm"
    limit: int  # the most the meter may hold
    amount: int  # what this request takes: requests or tokens in the minute, or 1 slot in flight
    in_flight: bool = False  # True: held until settled (max_parallel); False: counted in the sliding minute


class Reading(NamedTuple):
    """One meter, as the admission found it."""

    used: int  # what it held before this request
    wait: int  # ms until the request would fit (0: it fits now), or NEVER, or UNKNOWN
    reset: int  # ms until the meter is empty again (with this request, when admitted); 0 for in-flight


class Verdict(NamedTuple):
    admitted: bool  # every meter had room, and each now holds the request; else none was changed
    readings: tuple[Reading, ...]  # one a meter, in the order given
    bucket: int  # the bucket the request was counted in, for settle()


SettleFailed = Callable[[StoreError], None]


class Store(Protocol):
    """Where the meters' counts live. A store is made and closed by the app (runtime.Gateway).

    `admit` and `settle` of one request get the same meters, in the same order; `ticket` is
    the request's id (unique while it runs).
    """

    async def admit(self, meters: Sequence[Meter], *, ticket: str) -> Verdict:
        """Count the request against every meter, atomically: all, when each has room, else none.
        Raises StoreError when the store cannot answer; then nothing was counted."""
        ...

    def settle(
        self, meters: Sequence[Meter], changes: Sequence[int], *, ticket: str, bucket: int, on_error: SettleFailed
    ) -> None:
        """Correct an admitted request: add changes[i] to minute meter i in the bucket it was
        counted in (negative: give back; nothing once that bucket has left the window), and free
        its slot in every in-flight meter. Never blocks: a store that talks to a server sends it
        in the background, and a failure goes to `on_error` instead of being raised."""
        ...

    async def aclose(self) -> None:
        """Wait for what is still being sent, then let go of connections and memory."""
        ...


def window_wait(counts: Sequence[tuple[int, int]], total: int, amount: int, limit: int, now_ms: int) -> int:
    """ms until `amount` fits in a minute meter holding `total`, from its (bucket, count) pairs,
    oldest first: each bucket frees its count when it leaves the window."""
    if total + amount <= limit:
        return 0
    if amount > limit:
        return NEVER
    for bucket, count in counts:
        total -= count
        if total + amount <= limit:
            return leaves_at(bucket) - now_ms
    return 0  # not reached: the buckets add up to total


def leaves_at(bucket: int) -> int:
    """The ms at which what was counted in `bucket` stops counting."""
    return (bucket + BUCKETS + 1) * BUCKET_MS
