"""Delivery receipts that arrive before their message's send outcome is recorded.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

from portal_shared.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "early_receipts",
        sa.Column("notification_id", sa.String(36), primary_key=True),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("provider_reference", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
    )


def downgrade():
    op.drop_table("early_receipts")
