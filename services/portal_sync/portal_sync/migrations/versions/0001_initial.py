"""Sync state per dossier, fees paid, backfill jobs, and the outbox/inbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

from portal_shared.db import UtcDateTime
from portal_shared.schema import create_messaging_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "sync_dossiers",
        sa.Column("dossier_code", sa.String(32), primary_key=True),
        sa.Column("snapshot", sa.JSON(), nullable=True),
        sa.Column("snapshot_stale", sa.Boolean(), nullable=False),
        sa.Column("known_at_portal", sa.Boolean(), nullable=False),
        sa.Column("steps_sent", sa.Integer(), nullable=False),
        sa.Column("sent_status", sa.String(32), nullable=True),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("pending_since", UtcDateTime(), nullable=True),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("parked_at", UtcDateTime(), nullable=True),
        sa.Column("parked_answer", sa.JSON(), nullable=True),
        sa.Column("synced_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_sync_dossiers_due", "sync_dossiers", ["pending", "parked_at", "next_attempt_at"])
    op.create_index("ix_sync_dossiers_pending_since", "sync_dossiers", ["pending_since"])
    op.create_table(
        "sync_fees",
        sa.Column("txn_ref", sa.String(64), primary_key=True),
        sa.Column("dossier_code", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("paid_at", sa.String(40), nullable=True),
        sa.Column("refunded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_sync_fees_dossier_code", "sync_fees", ["dossier_code"])
    op.create_table(
        "sync_jobs",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("cursor", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    create_messaging_tables(op)


def downgrade():
    for table in ("inbox_messages", "outbox_messages", "sync_jobs", "sync_fees", "sync_dossiers"):
        op.drop_table(table)
