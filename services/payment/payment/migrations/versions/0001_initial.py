"""Payments, their append-only history, charges, and the outbox/inbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from portal_shared.schema import create_messaging_tables
from portal_shared.sqltypes import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "payments",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("txn_ref", sa.String(32), nullable=False, unique=True),
        sa.Column("dossier_code", sa.String(32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("gateway", sa.String(16), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("pay_url", sa.Text(), nullable=True),
        sa.Column("gateway_txn_no", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("client_ip", sa.String(45), nullable=True),
        sa.Column("refund_reason", sa.String(255), nullable=True),
        sa.Column("refund_error", sa.Text(), nullable=True),
        sa.Column("refund_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("refunded_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_payments_dossier_code", "payments", ["dossier_code"])
    op.create_index("ix_payments_status", "payments", ["status"])
    op.create_table(
        "payment_history",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("payment_id", BIG_ID, sa.ForeignKey("payments.id"), nullable=False),
        sa.Column("txn_ref", sa.String(32), nullable=False),
        sa.Column("old_status", sa.String(20), nullable=True),
        sa.Column("new_status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=True),
    )
    op.create_index("ix_payment_history_payment_id", "payment_history", ["payment_id"])
    op.create_index("ix_payment_history_txn_ref", "payment_history", ["txn_ref"])
    op.create_table(
        "charges",
        sa.Column("dossier_code", sa.String(32), primary_key=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("procedure_name", sa.String(255), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("paid_txn_ref", sa.String(32), nullable=True),
        sa.Column("source_event_id", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    create_messaging_tables(op)


def downgrade():
    op.drop_table("inbox_messages")
    op.drop_table("outbox_messages")
    op.drop_table("charges")
    op.drop_table("payment_history")
    op.drop_table("payments")
