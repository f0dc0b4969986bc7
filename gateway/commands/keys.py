"""`gateway keys create|list|revoke`: the ledger's client keys from the command line."""

from __future__ import annotations

import datetime as dt
import sys

from sqlalchemy.ext.asyncio import AsyncEngine

from ..config import Budget, ClientKey, GatewayConfig, key_digest
from ..config.auth import KEY_ID
from ..ledger import keys as stored
from ..ledger.keys import KeyExists, KeyRecord
from .table import table


async def create(
    engine: AsyncEngine,
    config: GatewayConfig,
    key_id: str,
    models: list[str] | None,
    limits: dict[str, int | None],
    budget: Budget | None,
) -> int:
    """Add the key; its secret alone goes to stdout (`KEY=$(gateway keys create ...)`), the rest to stderr."""
    if not KEY_ID.fullmatch(key_id):
        print("gateway keys: --id must be 1 to 64 letters, digits and . _ : @ -", file=sys.stderr)
        return 2
    if any(key.id == key_id for key in config.auth.keys):
        raise KeyExists(f"The key {key_id!r} is defined in gateway.yaml.")
    secret = stored.new_secret()
    record = KeyRecord(
        id=key_id,
        digest=key_digest(secret),
        models=tuple(models) if models else None,
        rpm=limits.get("rpm"),
        tpm=limits.get("tpm"),
        max_parallel=limits.get("max_parallel"),
        budget=budget,
    )
    await stored.create_key(engine, record, dt.datetime.now(dt.UTC))
    print(f"key {key_id!r} created; its secret, shown this once:", file=sys.stderr)
    print(secret)
    return 0


async def show_all(engine: AsyncEngine, config: GatewayConfig) -> int:
    """Every active key: gateway.yaml's, then the ledger's."""
    found: list[KeyRecord | ClientKey] = [*config.auth.keys, *await stored.list_keys(engine)]
    rows = [
        [
            key.id,
            "database" if isinstance(key, KeyRecord) else "config",
            ", ".join(key.models) if key.models is not None else "*",
            *(str(value) if value is not None else "-" for value in (key.rpm, key.tpm, key.max_parallel)),
            f"{key.budget.usd:g}/{key.budget.period}" if key.budget else "-",
            key.created_at.strftime("%Y-%m-%d %H:%M") if isinstance(key, KeyRecord) and key.created_at else "-",
        ]
        for key in found
    ]
    print(table(["id", "source", "models", "rpm", "tpm", "max_parallel", "budget USD", "created UTC"], rows))
    return 0


async def revoke(engine: AsyncEngine, config: GatewayConfig, key_id: str) -> int:
    if any(key.id == key_id for key in config.auth.keys):
        print(f"gateway keys: {key_id!r} is defined in gateway.yaml: remove it there", file=sys.stderr)
        return 1
    if not await stored.revoke_key(engine, key_id, dt.datetime.now(dt.UTC)):
        print(f"gateway keys: no active key {key_id!r}", file=sys.stderr)
        return 1
    print(f"key {key_id!r} revoked: every gateway on this ledger refuses it within seconds")
    return 0
