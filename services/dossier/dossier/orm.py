"""Tables of the dossier service (the repository, ``repositories.py``, maps them to the domain)."""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from portal_shared.db import UtcDateTime
from portal_shared.schema import define_messaging_tables


class Base(DeclarativeBase):
    pass


define_messaging_tables(Base.metadata)


class DossierRow(Base):
    __tablename__ = "dossiers"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    procedure_code: Mapped[str] = mapped_column(sa.String(64))
    procedure_name: Mapped[str] = mapped_column(sa.String(255))
    agency_code: Mapped[str] = mapped_column(sa.String(64), index=True)
    fee_amount: Mapped[int] = mapped_column(sa.BigInteger)
    processing_days: Mapped[int] = mapped_column(sa.Integer)
    fee_paid: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    applicant_full_name: Mapped[str] = mapped_column(sa.String(255))
    applicant_id_number: Mapped[str] = mapped_column(sa.String(12), index=True)
    applicant_phone: Mapped[str | None] = mapped_column(sa.String(10))
    applicant_email: Mapped[str | None] = mapped_column(sa.String(254))
    applicant_address: Mapped[str | None] = mapped_column(sa.String(500))
    form_data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    submitted_at = mapped_column(UtcDateTime(), nullable=False, index=True)
    due_at = mapped_column(UtcDateTime(), nullable=True)
    paused_since = mapped_column(UtcDateTime(), nullable=True)
    processed_at = mapped_column(UtcDateTime(), nullable=True)
    history: Mapped[list["HistoryRow"]] = relationship(order_by="HistoryRow.id", cascade="all, delete-orphan")


class HistoryRow(Base):
    __tablename__ = "dossier_history"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    dossier_id: Mapped[int] = mapped_column(sa.ForeignKey("dossiers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    at = mapped_column(UtcDateTime(), nullable=False)
    actor: Mapped[str] = mapped_column(sa.String(128))
    note: Mapped[str | None] = mapped_column(sa.Text)
