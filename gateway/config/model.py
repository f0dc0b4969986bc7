"""The gateway's configuration as typed, frozen values; `config.load_config()` builds them."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field

PROVIDER_KINDS = ("openai", "anthropic", "azure", "mock")
DEFAULT_BASE_URLS = {"anthropic": "https://api.anthropic.com"}
OPENAI_API_HOST = "api.openai.com"  # a provider there serves the Responses API itself (responses_api defaults on)
RESPONSES_API_KINDS = ("openai", "azure")  # the kinds whose upstream may serve the Responses API
ANTHROPIC_VERSION = "2023-06-01"
MOST_INTEGER = 2**53  # JSON's exact integers: a count or limit beyond is a mistake, and no database column holds it
LIMIT_KEYS = (
    "max_tokens",
    "timeout",
    "first_token_timeout",
    "idle_timeout",
    "connect_timeout",
    "max_response_bytes",
    "max_event_bytes",
    "rpm",
    "tpm",
    "max_parallel",
)
ON_STORE_ERROR = ("allow", "deny")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
QUORUM_STRATEGIES = ("fastest", "vote", "synthesize", "debate")
QUORUM_PROMPTS = ("judge", "debate", "tie_break")  # the templates gateway.yaml may override
QUORUM_PROVIDER = "quorum"  # what a quorum route's own requests are counted and listed under, for want of a provider


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Limits:
    """What a request is held to, whatever the upstream does (`limits:`, and per route)."""

    max_tokens: int = 4096  # completion tokens per choice
    timeout: float = 60.0  # seconds for the whole request
    first_token_timeout: float = 30.0  # seconds until a stream's first chunk
    idle_timeout: float = 30.0  # seconds between two streamed chunks
    connect_timeout: float = 10.0  # seconds to get a connection: a free slot in the pool, then connect
    max_response_bytes: int = 16 * 1024 * 1024  # an upstream's whole answer, decompressed (not streamed)
    max_event_bytes: int = 1024 * 1024  # one server-sent event or line of an upstream's stream
    # rate limits of the route, over every client's requests to it (None: unlimited)
    rpm: int | None = None  # requests per minute (a sliding minute)
    tpm: int | None = None  # tokens per minute, prompt and completion (a sliding minute)
    max_parallel: int | None = None  # requests in flight at once


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    cors_origins: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    watch_config: bool = False
    workers: int = 1  # worker processes sharing the port; "auto" in the file: one per core
    shutdown_timeout: float = 30.0  # grace for requests in flight after SIGTERM
    drain_delay: float = 0.0  # seconds still accepting after SIGTERM, /ready answering 503
    sse_keepalive: float = 15.0  # seconds between the `: ping` comments of a stream
    send_timeout: float = 120.0  # seconds a client may leave 64 KiB of a response unread before it is cut off
    keepalive_timeout: float = 75.0  # seconds an idle client connection is kept between requests (as nginx)
    request_head_timeout: float = 10.0  # seconds a new connection has to send a complete request head
    request_body_timeout: float = 60.0  # seconds a request's body has to arrive, once its head has
    max_connections: int = 10000  # client connections open at once; beyond: 503 (and no more than files allow)


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """The process's one HTTP client to upstreams (`upstream:`); changes take effect at restart."""

    max_connections: int = 1024  # per upstream host and port, as Envoy's default circuit breaker
    keepalive_timeout: float = 15.0  # seconds an idle pooled connection is kept before it is closed
    dns_cache_ttl: float = 10.0  # seconds a resolved address is reused
    happy_eyeballs_delay: float = 0.25  # seconds before the next address is tried alongside (RFC 8305)
    trust_env: bool = True  # HTTP_PROXY, HTTPS_PROXY, NO_PROXY from the environment, read at start


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Where the rate limits' counts live (`store:`); changes take effect at restart.

    No `redis_url`: in the process, or with several workers in memory they share, so the
    limits hold for the whole gateway on this host. With one, in that Redis, shared by
    every worker of every replica that uses it.
    """

    redis_url: str = field(default="", repr=False)  # redis:// or rediss:// (TLS); may hold a password
    on_error: str = "allow"  # when Redis does not answer in time: allow (admit, uncounted) or deny (503)
    timeout: float = 0.005  # seconds Redis has to answer one admission before on_error applies


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str = ""
    api_key: str = field(default="", repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    max_tokens_field: str = "max_tokens"
    stream_usage: bool = True
    tokens_per_second: float = 0.0
    reply: str = ""  # mock: the canned answer; empty: the mock's own
    anthropic_version: str = ANTHROPIC_VERSION
    api_version: str = ""  # azure
    deployment: str = ""  # azure
    ca_bundle: str = ""  # a PEM file of the CAs to verify the upstream with, instead of the system's
    client_cert: str = ""  # a PEM certificate (chain) for mutual TLS, with client_key
    client_key: str = field(default="", repr=False)  # its private key's PEM file
    verify: bool = True  # false: TLS without verifying the upstream (warned about at load)
    # openai and azure: the upstream serves OpenAI's Responses API (`POST {base_url}/responses`), so
    # /v1/responses is forwarded to it rather than translated into chat completions; resolved at load
    # (default: on when base_url is OpenAI's own API, else off)
    responses_api: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream a route may send a request to."""

    provider: str
    model: str | None = None  # the model name sent upstream; None: as the client asked
    weight: float = 1.0
    deployment: str | None = None  # azure: overrides the provider's
    api_version: str | None = None  # azure: overrides the provider's


@dataclass(frozen=True, slots=True)
class Cooldown:
    failures: int = 3  # consecutive failures that take a target out of rotation
    seconds: float = 30.0  # how long it stays out before one probe request may try it


@dataclass(frozen=True, slots=True)
class Quorum:
    """A council of other routes (`quorum:` on a route, instead of `provider:` or `targets:`).

    Which keys each strategy takes is checked at load (config.quorum).
    """

    members: tuple[str, ...]  # exact names of other routes, none a quorum route; in this order (hedging, ties)
    strategy: str  # one of QUORUM_STRATEGIES
    judge: str | None = None  # the route that writes the final answer (synthesize, debate) or breaks a vote's tie
    rounds: int = 2  # debate: the most rounds; each member answers once a round
    hedge_after: float = 0.0  # fastest: seconds before the next member is asked; 0: all at once
    min_answers: int = 1  # fewer usable answers than this (in any round): the request fails with 502
    prompts: Mapping[str, str] = field(default_factory=dict)  # of QUORUM_PROMPTS: templates replacing the defaults


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit in USD over a period (`budget: {usd: 50, period: 30d}`, on a key or a route).

    `period` is `Nd` (windows of N whole days, counted from 1970-01-01 00:00 UTC, so `1d` is the
    UTC day) or `month` (the calendar month, UTC); the spend starts again from 0 in each window.
    """

    usd: float
    period: str = "30d"


@dataclass(frozen=True, slots=True)
class Price:
    """What a route's upstream charges, in USD per million tokens (`price: {input, cached_input, output}`)."""

    input: float
    output: float
    cached_input: float | None = None  # prompt tokens read from the upstream's cache; None: as `input`


@dataclass(frozen=True, slots=True)
class Route:
    model: str
    targets: tuple[Target, ...]  # empty for a quorum route
    limits: Limits
    fallbacks: tuple[str, ...] = ()
    retries: int = 0  # further attempts after the first, across targets
    cooldown: Cooldown = Cooldown()
    quorum: Quorum | None = None  # a council of other routes: then it has no targets of its own
    price: Price | None = None  # overrides the price library's for every target of the route
    budget: Budget | None = None  # the spend of every key on this route together

    @property
    def is_glob(self) -> bool:
        return any(char in self.model for char in "*?[")

    @property
    def provider(self) -> str:
        """The provider of the first target (the only one of a simple route); QUORUM_PROVIDER for a quorum route."""
        return self.targets[0].provider if self.targets else QUORUM_PROVIDER

    @property
    def upstream_model(self) -> str | None:
        return self.targets[0].model if self.targets else None


@dataclass(frozen=True, slots=True)
class ClientKey:
    """A client's API key (`auth.keys`): its name, the SHA-256 digest of its secret (the secret
    itself is not kept), the routes it may use and its own limits (None: unlimited)."""

    id: str  # the key's name in logs, metrics and errors; never the secret
    digest: bytes = field(repr=False)  # SHA-256 of the secret, 32 bytes
    models: tuple[str, ...] | None = None  # exact names and globs of routes; None: every route
    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens per minute, prompt and completion
    max_parallel: int | None = None  # requests in flight at once
    budget: Budget | None = None  # what the key may spend a period

    def allows(self, *names: str) -> bool:
        """Whether any of `names` (the model asked for, the route's name) is one of the key's models."""
        if self.models is None:
            return True
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.models for name in names)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Who may call the model endpoints (`auth:`). No keys and not `open`: only a gateway that
    listens on loopback starts (server.host), and then anyone who reaches it may call."""

    keys: tuple[ClientKey, ...] = ()
    admin_digest: bytes | None = field(default=None, repr=False)  # SHA-256 of auth.admin_key
    open: bool = False  # stated on purpose: no keys, on any address
    named: frozenset[str] = frozenset()  # every id auth.keys names, a key left out for its empty secret too

    @property
    def required(self) -> bool:
        """Whether the model endpoints need a key whatever the database holds: keys in this
        file, or an admin key (keys are then given out at run time, and none means no one)."""
        return bool(self.keys) or self.admin_digest is not None


@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """Where every finished request is written, one row each (`ledger:`); `url` takes effect at restart.

    `url` is `sqlite:///<absolute path>` (as written; `sqlite:<path>` is relative to the config
    file's folder) or `postgresql://user:password@host:port/database`. Rows wait in memory and are
    written every `flush_interval` seconds, or as soon as `batch_rows` are waiting, in one
    transaction; while the database is down they stay in memory, `buffer_rows` at most.
    """

    url: str = "sqlite:///ledger.db"  # normalized at load: sqlite:///<absolute path>, or the PostgreSQL URL
    batch_rows: int = 100  # rows per transaction at most (its work holds the event loop); a flush starts at this many
    flush_interval: float = 1.0  # seconds between flushes of whatever is waiting
    buffer_rows: int = 100_000  # rows kept while the database cannot be written; beyond: dropped, counted
    buffer_bytes: int = 64 * 1024 * 1024  # of stored conversations in those rows; beyond: dropped, counted
    store_messages: bool = False  # also keep each request's messages and the answer its client got
    retention_days: int = 30  # stored conversations are deleted after this many days (rows are kept)
    key_refresh: float = 1.0  # seconds between looks for keys created, changed or revoked in the database

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite:")

    @property
    def sqlite_path(self) -> str:
        """The database file of a `sqlite:///<absolute path>` URL."""
        return self.url.removeprefix("sqlite://")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig
    limits: Limits
    default_model: str | None
    providers: Mapping[str, ProviderConfig]
    routes: tuple[Route, ...]
    source: str
    upstream: UpstreamConfig = UpstreamConfig()
    auth: AuthConfig = AuthConfig()
    ledger: LedgerConfig = LedgerConfig()
    store: StoreConfig = StoreConfig()
    warnings: tuple[str, ...] = ()  # valid but risky settings, one line each, naming the key

    @property
    def upstream_models(self) -> set[str]:
        """Every model name (or glob) the routes may send upstream."""
        return {target.model or route.model for route in self.routes for target in route.targets}
