"""The dossier aggregate: statuses, transitions, deadline and the events it raises."""
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from dossier.domain import calendar


class Status(str, Enum):
    """Dossier statuses with the national one-stop-shop codes (1–10)."""

    submitted = "submitted"
    accepted = "accepted"
    not_accepted = "not_accepted"
    processing = "processing"
    supplement_requested = "supplement_requested"
    payment_requested = "payment_requested"
    withdrawn = "withdrawn"
    stopped = "stopped"
    processed = "processed"
    returned = "returned"

    @property
    def code(self):
        return STATUS_CODES[self]

    @property
    def label(self):
        return STATUS_LABELS[self]


STATUS_CODES = {status: number for number, status in enumerate(Status, start=1)}
STATUS_LABELS = {
    Status.submitted: "Mới đăng ký",
    Status.accepted: "Được tiếp nhận",
    Status.not_accepted: "Không được tiếp nhận",
    Status.processing: "Đang xử lý",
    Status.supplement_requested: "Yêu cầu bổ sung giấy tờ",
    Status.payment_requested: "Yêu cầu thực hiện nghĩa vụ tài chính",
    Status.withdrawn: "Công dân yêu cầu rút hồ sơ",
    Status.stopped: "Dừng xử lý",
    Status.processed: "Đã xử lý xong",
    Status.returned: "Đã trả kết quả",
}
# While waiting for the citizen the office's clock stops.
PAUSED = frozenset({Status.supplement_requested, Status.payment_requested})
OPEN = frozenset({Status.accepted, Status.processing, Status.supplement_requested, Status.payment_requested})

# action → (statuses it may start from, status it leads to)
TRANSITIONS = {
    "accept": ({Status.submitted}, Status.accepted),
    "refuse": ({Status.submitted}, Status.not_accepted),
    "start": ({Status.accepted}, Status.processing),
    "request_supplement": ({Status.processing}, Status.supplement_requested),
    "supplement": ({Status.supplement_requested}, Status.processing),
    "finish": ({Status.processing}, Status.processed),
    "return_result": ({Status.processed}, Status.returned),
    "stop": (
        {Status.accepted, Status.payment_requested, Status.processing, Status.supplement_requested},
        Status.stopped,
    ),
    "withdraw": (
        {Status.submitted, Status.accepted, Status.payment_requested, Status.supplement_requested},
        Status.withdrawn,
    ),
}
ACTIONS = tuple(TRANSITIONS)
SYSTEM_ACTOR = "system"


class DomainError(Exception):
    pass


class InvalidTransition(DomainError):
    """The action is not allowed from the dossier's current status."""


@dataclass(frozen=True)
class Procedure:
    code: str
    name: str
    agency_code: str
    fee: int
    processing_days: int


@dataclass(frozen=True)
class Applicant:
    full_name: str
    id_number: str
    phone: str | None = None
    email: str | None = None
    address: str | None = None

    def contact(self):
        """What notifications need: never the ID number."""
        return {"full_name": self.full_name, "phone": self.phone, "email": self.email}


@dataclass(frozen=True)
class HistoryEntry:
    status: Status
    at: datetime
    actor: str
    note: str | None = None


@dataclass(frozen=True)
class StatusChanged:
    """Raised on every status change; becomes ``dossier_status_changed`` with these fields.

    It carries the dossier as it stands after the change (procedure, deadline,
    applicant), so the event needs nothing else to be written.
    """

    dossier_code: str
    old_status: Status | None
    new_status: Status
    at: datetime
    note: str | None
    procedure: Procedure
    applicant: Applicant
    due_at: datetime | None


@dataclass
class Dossier:
    code: str
    procedure: Procedure
    applicant: Applicant
    form_data: dict
    status: Status
    submitted_at: datetime
    due_at: datetime | None = None
    paused_since: datetime | None = None
    processed_at: datetime | None = None
    fee_paid: bool = False
    history: list = field(default_factory=list)
    events: list = field(default_factory=list)

    @classmethod
    def submit(cls, code, procedure, applicant, form_data, now, actor=None):
        dossier = cls(
            code=code,
            procedure=procedure,
            applicant=applicant,
            form_data=form_data or {},
            status=Status.submitted,
            submitted_at=now,
        )
        dossier._enter(Status.submitted, now, actor or "citizen", None, old_status=None)
        return dossier

    def act(self, action, actor, note, now):
        """Apply a portal action; raises ``InvalidTransition`` if not allowed."""
        if action not in TRANSITIONS:
            raise InvalidTransition(f"unknown action {action!r}")
        allowed_from, target = TRANSITIONS[action]
        if self.status not in allowed_from:
            raise InvalidTransition(f"cannot {action} a dossier in status {self.status.value}")
        if action == "accept":  # the deadline starts with the acceptance, and its event carries it
            self.due_at = calendar.add_working_days(now, self.procedure.processing_days)
        self._enter(target, now, actor, note)
        if action == "accept":
            if self.procedure.fee > 0:
                self._enter(Status.payment_requested, now, SYSTEM_ACTOR, "Yêu cầu nộp phí, lệ phí")

    def record_payment(self, now):
        """A payment succeeded: payment_requested → processing. Returns False if nothing to do."""
        if self.fee_paid:
            return False
        self.fee_paid = True
        if self.status is not Status.payment_requested:
            return False
        self._enter(Status.processing, now, SYSTEM_ACTOR, "Đã nộp phí, lệ phí trực tuyến")
        return True

    def _enter(self, new_status, now, actor, note, old_status=...):
        old = self.status if old_status is ... else old_status
        if old in PAUSED and self.paused_since is not None and self.due_at is not None:
            self.due_at = calendar.add_working_time(self.due_at, calendar.working_time_between(self.paused_since, now))
        self.paused_since = now if new_status in PAUSED else None
        if new_status is Status.processed:
            self.processed_at = now
        self.status = new_status
        self.history.append(HistoryEntry(new_status, now, actor, note))
        self.events.append(StatusChanged(self.code, old, new_status, now, note, self.procedure, self.applicant,
                                         self.due_at))


def on_time_rate(on_time, late, overdue_open):
    """The national KPI: on time over everything that is finished or overdue."""
    denominator = on_time + late + overdue_open
    return on_time / denominator if denominator else 1.0
