"""Tables every service keeps beside its own: the outbox and the inbox.

Each service's Alembic history creates them with ``create_messaging_tables``;
the module-level tables below are used for DML on any service's database.
"""
import sqlalchemy as sa

from portal_shared.sqltypes import UtcDateTime

OUTBOX = "outbox_messages"
INBOX = "inbox_messages"


def _outbox_columns():
    return [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("aggregate_key", sa.String(64), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("published_at", UtcDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text(), nullable=True),
    ]


def _inbox_columns():
    return [
        sa.Column("consumer", sa.String(128), primary_key=True),
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("received_at", UtcDateTime(), nullable=False),
    ]


def define_messaging_tables(metadata):
    """Add the outbox and inbox tables to a service's metadata."""
    outbox = sa.Table(OUTBOX, metadata, *_outbox_columns())
    sa.Index(
        "ix_outbox_unpublished",
        outbox.c.id,
        postgresql_where=outbox.c.published_at.is_(None),
        sqlite_where=outbox.c.published_at.is_(None),
    )
    inbox = sa.Table(INBOX, metadata, *_inbox_columns())
    return outbox, inbox


def create_messaging_tables(op):
    """Alembic helper: create both tables and the partial index."""
    op.create_table(OUTBOX, *_outbox_columns())
    op.create_index(
        "ix_outbox_unpublished",
        OUTBOX,
        ["id"],
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.create_table(INBOX, *_inbox_columns())


outbox_table, inbox_table = define_messaging_tables(sa.MetaData())
