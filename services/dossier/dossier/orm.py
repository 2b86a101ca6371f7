"""Tables of the dossier service and the repository mapping them to the domain."""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

from dossier.domain.model import Applicant, Dossier, HistoryEntry, Procedure, Status
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


def to_domain(row):
    return Dossier(
        code=row.code,
        procedure=Procedure(row.procedure_code, row.procedure_name, row.agency_code, row.fee_amount, row.processing_days),
        applicant=Applicant(
            row.applicant_full_name, row.applicant_id_number, row.applicant_phone, row.applicant_email, row.applicant_address
        ),
        form_data=row.form_data or {},
        status=Status(row.status),
        submitted_at=row.submitted_at,
        due_at=row.due_at,
        paused_since=row.paused_since,
        processed_at=row.processed_at,
        fee_paid=row.fee_paid,
        history=[HistoryEntry(Status(h.status), h.at, h.actor, h.note) for h in row.history],
    )


class DossierRepository:
    """Loads and saves dossier aggregates in one session."""

    def __init__(self, session):
        self.session = session

    def get(self, code, for_update=False):
        """The dossier with ``code`` or None; ``for_update`` locks its row until commit."""
        statement = sa.select(DossierRow).where(DossierRow.code == code)
        if for_update:
            statement = statement.with_for_update()
        row = self.session.execute(statement).scalar_one_or_none()
        return (to_domain(row), row) if row is not None else (None, None)

    def add(self, dossier):
        row = DossierRow(code=dossier.code)
        self.session.add(row)
        self._copy(dossier, row)
        return row

    def save(self, dossier, row):
        self._copy(dossier, row)

    def _copy(self, dossier, row):
        procedure, applicant = dossier.procedure, dossier.applicant
        row.procedure_code, row.procedure_name = procedure.code, procedure.name
        row.agency_code, row.fee_amount, row.processing_days = procedure.agency_code, procedure.fee, procedure.processing_days
        row.fee_paid, row.status = dossier.fee_paid, dossier.status.value
        row.applicant_full_name, row.applicant_id_number = applicant.full_name, applicant.id_number
        row.applicant_phone, row.applicant_email, row.applicant_address = applicant.phone, applicant.email, applicant.address
        row.form_data = dossier.form_data
        row.submitted_at, row.due_at = dossier.submitted_at, dossier.due_at
        row.paused_since, row.processed_at = dossier.paused_since, dossier.processed_at
        for entry in dossier.history[len(row.history):]:
            row.history.append(HistoryRow(status=entry.status.value, at=entry.at, actor=entry.actor, note=entry.note))

    def list(self, applicant_id_number=None, status=None, agency_code=None, limit=50, offset=0, agency_codes=None):
        conditions = []
        if agency_codes is not None:
            conditions.append(DossierRow.agency_code.in_(agency_codes))
        if applicant_id_number:
            conditions.append(DossierRow.applicant_id_number == applicant_id_number)
        if status:
            conditions.append(DossierRow.status == status)
        if agency_code:
            conditions.append(DossierRow.agency_code == agency_code)
        total = self.session.execute(sa.select(sa.func.count()).select_from(DossierRow).where(*conditions)).scalar_one()
        rows = self.session.execute(
            sa.select(DossierRow).where(*conditions).order_by(DossierRow.submitted_at.desc(), DossierRow.id.desc())
            .limit(limit).offset(offset).options(selectinload(DossierRow.history))
        ).scalars().all()
        return [to_domain(row) for row in rows], total

    def code_exists(self, code):
        return self.session.execute(sa.select(DossierRow.id).where(DossierRow.code == code)).first() is not None


def dossier_statistics(session, now, agency_code=None, since=None, until=None):
    """Counts behind ``dossier_stats``, computed in SQL whatever the volume."""
    from dossier.domain.model import OPEN, PAUSED

    conditions = []
    if agency_code:
        conditions.append(DossierRow.agency_code == agency_code)
    if since:
        conditions.append(DossierRow.submitted_at >= since)
    if until:
        conditions.append(DossierRow.submitted_at < until)
    by_status = dict(
        session.execute(
            sa.select(DossierRow.status, sa.func.count()).where(*conditions).group_by(DossierRow.status)
        ).all()
    )
    running = [s.value for s in OPEN - PAUSED]
    paused = [s.value for s in PAUSED]
    counts = session.execute(
        sa.select(
            sa.func.count().filter(DossierRow.processed_at.is_not(None), DossierRow.processed_at <= DossierRow.due_at),
            sa.func.count().filter(DossierRow.processed_at.is_not(None), DossierRow.processed_at > DossierRow.due_at),
            sa.func.count().filter(
                sa.or_(
                    sa.and_(DossierRow.status.in_(running), DossierRow.due_at < now),
                    # a paused dossier's clock is stopped: overdue only if it already was when it paused
                    sa.and_(DossierRow.status.in_(paused), DossierRow.due_at < DossierRow.paused_since),
                )
            ),
        ).where(*conditions)
    ).one()
    return by_status, counts[0], counts[1], counts[2]
