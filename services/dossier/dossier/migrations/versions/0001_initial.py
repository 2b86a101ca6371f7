"""Dossiers, their history, and the outbox/inbox tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
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
        "dossiers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(32), nullable=False, unique=True),
        sa.Column("procedure_code", sa.String(64), nullable=False),
        sa.Column("procedure_name", sa.String(255), nullable=False),
        sa.Column("agency_code", sa.String(64), nullable=False),
        sa.Column("fee_amount", sa.BigInteger(), nullable=False),
        sa.Column("processing_days", sa.Integer(), nullable=False),
        sa.Column("fee_paid", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("applicant_full_name", sa.String(255), nullable=False),
        sa.Column("applicant_id_number", sa.String(12), nullable=False),
        sa.Column("applicant_phone", sa.String(10), nullable=True),
        sa.Column("applicant_email", sa.String(254), nullable=True),
        sa.Column("applicant_address", sa.String(500), nullable=True),
        sa.Column("form_data", sa.JSON(), nullable=False),
        sa.Column("submitted_at", UtcDateTime(), nullable=False),
        sa.Column("due_at", UtcDateTime(), nullable=True),
        sa.Column("paused_since", UtcDateTime(), nullable=True),
        sa.Column("processed_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_dossiers_agency_code", "dossiers", ["agency_code"])
    op.create_index("ix_dossiers_status", "dossiers", ["status"])
    op.create_index("ix_dossiers_applicant_id_number", "dossiers", ["applicant_id_number"])
    op.create_index("ix_dossiers_submitted_at", "dossiers", ["submitted_at"])
    op.create_table(
        "dossier_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("dossier_id", sa.Integer(), sa.ForeignKey("dossiers.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_dossier_history_dossier_id", "dossier_history", ["dossier_id"])
    create_messaging_tables(op)


def downgrade():
    op.drop_table("inbox_messages")
    op.drop_table("outbox_messages")
    op.drop_table("dossier_history")
    op.drop_table("dossiers")
