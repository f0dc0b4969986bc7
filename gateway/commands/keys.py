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
    if key_id in config.auth.named:  # a key left out for an empty secret comes back with it: one id, one key
        raise KeyExists(f"The key {key_id!r} is named in gateway.yaml (auth.keys).")
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
    """Revoke the database's key `key_id`; one gateway.yaml names too (made before the check at
    creation) is revoked in the database all the same, and the file's is left to the file."""
    in_file = key_id in config.auth.named
    if not await stored.revoke_key(engine, key_id, dt.datetime.now(dt.UTC)):
        where = "is defined in gateway.yaml: remove it there" if in_file else "is not an active key"
        print(f"gateway keys: {key_id!r} {where}", file=sys.stderr)
        return 1
    if in_file:
        print(f"gateway keys: gateway.yaml names {key_id!r} too; its key there stays until removed", file=sys.stderr)
    print(f"key {key_id!r} revoked: every gateway on this ledger refuses it within seconds")
    return 0
