"""Tables of reconciliation: stored runs, their findings, and the per-run staging table.

``reconciliation_runs`` keeps one row per run with its counts;
``reconciliation_items`` one row per finding (everything but the matched rows),
so a report of any size can be rendered again later without keeping it in memory.
Migration ``0002`` creates both.
"""
import sqlalchemy as sa

from portal_shared.sqltypes import UtcDateTime

metadata = sa.MetaData()

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

OUTCOMES = ("fixed", "missing_locally", "missing_at_gateway", "amount_mismatch", "status_mismatch", "malformed",
            "unconfirmed")


def run_columns():
    return [
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("gateway", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),  # file name, or "rpc"
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.Column("rows", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("matched", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("counts", sa.JSON(), nullable=True),  # outcome -> number of findings
    ]


def item_columns():
    return [
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
    ]


reconciliation_runs = sa.Table("reconciliation_runs", metadata, *run_columns())
reconciliation_items = sa.Table("reconciliation_items", metadata, *item_columns())
sa.Index("ix_reconciliation_items_run", reconciliation_items.c.run_id, reconciliation_items.c.outcome, reconciliation_items.c.line)

# The file of one run, a row per non-blank line (``settlement.SettlementRow``): a TEMP table the
# loader creates and fills and the matcher reads, dropped at the end of the run. In a MetaData
# of its own: it is no part of the schema the migrations manage.
recon_staging = sa.Table(
    "recon_staging",
    sa.MetaData(),
    sa.Column("line", sa.BigInteger(), nullable=False),
    sa.Column("txn_ref", sa.Text(), nullable=True),
    sa.Column("gateway_txn_no", sa.Text(), nullable=True),
    sa.Column("amount", sa.BigInteger(), nullable=True),
    sa.Column("status", sa.Text(), nullable=True),
    sa.Column("paid_at", UtcDateTime(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=True),  # None for a valid row, else why the line is malformed
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
STAGING_COLUMNS = tuple(column.name for column in recon_staging.columns)
