"""The first ledger: requests, conversations, spend, holds and api_keys.

Revision ID: 0001
Revises: none
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RowId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Money = sa.Float(53)


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("id", RowId, primary_key=True, autoincrement=True),
        sa.Column("uid", sa.String(32), nullable=False, unique=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("day", sa.Integer, nullable=False),
        sa.Column("request_id", sa.String(256), nullable=False),
        sa.Column("member", sa.String(64)),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("upstream_model", sa.Text),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("cached_tokens", sa.Integer),
        sa.Column("cost_usd", Money),
        sa.Column("duration_ms", Money, nullable=False),
        sa.Column("ttft_ms", Money),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("truncated", sa.Boolean, nullable=False),
    )
    op.create_index("requests_time", "requests", ["time"])
    op.create_index("requests_key_time", "requests", ["key_id", "time"])
    op.create_index("requests_request_id", "requests", ["request_id"])
    op.create_table(
        "conversations",
        sa.Column("uid", sa.String(32), primary_key=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("messages", sa.Text, nullable=False),
        sa.Column("answer", sa.Text, nullable=False),
    )
    op.create_index("conversations_time", "conversations", ["time"])
    op.create_table(
        "spend",
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("day", sa.Integer, primary_key=True),
        sa.Column("usd", Money, nullable=False),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("scope", sa.Text, primary_key=True),
        sa.Column("usd", Money, nullable=False),
        sa.Column("expires", Money, nullable=False),
    )
    op.create_index("holds_scope", "holds", ["scope"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("models", sa.Text),
        sa.Column("rpm", sa.Integer),
        sa.Column("tpm", sa.Integer),
        sa.Column("max_parallel", sa.Integer),
        sa.Column("budget_usd", Money),
        sa.Column("budget_period", sa.String(16)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("revision", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("api_keys", "holds", "spend", "conversations", "requests"):
        op.drop_table(table)
