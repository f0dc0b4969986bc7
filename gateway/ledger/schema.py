"""The ledger's tables, as SQLAlchemy Core sees them (the migrations in versions/ create them).

    requests       one row per finished request (and, with quorum routes, one per upstream call)
    conversations  the messages and answer of a request, when ledger.store_messages is on
    spend          USD per budget scope (key:<id>, route:<name>) per UTC day: what budgets sum
    holds          USD held by requests in flight against their budgets, until their row is written
    api_keys       the client keys given out at run time (/admin/keys, `gateway keys`): digests only

Times are UTC. `day` columns count days since 1970-01-01 UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

RowId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite's autoincrement needs INTEGER PRIMARY KEY
Money = Float(53)  # USD, double precision

requests = Table(
    "requests",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("uid", String(32), nullable=False, unique=True),  # the gateway's own id: a retried batch adds nothing twice
    Column("time", DateTime(timezone=True), nullable=False),  # when the request arrived
    Column("day", Integer, nullable=False),
    Column("request_id", String(256), nullable=False),  # x-request-id: the client's, or the gateway's
    Column("member", String(64)),  # null: the request as its client saw it; else one upstream call of it (quorum)
    Column("path", Text, nullable=False),
    Column("key_id", String(64), nullable=False),  # "none" when no key is asked for, "unknown" when refused
    Column("route", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("upstream_model", Text),
    Column("stream", Boolean, nullable=False),
    Column("status", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),  # ok, rejected, error, broken, client_gone
    Column("error", Text),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("cached_tokens", Integer),
    Column("cost_usd", Money),  # null: not known (no price for the model, or no usage)
    Column("duration_ms", Money, nullable=False),
    Column("ttft_ms", Money),
    Column("attempts", Integer, nullable=False),
    Column("truncated", Boolean, nullable=False),
    Index("requests_time", "time"),
    Index("requests_key_time", "key_id", "time"),
    Index("requests_request_id", "request_id"),
)

conversations = Table(
    "conversations",
    metadata,
    Column("uid", String(32), primary_key=True),  # requests.uid
    Column("time", DateTime(timezone=True), nullable=False),
    Column("messages", Text, nullable=False),  # JSON: the request's messages, as sent
    Column("answer", Text, nullable=False),  # JSON: each choice as its client got it
    Index("conversations_time", "time"),
)

spend = Table(
    "spend",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("day", Integer, primary_key=True),
    Column("usd", Money, nullable=False),
)

holds = Table(
    "holds",
    metadata,
    Column("id", String(32), primary_key=True),  # requests.uid of the request in flight
    Column("scope", Text, primary_key=True),
    Column("usd", Money, nullable=False),
    Column("expires", Money, nullable=False),  # Unix time: a hold its process never released counts no longer
    Index("holds_scope", "scope"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),  # hex SHA-256 of the secret
    Column("models", Text),  # JSON list of names and globs; null: every route
    Column("rpm", Integer),
    Column("tpm", Integer),
    Column("max_parallel", Integer),
    Column("budget_usd", Money),
    Column("budget_period", String(16)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revision", Integer, nullable=False),  # raised by every change: the key caches look for changes by it
)
