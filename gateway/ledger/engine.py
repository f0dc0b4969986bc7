"""The ledger's connection to its database: SQLAlchemy's async engine over aiosqlite or asyncpg,
set up for several writers at once, and its schema brought up to date by Alembic.

SQLite: WAL mode (readers never wait for the writer), a busy timeout, and every writing
transaction begins with BEGIN IMMEDIATE: it takes the write lock at its start, waiting for it
up to the timeout, instead of failing with "database is locked" when it tries to upgrade a
read lock that another process holds (how several workers share one file without errors).
PostgreSQL: a pool of asyncpg connections, each checked before use (a restarted server's
dead connections are replaced, not failed on), every session in UTC.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ..config import LedgerConfig
from .schema import metadata

log = logging.getLogger("gateway.ledger")

VERSIONS = Path(__file__).resolve().parent / "versions"
BUSY_TIMEOUT_MS = 10_000  # SQLite: how long a transaction waits for the write lock before it fails
CONNECT_TIMEOUT = 5.0  # seconds to open a PostgreSQL connection
COMMAND_TIMEOUT = 10.0  # seconds one PostgreSQL statement may take
MIGRATION_LOCK = 7_450_116  # PostgreSQL advisory lock held while migrating (any number, the same everywhere)
READ_ONLY = {"ledger_read_only": True}  # execution options of a connection that only reads (no write lock)
HEAD = "0001"  # the newest version in versions/ (a test checks it is Alembic's head)


def database_url(config: LedgerConfig) -> URL:
    """SQLAlchemy's URL for the ledger: sqlite+aiosqlite or postgresql+asyncpg."""
    if config.is_sqlite:
        return URL.create("sqlite+aiosqlite", database=config.sqlite_path)
    url = make_url(config.url)
    return url.set(drivername="postgresql+asyncpg")


def create_engine(config: LedgerConfig) -> AsyncEngine:
    """An engine for `config.url`; nothing is connected until it is used."""
    url = database_url(config)
    if config.is_sqlite:
        engine = create_async_engine(url, pool_size=4, max_overflow=4)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        pool_size=4,
        max_overflow=4,
        pool_pre_ping=True,
        connect_args={
            "timeout": CONNECT_TIMEOUT,
            "command_timeout": COMMAND_TIMEOUT,
            "server_settings": {"timezone": "UTC", "application_name": "llm-gateway ledger"},
        },
    )


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # transactions are begun by _sqlite_begin, not by the driver
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: a committed batch survives a crash of the process
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    read_only = connection.get_execution_options().get("ledger_read_only", False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def is_postgres(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "postgresql"


async def migrate(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """Bring the schema to the newest version (versions/); returns the versions before and after.

    A SQLite file's folder is created when missing. One transaction, safe while other processes
    migrate the same database: PostgreSQL holds an advisory lock, SQLite's BEGIN IMMEDIATE the
    write lock, to its end.
    """
    if not is_postgres(engine) and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    if await current_version(engine) == HEAD:  # as at nearly every start: Alembic (9 MB) is not even loaded
        return HEAD, HEAD
    async with engine.begin() as connection:
        if is_postgres(engine):  # held to the end of the transaction; PostgreSQL's DDL is transactional
            await connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": MIGRATION_LOCK})
        return await connection.run_sync(_upgrade)


async def current_version(engine: AsyncEngine) -> str | None:
    """The schema version the database is at, from Alembic's own table; None before the first
    migration (or when it cannot be read: the migration will say why)."""
    try:
        async with engine.connect() as connection:
            connection = await connection.execution_options(**READ_ONLY)
            version = await connection.scalar(text("SELECT version_num FROM alembic_version"))
    except DBAPIError:
        return None
    return None if version is None else str(version)


def head_version() -> str | None:
    """The newest version in versions/, by Alembic."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(VERSIONS.parent), version_locations=[str(VERSIONS)]).get_current_head()


def _upgrade(connection: Connection) -> tuple[str | None, str | None]:
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(VERSIONS.parent), version_locations=[str(VERSIONS)])
    before = MigrationContext.configure(connection).get_current_revision()

    def steps(revision: Any, _context: MigrationContext) -> Any:
        return script._upgrade_revs("head", revision)

    with EnvironmentContext(Config(), script, fn=steps, destination_rev="head") as environment:
        environment.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
        environment.run_migrations()
    after = MigrationContext.configure(connection).get_current_revision()
    if after != before:
        log.info("ledger schema migrated from %s to %s", before or "nothing", after)
    return before, after
