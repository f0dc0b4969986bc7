"""Admission against the rate limits, and settling what a request really used.

    admit   after the route is known and the key checked, before any upstream is asked:
            the request's rules become meters, counted all at once by the store; over a
            limit, RateLimited (429) and nothing is counted
    settle  when the request has ended, whatever the outcome: its tokens per minute are
            corrected to its real usage, its in-flight slots freed

One limiter over one `Store` (store/): the same rules whether the counts live in the
process, in memory the workers share, or in Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..config import ClientKey, Route
from ..errors import LimitsUnavailable
from ..observability.metrics import NO_KEY, Metrics
from ..store.base import Meter, Store, StoreError, Verdict
from .rules import Plan, plan_for, ratelimit_headers, refusal

log = logging.getLogger("gateway.limits")

LOG_EVERY = 10.0  # seconds: at most one log line this often about a failing store
REMEMBERED = 100_000  # pairs of a key and a route whose rules are kept (each reload brings new ones)


class RateLimiter:
    """The gateway's one limiter; `on_error` is store.on_error (allow or deny)."""

    def __init__(self, store: Store, *, on_error: str, metrics: Metrics) -> None:
        self.store = store
        self.on_error = on_error
        self.metrics = metrics
        self._unlogged = 0  # store failures since the last line about them
        self._logged_at = -LOG_EVERY
        self._plans: dict[tuple[int, int], tuple[ClientKey | None, Route, Plan]] = {}  # by the ids of both

    async def admit(
        self,
        key: ClientKey | None,
        route: Route,
        *,
        ticket: str,
        tokens: Callable[[], Awaitable[int]],
        most_tokens: int | None = None,
    ) -> Ticket | None:
        """The request's ticket, to settle when it ends; None when no limit applies to it, or
        when the store failed and on_error is allow (then it goes uncounted).

        `tokens` counts the most the request may use, prompt and completion (awaited only
        when a tokens-per-minute limit applies). `most_tokens`, when given, is a bound of that
        count that costs nothing to know (the body's bytes as prompt tokens: a token is at
        least a byte): it is reserved instead, and the count is made only when the bound does
        not fit a tokens-per-minute limit. Never over-admits: the bound is never less than
        the count, and a request the bound does not fit is admitted or refused on its count.

        Raises RateLimited over a limit, LimitsUnavailable when the store failed and on_error
        is deny."""
        plan = self.plan_for(key, route)
        if not plan.rules:
            return None
        if not plan.tokens:
            reserved = 0
        elif most_tokens is not None:
            reserved = most_tokens
        else:
            reserved = await tokens()
        meters = plan.counted(reserved)
        verdict = await self.count(meters, ticket)
        if verdict is not None and not verdict.admitted and most_tokens is not None and plan.over_tokens(verdict):
            counted = await tokens()
            if counted < reserved:  # the bound was too coarse: ask again with the count
                reserved, meters = counted, plan.counted(counted)
                verdict = await self.count(meters, ticket)
        if verdict is None:
            return None
        if not verdict.admitted:
            rule, error = refusal(plan, meters, verdict.readings)
            self.metrics.rate_limited.labels(route.model, key.id if key else NO_KEY, rule.scope, rule.kind).inc()
            raise error
        headers = ratelimit_headers(plan, meters, verdict.readings)
        return Ticket(self, plan, meters, verdict.bucket, ticket, reserved, headers)

    async def count(self, meters: Sequence[Meter], ticket: str) -> Verdict | None:
        """The store's verdict; None when it failed and on_error is allow. Raises
        LimitsUnavailable when it failed and on_error is deny."""
        try:
            return await self.store.admit(meters, ticket=ticket)
        except StoreError as exc:
            self.store_failed(exc, step="admit")
            if self.on_error == "deny":
                raise LimitsUnavailable(
                    "The gateway cannot check its rate limits right now (store.on_error: deny); try again shortly."
                ) from None
            return None

    def plan_for(self, key: ClientKey | None, route: Route) -> Plan:
        """The rules of a request by `key` on `route`, made once for each key and route of a config."""
        known = self._plans.get((id(key), id(route)))
        if known is not None and known[0] is key and known[1] is route:
            return known[2]
        if len(self._plans) >= REMEMBERED:
            self._plans.clear()
        plan = plan_for(key, route)
        self._plans[id(key), id(route)] = (key, route, plan)
        return plan

    def settle_failed(self, error: StoreError) -> None:
        self.store_failed(error, step="settle")

    def store_failed(self, error: StoreError, *, step: str) -> None:
        """Count a failure of the store, and say so in the log at most every LOG_EVERY seconds."""
        self.metrics.store_errors.labels(step, error.reason).inc()
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY:
            decision = "admitting uncounted" if self.on_error == "allow" else "refusing with 503"
            log.warning(
                "rate limit store failed to %s (%s); %s (store.on_error: %s); %d failures since the last line",
                step,
                error,
                decision,
                self.on_error,
                self._unlogged,
                extra={"fields": {"step": step, "reason": error.reason, "failures": self._unlogged}},
            )
            self._logged_at, self._unlogged = now, 0


@dataclass(slots=True)
class Ticket:
    """What an admitted request holds: its meters, and the headers that describe them."""

    limiter: RateLimiter
    plan: Plan
    meters: Sequence[Meter]
    bucket: int
    id: str
    reserved: int  # the tokens counted at admission
    headers: dict[str, str]  # x-ratelimit-*, for the response

    def settle(self, used_tokens: int) -> None:
        """Correct the tokens counted to `used_tokens` (prompt and completion, as delivered;
        0 when nothing was) and free the in-flight slots. Never blocks."""
        change = used_tokens - self.reserved if self.plan.tokens else 0
        if change or self.plan.held:
            changes = [0] * len(self.meters)
            for index in self.plan.token_rules:
                changes[index] = change
            self.limiter.store.settle(
                self.meters, changes, ticket=self.id, bucket=self.bucket, on_error=self.limiter.settle_failed
            )
