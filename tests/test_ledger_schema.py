"""The ledger's migrations build the schema its code uses, on SQLite and PostgreSQL, and run once."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.config import LedgerConfig
from gateway.ledger.engine import HEAD, create_engine, head_version, migrate
from gateway.ledger.schema import metadata


async def test_the_migrations_build_the_tables_the_code_uses_and_run_once(ledger_url: str) -> None:
    assert head_version() == HEAD  # the version a started gateway looks for before it loads Alembic
    engine = create_engine(LedgerConfig(url=ledger_url))
    try:
        assert await migrate(engine) == (None, head_version())
        assert await migrate(engine) == (head_version(), head_version())  # a second start changes nothing

        def differences(connection: object) -> list[object]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})  # type: ignore[arg-type]
            return compare_metadata(context, metadata)

        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()
