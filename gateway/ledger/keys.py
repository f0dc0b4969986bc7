"""Client keys given out at run time (POST /admin/keys, `gateway keys create`), kept in the
ledger's database as SHA-256 digests, and the cache every worker answers from.

The server never asks the database on a request's path: each worker's `KeyCache` looks every
`ledger.key_refresh` seconds (1 s by default) at a fingerprint of the table (its row count and
the sum of the rows' revisions, which every change raises) and reloads the keys only when it
moved. So a key created, changed or revoked on any replica or from the command line is seen
by every worker within about that interval. A revoked key stays in the table (its id remains
in the ledger's rows); creating its id again gives it a new secret.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Budget, ClientKey
from ..errors import GatewayError
from .engine import READ_ONLY
from .schema import api_keys

log = logging.getLogger("gateway.ledger")

MOST_STORED_LIMIT = 2**31 - 1  # rpm, tpm and max_parallel are 32-bit columns (schema.api_keys)
SECRET_PREFIX = "sk-gw-"
SECRET_BYTES = 32  # of randomness in a new secret (43 characters of base64url)


class KeyExists(GatewayError):
    """A key of that id is active already (409)."""

    status = 409
    type = "invalid_request_error"
    code = "key_exists"


def new_secret() -> str:
    """A new client key's secret: `sk-gw-` and 43 characters of base64url."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key of the database, as the admin endpoints show it (never its secret)."""

    id: str
    digest: bytes = field(repr=False)
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget: Budget | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None

    def client_key(self) -> ClientKey:
        return ClientKey(
            id=self.id,
            digest=self.digest,
            models=self.models,
            rpm=self.rpm,
            tpm=self.tpm,
            max_parallel=self.max_parallel,
            budget=self.budget,
        )

    def columns(self) -> dict[str, Any]:
        """The settable columns of schema.api_keys."""
        return {
            "models": orjson.dumps(list(self.models)).decode() if self.models is not None else None,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "max_parallel": self.max_parallel,
            "budget_usd": self.budget.usd if self.budget else None,
            "budget_period": self.budget.period if self.budget else None,
        }

    @classmethod
    def from_row(cls, row: RowMapping) -> KeyRecord:
        budget = None
        if row["budget_usd"] is not None:
            budget = Budget(usd=float(row["budget_usd"]), period=row["budget_period"] or "30d")
        return cls(
            id=row["id"],
            digest=bytes.fromhex(row["digest"]),
            models=tuple(orjson.loads(row["models"])) if row["models"] is not None else None,
            rpm=row["rpm"],
            tpm=row["tpm"],
            max_parallel=row["max_parallel"],
            budget=budget,
            created_at=utc(row["created_at"]),
            updated_at=utc(row["updated_at"]),
            revoked_at=utc(row["revoked_at"]),
        )


def utc(value: dt.datetime | None) -> dt.datetime | None:
    """A time read back from the database, in UTC (SQLite gives it back without its zone)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


async def create_key(engine: AsyncEngine, record: KeyRecord, at: dt.datetime) -> KeyRecord:
    """Add `record`; a revoked key of the same id is replaced. Raises KeyExists when one is active."""
    async with engine.begin() as connection:
        found = (await connection.execute(select(api_keys).where(api_keys.c.id == record.id))).mappings().first()
        values = {**record.columns(), "digest": record.digest.hex(), "updated_at": at, "revoked_at": None}
        if found is None:
            await connection.execute(insert(api_keys).values(id=record.id, created_at=at, revision=1, **values))
        elif found["revoked_at"] is None:
            raise KeyExists(f"A key with the id {record.id!r} exists; revoke it first, or change it.", param="id")
        else:
            await connection.execute(
                update(api_keys)
                .where(api_keys.c.id == record.id)
                .values(created_at=at, revision=api_keys.c.revision + 1, **values)
            )
        row = (await connection.execute(select(api_keys).where(api_keys.c.id == record.id))).mappings().one()
    return KeyRecord.from_row(row)


async def update_key(engine: AsyncEngine, key_id: str, changes: Mapping[str, Any], at: dt.datetime) -> KeyRecord | None:
    """Set `changes` (columns of KeyRecord.columns()) on the active key `key_id`; None when there is none."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(updated_at=at, revision=api_keys.c.revision + 1, **changes)
        )
        if not result.rowcount:
            return None
        row = (await connection.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().one()
    return KeyRecord.from_row(row)


async def revoke_key(engine: AsyncEngine, key_id: str, at: dt.datetime) -> bool:
    """Revoke the active key `key_id`; False when there is none."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=at, updated_at=at, revision=api_keys.c.revision + 1)
        )
    return bool(result.rowcount)


async def get_key(engine: AsyncEngine, key_id: str) -> KeyRecord | None:
    """The key `key_id`, revoked or not; None when the database never had it."""
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        row = (await connection.execute(select(api_keys).where(api_keys.c.id == key_id))).mappings().first()
    return None if row is None else KeyRecord.from_row(row)


async def list_keys(engine: AsyncEngine, *, revoked: bool = False) -> list[KeyRecord]:
    """The active keys by id (and the revoked ones too when `revoked`)."""
    query = select(api_keys).order_by(api_keys.c.id)
    if not revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        rows = (await connection.execute(query)).mappings().all()
    return [KeyRecord.from_row(row) for row in rows]


async def fingerprint(engine: AsyncEngine) -> tuple[int, int]:
    """(rows, sum of revisions) of the keys table: it changes whenever any key does."""
    async with engine.connect() as connection:
        connection = await connection.execution_options(**READ_ONLY)
        row = (await connection.execute(select(func.count(), func.coalesce(func.sum(api_keys.c.revision), 0)))).one()
    return int(row[0]), int(row[1])


class KeyCache:
    """The database's active keys by the SHA-256 digest of their secret, as server.auth looks them up."""

    def __init__(self) -> None:
        self.by_digest: Mapping[bytes, ClientKey] = {}
        self._fingerprint: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(self.by_digest)

    async def refresh(self, engine: AsyncEngine) -> bool:
        """Reload the keys when the table changed; returns whether it did."""
        current = await fingerprint(engine)
        if current == self._fingerprint:
            return False
        keys = await list_keys(engine)
        self.by_digest = {record.digest: record.client_key() for record in keys}
        self._fingerprint = current
        return True

    def put(self, record: KeyRecord) -> None:
        """Apply a change this process made at once, ahead of the next refresh."""
        kept = {digest: key for digest, key in self.by_digest.items() if key.id != record.id}
        if record.revoked_at is None:
            kept[record.digest] = record.client_key()
        self.by_digest = kept
