"""Which rate limits a request is held to, and what the client is told about them.

A request is counted against its key's `rpm`, `tpm` and `max_parallel` (auth.keys) and
its route's (a route's own, else the global `limits:`). Requests per minute take 1,
tokens per minute the prompt's tokens plus every choice's max_tokens (corrected to the
real usage when the request ends), in flight 1 until it ends.

Pure: rules in, meters out; readings in, headers and errors out.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from ..config import ClientKey, Route
from ..errors import RateLimited
from ..store.base import NEVER, UNKNOWN, Meter, Reading, Verdict

RPM, TPM, MAX_PARALLEL = "rpm", "tpm", "max_parallel"
IN_FLIGHT_RETRY_MS = 1000  # what a client refused for max_parallel is told to wait: when a slot frees is not known
HEADERS = {  # OpenAI's, for each kind of limit that has them
    kind: (f"x-ratelimit-limit-{noun}", f"x-ratelimit-remaining-{noun}", f"x-ratelimit-reset-{noun}")
    for kind, noun in (("rpm", "requests"), ("tpm", "tokens"))
}
WHAT = {
    RPM: "requests per minute (rpm)",
    TPM: "tokens per minute (tpm)",
    MAX_PARALLEL: "requests in flight (max_parallel)",
}


class Rule(NamedTuple):
    """One limit: whose (a key's or a route's), of which kind, and its value."""

    scope: str  # "key" or "route"
    owner: str  # the key's id, or the route's name
    kind: str  # RPM, TPM or MAX_PARALLEL
    limit: int
    meter: Meter  # the rule as a store counts it; a tokens-per-minute meter's amount is set per request
    limit_text: str  # the limit, as its header gives it

    def counted(self, tokens: int) -> Meter:
        """The meter of a request that may use `tokens`."""
        return Meter(self.meter.name, self.limit, tokens, False) if self.kind == TPM else self.meter


class RateLimits(Protocol):
    """What holds rate limits: a client key, a route's limits."""

    @property
    def rpm(self) -> int | None: ...

    @property
    def tpm(self) -> int | None: ...

    @property
    def max_parallel(self) -> int | None: ...


def rules_of(scope: str, owner: str, holder: RateLimits) -> tuple[Rule, ...]:
    """The rules a key (scope "key") or a route's limits (scope "route") set."""
    return tuple(
        Rule(scope, owner, kind, limit, Meter(f"{scope}:{owner}:{kind}", limit, 1, kind == MAX_PARALLEL), str(limit))
        for kind, limit in ((RPM, holder.rpm), (TPM, holder.tpm), (MAX_PARALLEL, holder.max_parallel))
        if limit is not None
    )


def rules_for(key: ClientKey | None, route: Route) -> tuple[Rule, ...]:
    """The rules a request by `key` (None: no keys asked for) on `route` is held to: the key's, then the route's."""
    key_rules = rules_of("key", key.id, key) if key is not None else ()
    return key_rules + rules_of("route", route.model, route.limits)


class Plan(NamedTuple):
    """The rules of a request by a key on a route, and what they need (made once for each pair)."""

    rules: tuple[Rule, ...]
    meters: tuple[Meter, ...]  # theirs; a tokens-per-minute meter's amount is set for each request
    held: bool  # an in-flight rule: settling frees its slot
    token_rules: tuple[int, ...]  # the indexes of the tokens-per-minute rules
    headed: tuple[tuple[str, tuple[int, ...]], ...]  # each kind with OpenAI headers, and the indexes of its rules

    @property
    def tokens(self) -> bool:
        """A tokens-per-minute rule: the request's tokens are counted, and settled."""
        return bool(self.token_rules)

    def counted(self, tokens: int) -> tuple[Meter, ...]:
        """The meters of a request that may use `tokens`."""
        if not self.tokens:
            return self.meters
        meters = list(self.meters)
        for index in self.token_rules:
            meters[index] = self.rules[index].counted(tokens)
        return tuple(meters)

    def over_tokens(self, verdict: Verdict) -> bool:
        """Whether a refusal was for a tokens-per-minute limit (among others, perhaps)."""
        return any(verdict.readings[index].wait != 0 for index in self.token_rules)


def plan_for(key: ClientKey | None, route: Route) -> Plan:
    rules = rules_for(key, route)
    return Plan(
        rules,
        tuple(rule.meter for rule in rules),
        any(rule.kind == MAX_PARALLEL for rule in rules),
        tuple(index for index, rule in enumerate(rules) if rule.kind == TPM),
        tuple(
            (kind, indexes)
            for kind in HEADERS
            if (indexes := tuple(index for index, rule in enumerate(rules) if rule.kind == kind))
        ),
    )


def refusal(plan: Plan, meters: Sequence[Meter], readings: Sequence[Reading]) -> tuple[Rule, RateLimited]:
    """The 429 for a request that did not fit, naming the limit it waits longest for (and that
    rule); with the headers that tell the OpenAI SDK when to retry, or not to: a request
    larger than a limit never fits."""
    over = [index for index, reading in enumerate(readings) if reading.wait != 0]
    worst = max(over, key=lambda index: wait_ms(readings[index]))
    rule, meter, reading = plan.rules[worst], meters[worst], readings[worst]
    whose = f"{rule.scope} {rule.owner!r}"
    if reading.wait == NEVER:
        error = RateLimited(
            f"Request too large for {whose} on {WHAT[rule.kind]}: limit {rule.limit}, requested {meter.amount} "
            "(the prompt's tokens and max_tokens for every choice). Lower max_tokens or shorten the prompt."
        )
        error.headers["x-should-retry"] = "false"
    else:
        wait = round(wait_ms(reading))
        used = "in flight" if rule.kind == MAX_PARALLEL else "used"
        error = RateLimited(
            f"Rate limit reached for {whose} on {WHAT[rule.kind]}: limit {rule.limit}, {used} {reading.used}, "
            f"requested {meter.amount}. Please try again in {duration(wait)}."
        )
        error.headers.update(
            {"retry-after": str(math.ceil(wait / 1000)), "retry-after-ms": str(wait), "x-should-retry": "true"}
        )
    error.headers.update(ratelimit_headers(plan, meters, readings, admitted=False))
    return rule, error


def wait_ms(reading: Reading) -> float:
    if reading.wait == NEVER:
        return math.inf
    return IN_FLIGHT_RETRY_MS if reading.wait == UNKNOWN else reading.wait


def ratelimit_headers(
    plan: Plan, meters: Sequence[Meter], readings: Sequence[Reading], *, admitted: bool = True
) -> dict[str, str]:
    """OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}, for the tightest
    requests-per-minute and tokens-per-minute limit of the request (none of a kind: no headers).
    `admitted`: the remaining count takes the request's own amount off."""
    headers = {}
    for kind, indexes in plan.headed:
        remaining, tightest = None, 0
        for index in indexes:
            left = plan.rules[index].limit - readings[index].used - (meters[index].amount if admitted else 0)
            if remaining is None or left < remaining:
                remaining, tightest = left, index
        limit_header, remaining_header, reset_header = HEADERS[kind]
        headers[limit_header] = plan.rules[tightest].limit_text
        headers[remaining_header] = str(max(remaining or 0, 0))
        headers[reset_header] = duration(readings[tightest].reset)
    return headers


@functools.lru_cache(maxsize=4096)  # a minute's resets, to the millisecond, are a few hundred values
def duration(milliseconds: float) -> str:
    """A duration as OpenAI writes its resets: 250ms, 1s, 1.5s, 6m0s."""
    milliseconds = max(math.ceil(milliseconds), 0)
    if milliseconds < 1000:
        return f"{milliseconds}ms"
    minutes, rest = divmod(milliseconds, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
