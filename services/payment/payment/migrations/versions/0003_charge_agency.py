"""The agency a charge belongs to, from dossier_status_changed, for the officer permission check.

Revision ID: 0003_charge_agency
Revises: 0002
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op

revision = "0003_charge_agency"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("charges", sa.Column("agency_code", sa.String(64), nullable=True))


def downgrade():
    op.drop_column("charges", "agency_code")
