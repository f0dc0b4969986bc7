"""A request's deadlines, on the event loop's clock, and the moments its metrics observe.

Each wait on the upstream ends at the nearest deadline, and the limit that fires is
named in the error. Deadlines run on the event loop's clock; the moments the metrics
observe are taken with time.perf_counter(), since uvloop's loop.time() moves in
whole milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Limits
from ..errors import UpstreamTimeout


class Clock:
    """The deadlines of one request, on the event loop's clock."""

    __slots__ = (
        "attempt_started",
        "first_token_at",
        "last_chunk_at",
        "limits",
        "now",
        "started",
        "total_deadline",
        "upstream_done_at",
        "upstream_sent_at",
    )

    def __init__(self, limits: Limits, started: float, now: Callable[[], float]) -> None:
        self.limits = limits
        self.now = now  # the event loop's time()
        self.started = started
        self.attempt_started = started  # the first-chunk wait starts again with each attempt
        self.total_deadline = started + limits.timeout
        self.last_chunk_at: float | None = None  # None until the first chunk arrived
        # observed moments, on time.perf_counter()
        self.first_token_at: float | None = None  # when the first token went to the client (time.perf_counter())
        self.upstream_sent_at: float | None = None
        self.upstream_done_at: float | None = None

    def start_attempt(self, now: float, limits: Limits) -> None:
        """A new attempt, under its route's limits (a fallback's may be tighter); the
        whole request's deadline never moves later."""
        self.limits = limits
        self.total_deadline = min(self.total_deadline, self.started + limits.timeout)
        self.attempt_started = now
        self.last_chunk_at = None

    def next_deadline(self, *, streaming: bool) -> tuple[float, str]:
        """When the current wait on the upstream must end, and the name of that limit."""
        if not streaming:
            return self.total_deadline, "total"
        if self.last_chunk_at is None:
            deadline, kind = self.attempt_started + self.limits.first_token_timeout, "first_token"
        else:
            deadline, kind = self.last_chunk_at + self.limits.idle_timeout, "idle"
        if self.total_deadline <= deadline:
            return self.total_deadline, "total"
        return deadline, kind

    def timeout(self, kind: str) -> UpstreamTimeout:
        seconds = {
            "first_token": self.limits.first_token_timeout,
            "idle": self.limits.idle_timeout,
            "total": self.limits.timeout,
            "connect": self.limits.connect_timeout,
        }[kind]
        return UpstreamTimeout(kind, seconds)
