"""Try a request's targets until one answers: weights, retries, fallbacks, cooldowns.

Only what is worth retrying is retried (connection errors, timeouts, 429, 500,
502, 503, 504, 529, an error event or a broken stream), and only before a byte
has gone to the client: an attempt ends with the first chunk of the upstream's
answer (content, refusal, tool call or finish reason; a role chunk before it is
held back) or its whole completion, after which the response is the client's.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..config import Route, Target
from ..errors import UpstreamError, UpstreamStatusError, UpstreamTimeout
from .health import HealthBoard
from .table import RoutingTable

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
RETRYABLE_TIMEOUTS = frozenset({"connect", "first_token", "idle"})  # idle: after a role chunk, before the answer
BACKOFF_BASE = 0.1  # seconds before the second attempt, doubling after
BACKOFF_CAP = 2.0


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int  # 1 for the first
    route: Route
    index: int
    target: Target
    upstream_model: str


@dataclass(frozen=True, slots=True)
class Served(Generic[T]):
    result: T
    attempt: Attempt


class AttemptsExhausted(Exception):
    """Every attempt failed; `error` is the last one's, `attempts` how many were made."""

    def __init__(self, error: UpstreamError, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


def retryable(exc: UpstreamError) -> bool:
    if isinstance(exc, UpstreamTimeout):
        return exc.kind in RETRYABLE_TIMEOUTS
    if isinstance(exc, UpstreamStatusError):
        return exc.status in RETRYABLE_STATUSES
    return True  # unreachable upstreams and broken protocol, before the answer began


async def dispatch(
    route: Route,
    requested_model: str,
    run: Callable[[Attempt], Awaitable[T]],
    *,
    table: RoutingTable,
    board: HealthBoard,
    deadline: float,
    on_failure: Callable[[Attempt, UpstreamError], None],
    rng: random.Random | None = None,
) -> Served[T]:
    """Run attempts along the route, then its fallbacks, until one succeeds.

    Raises AttemptsExhausted with the last error, or at once for an error not worth retrying.
    """
    rng = rng or board.rng
    chain = [route, *(found for name in route.fallbacks if (found := table.by_name(name)) is not None)]
    number, last_error, last_target = 0, None, None
    for position, current in enumerate(chain):
        tried: set[int] = set()
        for _ in range(1 + current.retries):
            index = board.pick(current, tried, last_resort=position == len(chain) - 1)
            if index is None:
                break  # every target of this route is cooling down: on to the next fallback
            if last_error is not None:
                same_target = (current.model, index) == last_target
                if not await backoff(number, last_error, deadline, rng, honour_retry_after=same_target):
                    raise AttemptsExhausted(last_error, number)
            number += 1
            tried.add(index)
            target = current.targets[index]
            model = target.model or (requested_model if position == 0 else current.model)
            attempt = Attempt(number=number, route=current, index=index, target=target, upstream_model=model)
            try:
                result = await run(attempt)
            except UpstreamError as exc:
                on_failure(attempt, exc)
                if not retryable(exc):
                    raise AttemptsExhausted(exc, number) from None
                board.failed(current, index)
                last_error, last_target = exc, (current.model, index)
                continue
            board.succeeded(current, index)
            return Served(result, attempt)
    assert last_error is not None, "a route always has a target and the last route is always tried"
    raise AttemptsExhausted(last_error, number)


async def backoff(
    number: int, error: UpstreamError, deadline: float, rng: random.Random, *, honour_retry_after: bool
) -> bool:
    """Wait before the next attempt (exponential, with jitter); False when no time is left for one."""
    delay = rng.uniform(0, min(BACKOFF_BASE * 2 ** (number - 1), BACKOFF_CAP))
    retry_after = getattr(error, "retry_after", None)
    if honour_retry_after and retry_after:
        delay = max(delay, retry_after)
    loop = asyncio.get_running_loop()
    if loop.time() + delay >= deadline:
        return False
    await asyncio.sleep(delay)
    return True
