"""What one chat completion request did: filled in as it goes, then counted and logged once.

A quorum route's request makes several upstream calls (each member in each round, the
judge): each has a record of its own, counted under its route like any request but not
logged, and listed in the request's record (`calls`), where the ledger finds one row each.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from ..errors import GatewayError, UpstreamError, UpstreamTimeout
from .logs import AccessLog
from .metrics import NO_KEY, NO_PROVIDER, UNKNOWN_ROUTE, Metrics

OUTCOMES = ("ok", "rejected", "error", "broken", "client_gone")  # the values of the `outcome` label


class UidSource:
    """Ledger row ids: this process's random 64 bits (drawn again in a forked worker, so that no
    two processes or replicas share them), then a counter; a random number per request would
    cost a system call on every request."""

    def __init__(self) -> None:
        self.renew()
        os.register_at_fork(after_in_child=self.renew)

    def renew(self) -> None:
        """Draw a new random prefix and restart the counter (at start-up and after a fork)."""
        self.prefix = os.urandom(8).hex()
        self.numbers = itertools.count(1)

    def __call__(self) -> str:
        """The next id: 32 lowercase hex digits, the prefix then the counter."""
        return f"{self.prefix}{next(self.numbers):016x}"


new_uid = UidSource()  # () -> an id unique across processes and replicas: 32 hex digits


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    path: str
    client: str | None
    started: float  # time.perf_counter(), like every moment below
    at: float = 0.0  # when the request arrived, in seconds since the epoch (the ledger's time)
    uid: str = field(default_factory=new_uid)  # the ledger row's own id (and its budget holds')
    route: str = UNKNOWN_ROUTE
    provider: str = NO_PROVIDER
    key: str = NO_KEY  # the client key's id
    upstream_model: str | None = None
    stream: bool = False
    status: int = 0
    first_token_at: float | None = None
    upstream_sent_at: float | None = None
    upstream_done_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # of prompt_tokens, read from the upstream's cache
    cost_usd: float | None = 0.0  # None: not known (no price for the model, or an upstream call without usage)
    attempts: int = 0  # upstream attempts made
    held: bool = False  # whether it holds budget (under `uid`) until its ledger row is written
    truncated: bool = False
    error: str | None = None  # the error kind: an OpenAI error code or type
    disconnected: bool = False
    routed: bool = False  # counted in the in-flight gauge
    # a quorum route's request: its upstream calls, in the order they ended; None: the one call is this record's own
    calls: list[CallRecord] | None = None

    def timing(self, clock: Any) -> None:
        self.first_token_at = clock.first_token_at
        self.upstream_sent_at = clock.upstream_sent_at
        self.upstream_done_at = clock.upstream_done_at

    def fail(self, exc: GatewayError) -> None:
        self.error = exc.code or exc.type

    @property
    def outcome(self) -> str:
        """How the request ended for its client, one of OUTCOMES: an error status says it;
        a 200 stream that ended with an error event instead of its end is `broken`."""
        if self.status >= 500 or self.status < 200:  # no status: the handler failed, and a 500 went out
            return "error"
        if self.disconnected:
            return "client_gone"
        if self.status >= 400:
            return "rejected"
        return "broken" if self.error else "ok"

    @property
    def tokens_used(self) -> int:
        """Prompt and completion tokens, as delivered (0 when nothing was)."""
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)

    def usage(self, usage: Any) -> None:
        if isinstance(usage, dict):
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            self.prompt_tokens = prompt if isinstance(prompt, int) else None
            self.completion_tokens = completion if isinstance(completion, int) else None
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if isinstance(details, dict) else None
            self.cached_tokens = cached if isinstance(cached, int) else None

    @property
    def unpriced(self) -> bool:
        """Whether tokens were used that no price is known for."""
        return self.cost_usd is None and bool(self.prompt_tokens or self.completion_tokens)


@dataclass(slots=True)
class CallRecord:
    """One upstream call of a quorum route's request: who was asked, when, and what it used.

    `record` is the call's own, under the member's route: its provider, upstream_model,
    status, error and prompt and completion tokens (None: no usage known, as for a call
    that failed or was cancelled before its answer began); its request_id and key are
    the client request's.
    """

    member: str  # the route called
    role: str  # "member" or "judge"
    round: int  # the debate round it answered in (1, 2, ...); the judge's: the last round's
    record: RequestRecord


def council_cost(calls: list[CallRecord]) -> float | None:
    """What a quorum request cost in USD: its calls' costs summed; None when a call used
    tokens no price is known for."""
    if any(call.record.unpriced for call in calls):
        return None
    return sum(call.record.cost_usd or 0.0 for call in calls)


def record_upstream_error(metrics: Metrics, record: RequestRecord, exc: UpstreamError) -> None:
    metrics.upstream_errors.labels(record.provider, exc.reason).inc()
    if isinstance(exc, UpstreamTimeout):
        metrics.timeouts.labels(record.route, exc.kind).inc()


def finish(metrics: Metrics, access_log: AccessLog, record: RequestRecord, finished: float) -> None:
    """Count the request in every metric it belongs to, and write its one log line."""
    ttft = count(metrics, record, finished)
    if access_log.enabled:
        access_log.write(log_fields(record, finished - record.started, ttft))


def count(metrics: Metrics, record: RequestRecord, finished: float) -> float | None:
    """Count the request (or one call of a council) in every metric it belongs to; returns
    its time to first token in seconds, if it had one."""
    series = metrics.series(record.route, record.provider, "true" if record.stream else "false", record.key)
    duration = finished - record.started
    series.requests(record.status, record.outcome).inc()
    series.duration.observe(duration)
    ttft = None
    if record.first_token_at is not None:
        ttft = record.first_token_at - record.started
        series.ttft.observe(ttft)
    if record.upstream_sent_at is not None and record.upstream_done_at is not None:
        overhead = (record.upstream_sent_at - record.started) + (finished - record.upstream_done_at)
        series.overhead.observe(max(overhead, 0.0))
    if record.calls is None:  # a council's tokens and spend are counted by each of its calls, under their routes
        if record.prompt_tokens:
            series.prompt_tokens.inc(record.prompt_tokens)
        if record.completion_tokens:
            series.completion_tokens.inc(record.completion_tokens)
        if record.cost_usd:
            series.spend.inc(record.cost_usd)
        elif record.unpriced:
            series.unpriced.inc()
    if record.truncated:
        series.truncations.inc()
    if record.disconnected:
        series.disconnects.inc()
    if record.routed:
        metrics.inflight_of(record.route).dec()
    return ttft


def log_other(access_log: AccessLog, record: RequestRecord, finished: float) -> None:
    """The line of a request that is not a chat completion: no route, provider or tokens."""
    if access_log.enabled:
        fields = log_fields(record, finished - record.started, None)
        fields["route"] = fields["provider"] = None
        access_log.write(fields)


def log_fields(record: RequestRecord, duration: float, ttft: float | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": record.request_id,
        "method": record.method,
        "path": record.path,
        "key": record.key,
        "route": record.route,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "stream": record.stream,
        "duration_ms": round(duration * 1000, 2),
        "ttft_ms": round(ttft * 1000, 2) if ttft is not None else None,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "cost_usd": record.cost_usd,
        "truncated": record.truncated,
        "error": record.error,
        "outcome": record.outcome,
        "client": record.client,
    }
    if record.calls is not None:  # a council's: its upstream calls, one object each
        fields["calls"] = [call_fields(call) for call in record.calls]
    return fields


def call_fields(call: CallRecord) -> dict[str, Any]:
    """One upstream call of a council, as its request's log line lists it."""
    record = call.record
    return {
        "member": call.member,
        "role": call.role,
        "round": call.round,
        "provider": record.provider,
        "upstream_model": record.upstream_model,
        "status": record.status,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "error": record.error,
        "outcome": record.outcome,
    }
