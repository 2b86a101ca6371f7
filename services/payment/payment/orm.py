"""Tables of the payment service (SQLAlchemy Core).

``payments`` and ``payment_history`` have a fixed shape that reconciliation
codes against: columns may be added, never renamed or removed.
"""
import sqlalchemy as sa

from portal_shared.schema import define_messaging_tables
from portal_shared.sqltypes import UtcDateTime

metadata = sa.MetaData()
define_messaging_tables(metadata)

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

payments = sa.Table(
    "payments",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("txn_ref", sa.String(32), nullable=False, unique=True),
    sa.Column("dossier_code", sa.String(32), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("gateway", sa.String(16), nullable=False),
    sa.Column("status", sa.String(20), nullable=False, index=True),
    sa.Column("pay_url", sa.Text(), nullable=True),
    sa.Column("gateway_txn_no", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
    sa.Column("paid_at", UtcDateTime(), nullable=True),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    # additions of this service
    sa.Column("client_ip", sa.String(45), nullable=True),
    sa.Column("refund_reason", sa.String(255), nullable=True),
    sa.Column("refund_error", sa.Text(), nullable=True),
    sa.Column("refund_attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("refunded_at", UtcDateTime(), nullable=True),
)

payment_history = sa.Table(
    "payment_history",
    metadata,
    sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
    sa.Column("payment_id", BIG_ID, sa.ForeignKey("payments.id"), nullable=False, index=True),
    sa.Column("txn_ref", sa.String(32), nullable=False, index=True),
    sa.Column("old_status", sa.String(20), nullable=True),
    sa.Column("new_status", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("evidence", sa.JSON(), nullable=True),
)

# The amount due per dossier, as the dossier service announced it.
charges = sa.Table(
    "charges",
    metadata,
    sa.Column("dossier_code", sa.String(32), primary_key=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("procedure_name", sa.String(255), nullable=True),
    sa.Column("agency_code", sa.String(64), nullable=True),  # for the officer permission check
    sa.Column("status", sa.String(20), nullable=False),  # due | paid | cancelled
    sa.Column("paid_txn_ref", sa.String(32), nullable=True),
    sa.Column("source_event_id", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)
