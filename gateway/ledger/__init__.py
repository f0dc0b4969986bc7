"""The usage ledger: every finished request is one row in a real database (SQLite by default,
PostgreSQL when named), with the spend budgets sum, the keys given out at run time, and the
conversations when they are kept.

service.py  one process's ledger: engine, writer, key cache, their tasks (`Ledger`)
writer.py   rows wait in memory and are written in batches, off every request's path
rows.py     a row made from a request's record; the one transaction that writes a batch
budgets.py  what a budget's scope has used; holds for requests in flight
keys.py     client keys in the database, and the cache the server answers from
reports.py  usage by key, route, model or day; one request's rows; retention
engine.py   SQLAlchemy's async engine (aiosqlite, asyncpg) and the migrations (Alembic, versions/)
schema.py   the tables
"""
