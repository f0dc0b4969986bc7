"""Every metric the gateway exports, by name, in one place.

Labels come only from the routing table (route, provider) and from the gateway's
own vocabulary (code, stream, outcome, type, kind, reason), never from raw client input, so
no request can create a new series. With several worker processes,
prometheus-client's multiprocess mode sums them: `PROMETHEUS_MULTIPROC_DIR` must
then be set before prometheus_client is first imported (see `workers.py`).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from .. import __version__

UNKNOWN_ROUTE = "unknown"
NO_PROVIDER = "none"
NO_KEY = "none"  # the `key` label when the gateway asks for no keys
UNKNOWN_KEY = "unknown"  # the `key` label of a request refused for a missing or unknown key

# Time to first token: 50 ms to 30 s. Whole requests: up to ten minutes of streaming.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0)
ROUND_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)  # debate rounds used
COUNCIL_OUTCOMES = ("ok", "too_few_answers", "judge_failed", "timeout", "broken", "client_gone", "error")
LEDGER_WRITE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LEDGER_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
        r = self.registry
        self.requests = Counter(
            "gateway_requests_total",
            "Finished chat completion requests, by HTTP status and outcome "
            "(ok, rejected, error, broken: a stream that failed after its start, client_gone).",
            ["route", "provider", "code", "stream", "outcome", "key"],
            registry=r,
        )
        self.duration = Histogram(
            "gateway_request_duration_seconds",
            "Request in to last byte out.",
            ["route", "provider", "stream"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Request in to the first content chunk out (streams).",
            ["route", "provider"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Time the gateway itself adds: request in to upstream request out, plus upstream end to client end.",
            ["route", "provider"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens_total",
            "Tokens by type (prompt, completion), as delivered.",
            ["route", "provider", "type", "key"],
            registry=r,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests",
            "Chat completion requests being handled.",
            ["route"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors_total",
            "Failed upstream attempts, by reason (connect, status, protocol, timeout).",
            ["provider", "reason"],
            registry=r,
        )
        self.timeouts = Counter(
            "gateway_timeouts_total",
            "Limits that fired, by kind (connect, first_token, idle, total).",
            ["route", "kind"],
            registry=r,
        )
        self.truncations = Counter(
            "gateway_truncations_total",
            "Responses cut to max_tokens by the gateway.",
            ["route"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "gateway_client_disconnects_total",
            "Clients that went away before their response ended.",
            ["route"],
            registry=r,
        )
        self.target_cooling = Gauge(
            "gateway_target_cooling",
            "1 while a route's target is cooled down (out of rotation), else 0.",
            ["route", "provider", "model"],
            registry=r,
            multiprocess_mode="max",
        )
        self.rate_limited = Counter(
            "gateway_rate_limited_total",
            "Requests refused with 429 by a rate limit of the gateway, by the limit that refused them "
            "(scope: key or route; limit: rpm, tpm or max_parallel).",
            ["route", "key", "scope", "limit"],
            registry=r,
        )
        self.store_errors = Counter(
            "gateway_rate_limit_store_errors_total",
            "Times the rate limits' store did not answer, by step (admit, settle) and reason "
            "(timeout, unreachable, error, full).",
            ["step", "reason"],
            registry=r,
        )
        self.council_requests = Counter(
            "gateway_council_requests_total",
            "Finished requests to quorum routes, by strategy and outcome (ok, too_few_answers, judge_failed, "
            "timeout, broken: failed after its answer began, client_gone, error).",
            ["route", "strategy", "outcome"],
            registry=r,
        )
        self.council_rounds = Histogram(
            "gateway_council_rounds",
            "Rounds a council used before its answer (debate: fewer than `rounds` when the members agreed).",
            ["route", "strategy"],
            buckets=ROUND_BUCKETS,
            registry=r,
        )
        self.council_agreement = Counter(
            "gateway_council_agreement_total",
            "Councils whose members' last answers were all the same (agreed=true) or not; vote, synthesize and debate.",
            ["route", "strategy", "agreed"],
            registry=r,
        )
        self.spend = Counter(
            "gateway_spend_usd_total",
            "What requests cost in USD, from the usage their clients were told (no known price: nothing added).",
            ["route", "key"],
            registry=r,
        )
        self.unpriced = Counter(
            "gateway_unpriced_requests_total",
            "Requests that used tokens of a model with no known price: their cost is null. Give the route a price:.",
            ["route", "provider"],
            registry=r,
        )
        self.ledger_write = Histogram(
            "gateway_ledger_write_seconds",
            "Time to write one batch of ledger rows (one transaction), failed ones included.",
            buckets=LEDGER_WRITE_BUCKETS,
            registry=r,
        )
        self.ledger_batch = Histogram(
            "gateway_ledger_batch_rows",
            "Rows written by each batch.",
            buckets=LEDGER_BATCH_BUCKETS,
            registry=r,
        )
        self.ledger_buffered = Gauge(
            "gateway_ledger_buffered_rows",
            "Rows waiting in memory to be written to the ledger.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.ledger_dropped = Counter(
            "gateway_ledger_dropped_rows_total",
            "Ledger rows lost: the buffer was full while the database was down, or it was still down at exit.",
            registry=r,
        )
        self.ledger_errors = Counter(
            "gateway_ledger_errors_total",
            "Ledger operations that failed, by operation (write, hold, keys, cleanup).",
            ["operation"],
            registry=r,
        )
        self.ledger_up = Gauge(
            "gateway_ledger_up",
            "1 while the ledger's database takes writes, 0 while the last attempt failed.",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.build_info = Gauge(
            "gateway_build_info",
            "The gateway's version; always 1.",
            ["version"],
            registry=r,
            multiprocess_mode="max",
        )
        self.build_info.labels(__version__).set(1)

        self._series: dict[tuple[str, str, str, str], RequestSeries] = {}
        self._inflight: dict[str, Any] = {}

    def inflight_of(self, route: str) -> Any:
        child = self._inflight.get(route)
        if child is None:
            child = self._inflight[route] = self.inflight.labels(route)
        return child

    def series(self, route: str, provider: str, stream: str, key: str) -> RequestSeries:
        """The children a finished request updates, bound once per (route, provider, stream, key).

        Routes, providers and key ids come from the config, so this stays as small as the
        routing table times the keys (a refused key is UNKNOWN_KEY, no key at all NO_KEY).
        """
        found = self._series.get((route, provider, stream, key))
        if found is None:
            found = self._series[route, provider, stream, key] = RequestSeries(self, route, provider, stream, key)
        return found

    def render(self) -> tuple[bytes, str]:
        """The text exposition format; in multiprocess mode, summed over every worker."""
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestSeries:
    __slots__ = (
        "_codes",
        "_key",
        "_requests",
        "_stream",
        "completion_tokens",
        "disconnects",
        "duration",
        "overhead",
        "prompt_tokens",
        "spend",
        "truncations",
        "ttft",
        "unpriced",
    )

    def __init__(self, metrics: Metrics, route: str, provider: str, stream: str, key: str) -> None:
        self._requests = functools.partial(metrics.requests.labels, route, provider)
        self._key = key
        self._codes: dict[tuple[int, str], Any] = {}
        self.duration = metrics.duration.labels(route, provider, stream)
        self.ttft = metrics.ttft.labels(route, provider)
        self.overhead = metrics.overhead.labels(route, provider)
        self.prompt_tokens = metrics.tokens.labels(route, provider, "prompt", key)
        self.completion_tokens = metrics.tokens.labels(route, provider, "completion", key)
        self.truncations = metrics.truncations.labels(route)
        self.spend = metrics.spend.labels(route, key)
        self.unpriced = metrics.unpriced.labels(route, provider)
        self.disconnects = metrics.client_disconnects.labels(route)
        self._stream = stream

    def requests(self, code: int, outcome: str) -> Any:
        child = self._codes.get((code, outcome))
        if child is None:
            child = self._codes[code, outcome] = self._requests(str(code), self._stream, outcome, self._key)
        return child
