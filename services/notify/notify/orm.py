"""Tables of the notify service: notifications and the dossier contacts learnt from events."""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from portal_shared.db import UtcDateTime
from portal_shared.schema import define_messaging_tables


class Base(DeclarativeBase):
    pass


define_messaging_tables(Base.metadata)


class NotificationRow(Base):
    """One message to one recipient on one channel, with its delivery state.

    The text is rendered when the row is created, so retries and operator
    resends send exactly what was decided then.
    """

    __tablename__ = "notifications"
    __table_args__ = (sa.UniqueConstraint("event_id", "channel", name="uq_notifications_event_channel"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    event_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    channel: Mapped[str] = mapped_column(sa.String(8))
    recipient: Mapped[str] = mapped_column(sa.String(254))
    template: Mapped[str] = mapped_column(sa.String(64))
    reference: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    subject: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    body: Mapped[str] = mapped_column(sa.Text)
    html_body: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    segments: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    status: Mapped[str] = mapped_column(sa.String(32))
    provider: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    provider_reference: Mapped[str | None] = mapped_column(sa.String(128), nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at = mapped_column(UtcDateTime(), nullable=False)
    updated_at = mapped_column(UtcDateTime(), nullable=False)
    next_attempt_at = mapped_column(UtcDateTime(), nullable=True)
    lease_until = mapped_column(UtcDateTime(), nullable=True)
    sent_at = mapped_column(UtcDateTime(), nullable=True)
    delivered_at = mapped_column(UtcDateTime(), nullable=True)


sa.Index("ix_notifications_due", NotificationRow.status, NotificationRow.next_attempt_at)


class DossierContactRow(Base):
    """Who to write to about a dossier: payment events carry no applicant, dossier events do."""

    __tablename__ = "dossier_contacts"

    dossier_code: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    procedure_name: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    full_name: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    phone: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    email: Mapped[str | None] = mapped_column(sa.String(254), nullable=True)
    updated_at = mapped_column(UtcDateTime(), nullable=False)


class EarlyReceiptRow(Base):
    """A delivery receipt that named a message whose send outcome was not recorded yet (the provider
    answered and sent its receipt while the outcome waited for its batch, or for the database). It is
    applied, and deleted, with that outcome; one nobody claims is pruned after a day."""

    __tablename__ = "early_receipts"

    notification_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    provider: Mapped[str] = mapped_column(sa.String(16))
    provider_reference: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(32))
    received_at = mapped_column(UtcDateTime(), nullable=False)
