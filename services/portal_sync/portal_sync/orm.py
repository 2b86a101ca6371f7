"""Tables of the portal_sync service.

``sync_dossiers`` holds one row per dossier: the latest copy of the dossier we
have (``snapshot``, refreshed from the dossier service when ``snapshot_stale``),
what the portal already has (``known_at_portal``, ``steps_sent`` history
entries, ``sent_status``) and whether something is waiting to go
(``pending``), is backing off (``next_attempt_at``) or is parked for an
operator (``parked_at`` with the portal's answer). ``sync_fees`` keeps the
fees paid, ``sync_jobs`` the cursor of a resumable backfill.
"""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portal_shared.db import UtcDateTime
from portal_shared.schema import define_messaging_tables


class Base(DeclarativeBase):
    pass


define_messaging_tables(Base.metadata)


class SyncDossier(Base):
    __tablename__ = "sync_dossiers"

    dossier_code: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    snapshot: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True)
    snapshot_stale: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    known_at_portal: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    steps_sent: Mapped[int] = mapped_column(sa.Integer, default=0)
    sent_status: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    pending: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    pending_since = mapped_column(UtcDateTime(), nullable=True)
    next_attempt_at = mapped_column(UtcDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    parked_at = mapped_column(UtcDateTime(), nullable=True)
    parked_answer: Mapped[dict | None] = mapped_column(sa.JSON, nullable=True)
    synced_at = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        sa.Index("ix_sync_dossiers_due", "pending", "parked_at", "next_attempt_at"),
        sa.Index("ix_sync_dossiers_pending_since", "pending_since"),
    )


class SyncFee(Base):
    __tablename__ = "sync_fees"

    txn_ref: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    dossier_code: Mapped[str] = mapped_column(sa.String(32), index=True)
    amount: Mapped[int] = mapped_column(sa.BigInteger)
    gateway: Mapped[str] = mapped_column(sa.String(32))
    paid_at: Mapped[str | None] = mapped_column(sa.String(40), nullable=True)
    refunded: Mapped[bool] = mapped_column(sa.Boolean, default=False)


class SyncJob(Base):
    __tablename__ = "sync_jobs"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    cursor: Mapped[int] = mapped_column(sa.Integer, default=0)
    total: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    finished_at = mapped_column(UtcDateTime(), nullable=True)
    updated_at = mapped_column(UtcDateTime(), nullable=False)
