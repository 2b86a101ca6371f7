"""Stored reconciliation runs and their findings.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

from portal_shared.sqltypes import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    # Columns are spelt out (not imported from payment.reconciliation.tables) so this
    # revision keeps its meaning when the module changes later.
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("matched", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("counts", sa.JSON(), nullable=True),
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", BIG_ID, sa.ForeignKey("reconciliation_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("line", sa.BigInteger(), nullable=True),
        sa.Column("txn_ref", sa.String(64), nullable=True),
        sa.Column("dossier_code", sa.String(32), nullable=True),
        sa.Column("gateway_txn_no", sa.String(64), nullable=True),
        sa.Column("local_status", sa.String(20), nullable=True),
        sa.Column("gateway_status", sa.String(20), nullable=True),
        sa.Column("local_amount", sa.BigInteger(), nullable=True),
        sa.Column("gateway_amount", sa.BigInteger(), nullable=True),
        sa.Column("paid_at", UtcDateTime(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_reconciliation_items_run", "reconciliation_items", ["run_id", "outcome", "line"])
    # missing_at_gateway looks up a gateway's succeeded payments by paid_at
    op.create_index("ix_payments_gateway_paid_at", "payments", ["gateway", "paid_at"])


def downgrade():
    op.drop_index("ix_payments_gateway_paid_at", table_name="payments")
    op.drop_table("reconciliation_items")
    op.drop_table("reconciliation_runs")
