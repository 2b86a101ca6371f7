"""Every notify use case through the message bus, on a fake unit of work.

No broker, no database: these read as the rules of the service and run in a second.
"""
from datetime import datetime, timedelta, timezone

import pytest

from notify.commands import (
    ApplySmsReceipt,
    ClaimDeliveries,
    NotifyDossierStatusChanged,
    NotifyDossierStatusChanges,
    NotifyPaymentEvent,
    PruneBodies,
    QueueDueNotifications,
    RecordOutcomes,
    ResendNotifications,
    SendNotification,
)
from notify.domain.model import Outcome, RetryPolicy, Status
from notify.messagebus import MessageBus
from notify.rendering import TemplateParamsError
from notify.use_cases import (
    Delivery,
    NotificationNotFound,
    Settings,
    UnknownDossierContact,
    get_notification,
    list_notifications,
)
from tests.notify.unit.fakes import FakeUnitOfWork

NOW = datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
DOSSIER = "STP-HN-261204-ABCDEF"
CONSUMER = "notify.on_dossier_status_changed"
SETTINGS = Settings(policy=RetryPolicy(max_attempts=3, base_seconds=30), lease_seconds=40, batch_size=50)


class Harness:
    def __init__(self):
        self.uow = FakeUnitOfWork()
        self.dossiers_asked = []
        self.bus = MessageBus(self.uow, settings=SETTINGS, find_dossier=self.find_dossier)
        self.dossier_service = {}

    def find_dossier(self, code):
        self.dossiers_asked.append(code)
        return self.dossier_service[code]

    def dossier_event(self, new_status="accepted", event_id="evt-1", phone="+84 912 345 678",
                      email=" an@example.vn ", now=NOW):
        event = {"event_id": event_id, "dossier_code": DOSSIER, "new_status": new_status,
                 "procedure_name": "Cấp Phiếu lý lịch tư pháp", "due_at": "2026-12-10",
                 "applicant": {"full_name": "Nguyễn Văn An", "phone": phone, "email": email}}
        return self.bus.handle(NotifyDossierStatusChanged(CONSUMER, event, now=now))

    def payment_event(self, event_id="pay-1", kind="payment_succeeded", dossier_code=DOSSIER):
        event = {"event_id": event_id, "dossier_code": dossier_code, "amount": 200_000, "txn_ref": "T1",
                 "gateway": "vnpay", "gateway_txn_no": "14000000", "paid_at": "2026-12-04T02:00:00+00:00"}
        return self.bus.handle(NotifyPaymentEvent(f"notify.on_{kind}", kind, event, now=NOW))

    def claim(self, *deliveries, now=NOW):
        return self.bus.handle(ClaimDeliveries(tuple(deliveries), now=now))

    def sms(self):
        return next(n for n in self.uow.of_reference(DOSSIER) if n.channel == "sms")

    def send_sms(self, outcome, now=NOW):
        """Claim the SMS at its current attempts and record ``outcome`` for it; returns the claim."""
        sms = self.sms()
        claimed = self.claim(Delivery(sms.id, sms.attempts), now=now)[sms.id]
        self.bus.handle(RecordOutcomes(((claimed, outcome),), now=now))
        return claimed


@pytest.fixture
def harness():
    return Harness()


# --- deciding what to send --------------------------------------------------------------------

def test_an_accepted_dossier_gets_an_sms_and_an_email_each_queued_for_its_channel(harness):
    ids = harness.dossier_event()
    sms, email = harness.uow.notification(ids[0]), harness.uow.notification(ids[1])
    assert (sms.channel, sms.recipient, sms.status, sms.attempts) == ("sms", "0912345678", Status.CREATED, 0)
    assert "da duoc tiep nhan" in sms.body and DOSSIER in sms.body and sms.segments >= 1  # sent unaccented
    assert (email.channel, email.recipient) == ("email", "an@example.vn")
    assert DOSSIER in email.subject and email.html_body
    assert sms.next_attempt_at > NOW  # the queued message sends it; the timer only if nobody claimed it
    assert harness.uow.deliveries() == [("deliver_sms", sms.id, 0), ("deliver_email", email.id, 0)]
    assert harness.uow.store.contacts[DOSSIER].phone == "0912345678"
    assert harness.uow.commits == 1


def test_an_event_takes_effect_once(harness):
    harness.dossier_event()
    assert harness.dossier_event() is None
    assert len(harness.uow.store.notifications) == 2 and len(harness.uow.deliveries()) == 2


def test_events_arriving_together_are_stored_in_one_transaction_each_once(harness):
    def event(event_id, dossier_code, new_status="accepted", phone="0912345678"):
        return NotifyDossierStatusChanged(CONSUMER, {
            "event_id": event_id, "dossier_code": dossier_code, "new_status": new_status, "procedure_name": None,
            "applicant": {"full_name": "Trần Thị Bình", "phone": phone, "email": None}}, now=NOW)

    harness.dossier_event()  # evt-1, DOSSIER, with its procedure name
    together = (event("evt-2", "D2"), event("evt-1", DOSSIER), event("evt-3", DOSSIER, "processing", "0987654321"),
                event("evt-2", "D2"))
    results = harness.bus.handle(NotifyDossierStatusChanges(together))
    assert results[1] is None and results[3] is None  # seen before; a second copy in the same batch
    assert len(results[0]) == 1 and results[2] == []  # D2's SMS; "processing" writes nothing
    assert harness.uow.commits == 2
    contact = harness.uow.store.contacts[DOSSIER]
    assert contact.phone == "0987654321" and contact.procedure_name == "Cấp Phiếu lý lịch tư pháp"
    assert [kind for kind, _, _ in harness.uow.deliveries()] == ["deliver_sms", "deliver_email", "deliver_sms"]


def test_a_status_without_a_message_only_remembers_the_applicant(harness):
    assert harness.dossier_event(new_status="processing") == []
    assert harness.uow.store.notifications == {} and harness.uow.deliveries() == []
    contact = harness.uow.store.contacts[DOSSIER]
    assert (contact.full_name, contact.phone) == ("Nguyễn Văn An", "0912345678")


def test_an_applicant_without_a_valid_mobile_gets_only_the_email(harness):
    ids = harness.dossier_event(phone="024 3826 1234")
    assert [harness.uow.notification(i).channel for i in ids] == ["email"]


def test_a_payment_receipt_goes_to_the_contact_learnt_from_the_dossier_events(harness):
    harness.dossier_event(new_status="payment_requested")
    ids = harness.payment_event()
    texts = [harness.uow.notification(i).body for i in ids]
    assert len(ids) == 2 and all("200.000" in text for text in texts)
    assert harness.dossiers_asked == []


def test_a_payment_receipt_for_an_unknown_dossier_asks_the_dossier_service(harness):
    harness.dossier_service[DOSSIER] = {"procedure_name": "Thủ tục", "applicant": {"phone": "0912345678"}}
    ids = harness.payment_event()
    assert harness.dossiers_asked == [DOSSIER]
    assert [harness.uow.notification(i).recipient for i in ids] == ["0912345678"]


def test_a_payment_receipt_nobody_can_address_rolls_back_so_a_retry_can_take_effect(harness):
    harness.bus = MessageBus(harness.uow, settings=SETTINGS)  # no dossier service to ask
    with pytest.raises(UnknownDossierContact):
        harness.payment_event()
    assert harness.uow.store.inbox == set() and harness.uow.commits == 0
    harness.dossier_event()
    assert len(harness.payment_event()) == 2  # the same event, retried once the applicant is known


def test_an_operator_message_is_stored_and_queued(harness):
    notification = harness.bus.handle(SendNotification("sms", "0912345678", "processed", {"dossier_code": "R-1"},
                                                       "R-1", now=NOW))
    assert harness.uow.deliveries() == [("deliver_sms", notification.id, 0)]
    assert harness.uow.notification(notification.id).reference == "R-1"


def test_an_operator_message_stating_an_amount_needs_the_amount(harness):
    with pytest.raises(TemplateParamsError) as refused:
        harness.bus.handle(SendNotification("sms", "0912345678", "payment_succeeded", {"dossier_code": "R-1"}))
    assert refused.value.fields == {"amount": ["required"]}
    assert harness.uow.store.notifications == {}


# --- sending ------------------------------------------------------------------------------------

def test_a_claim_takes_the_row_at_the_queued_attempt_once(harness):
    sms_id = harness.dossier_event()[0]
    claimed = harness.claim(Delivery(sms_id, 0), Delivery(sms_id, 0))
    assert list(claimed) == [sms_id] and claimed[sms_id].attempts == 1
    assert claimed[sms_id].message.recipient == "0912345678"
    stored = harness.uow.notification(sms_id)
    assert (stored.status, stored.attempts, stored.lease_until) == (Status.SENDING, 1, NOW + timedelta(seconds=40))
    assert harness.claim(Delivery(sms_id, 0)) == {}  # a duplicate message: acknowledged, not sent again


def test_a_redelivered_message_takes_over_from_a_dead_consumer_without_waiting_for_the_lease(harness):
    sms_id = harness.dossier_event()[0]
    harness.claim(Delivery(sms_id, 0))
    assert harness.claim(Delivery(sms_id, 0)) == {}  # the lease still runs
    assert harness.claim(Delivery(sms_id, 0, redelivered=True))[sms_id].attempts == 2
    later = NOW + timedelta(seconds=41)
    assert harness.claim(Delivery(sms_id, 0), now=later)[sms_id].attempts == 3  # the lease ran out


def test_a_takeover_past_the_last_attempt_is_a_technical_failure(harness):
    sms_id = harness.dossier_event()[0]
    for _ in range(3):
        harness.claim(Delivery(sms_id, 0, redelivered=True))
    assert harness.claim(Delivery(sms_id, 0, redelivered=True)) == {}
    stored = harness.uow.notification(sms_id)
    assert (stored.status, stored.last_error) == (Status.TECHNICAL_FAILURE, "lost while sending on the last attempt")


def test_a_sent_message_keeps_its_provider_and_reference(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.SENT, "esms", "SMS-1"))
    sms = harness.sms()
    assert (sms.status, sms.provider, sms.provider_reference, sms.sent_at) == (Status.SENT, "esms", "SMS-1", NOW)
    assert sms.lease_until is None


def test_a_temporary_failure_waits_for_the_back_off_then_the_last_one_is_technical(harness):
    harness.dossier_event()
    failure = Outcome(Status.TEMPORARY_FAILURE, None, None, "esms 99: busy")
    harness.send_sms(failure)
    assert (harness.sms().status, harness.sms().next_attempt_at) == (Status.TEMPORARY_FAILURE,
                                                                     NOW + timedelta(seconds=30))
    harness.send_sms(failure)
    assert harness.sms().next_attempt_at == NOW + timedelta(seconds=60)
    harness.send_sms(failure)
    assert (harness.sms().status, harness.sms().last_error) == (Status.TECHNICAL_FAILURE, "esms 99: busy")


def test_an_outcome_does_not_overwrite_what_a_takeover_did_meanwhile(harness):
    sms_id = harness.dossier_event()[0]
    first = harness.claim(Delivery(sms_id, 0))[sms_id]
    harness.claim(Delivery(sms_id, 0, redelivered=True))  # another consumer took it over: attempt 2
    harness.bus.handle(RecordOutcomes(((first, Outcome(Status.TEMPORARY_FAILURE, error="late")),), now=NOW))
    assert (harness.sms().status, harness.sms().attempts) == (Status.SENDING, 2)


# --- the timer: the safety net ------------------------------------------------------------------

def test_the_timer_queues_due_retries_and_leaves_the_rest(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.TEMPORARY_FAILURE, error="busy"))
    assert harness.bus.handle(QueueDueNotifications(now=NOW + timedelta(seconds=10))) == []
    queued = harness.bus.handle(QueueDueNotifications(now=NOW + timedelta(seconds=31)))
    assert queued == [harness.sms().id]
    assert harness.uow.deliveries()[-1] == ("deliver_sms", harness.sms().id, 1)
    # pushed ahead: a second tick (or a second timer) does not queue it again
    assert harness.bus.handle(QueueDueNotifications(now=NOW + timedelta(seconds=32))) == []


def test_the_timer_queues_again_a_message_whose_consumer_was_lost_mid_send(harness):
    sms_id = harness.dossier_event()[0]
    harness.claim(Delivery(sms_id, 0))
    later = NOW + timedelta(seconds=41)
    assert harness.bus.handle(QueueDueNotifications(now=later)) == [sms_id]
    sms = harness.sms()
    assert (sms.status, sms.last_error, sms.attempts) == (Status.TEMPORARY_FAILURE, "lease expired while sending", 1)
    assert harness.claim(Delivery(sms_id, 1), now=later)[sms_id].attempts == 2


def test_a_message_lost_mid_send_on_its_last_attempt_waits_for_an_operator(harness):
    sms_id = harness.dossier_event()[0]
    for _ in range(3):
        harness.claim(Delivery(sms_id, 0, redelivered=True))
    assert harness.bus.handle(QueueDueNotifications(now=NOW + timedelta(seconds=41))) == []
    assert harness.sms().status == Status.TECHNICAL_FAILURE


# --- receipts -----------------------------------------------------------------------------------

def test_a_receipt_marks_the_message_its_provider_sent_delivered(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.SENT, "esms", "SMS-1"))
    sms_id = harness.sms().id
    assert harness.bus.handle(ApplySmsReceipt("speedsms", "SMS-1", Status.DELIVERED, now=NOW)) is None
    assert harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.DELIVERED, "another-id", now=NOW)) is None
    applied = harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.DELIVERED, sms_id, now=NOW))
    assert (applied.notification_id, applied.status) == (sms_id, Status.DELIVERED)
    assert harness.sms().delivered_at == NOW
    # final now: a second receipt changes nothing
    assert harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.PERMANENT_FAILURE, now=NOW)) is None


def test_a_receipt_before_its_outcome_is_recorded_is_applied_with_the_outcome(harness):
    harness.dossier_event()
    sms_id = harness.sms().id
    claimed = harness.claim(Delivery(sms_id, 0))[sms_id]  # sending: the provider answered, the outcome waits
    early = harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.DELIVERED, sms_id, now=NOW))
    assert (early.notification_id, early.status, early.kept_for_outcome) == (sms_id, Status.SENDING, True)
    assert harness.sms().status == Status.SENDING
    later = NOW + timedelta(seconds=2)
    harness.bus.handle(RecordOutcomes(((claimed, Outcome(Status.SENT, "esms", "SMS-1")),), now=later))
    assert (harness.sms().status, harness.sms().delivered_at) == (Status.DELIVERED, later)
    assert harness.uow.store.early_receipts == {}  # taken with the outcome


def test_an_early_receipt_for_another_send_or_a_message_not_in_flight_is_not_applied(harness):
    harness.dossier_event()
    sms_id = harness.sms().id
    assert harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.DELIVERED, sms_id, now=NOW)) is None  # queued
    claimed = harness.claim(Delivery(sms_id, 0))[sms_id]
    harness.bus.handle(ApplySmsReceipt("esms", "SMS-OTHER", Status.DELIVERED, sms_id, now=NOW))
    harness.bus.handle(RecordOutcomes(((claimed, Outcome(Status.SENT, "esms", "SMS-1")),), now=NOW))
    assert harness.sms().status == Status.SENT and harness.uow.store.early_receipts == {}


def test_an_early_receipt_nobody_claims_is_pruned_after_a_day(harness):
    harness.dossier_event()
    sms_id = harness.sms().id
    harness.claim(Delivery(sms_id, 0))
    harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", Status.DELIVERED, sms_id, now=NOW))
    harness.bus.handle(PruneBodies(90, now=NOW + timedelta(hours=23)))
    assert list(harness.uow.store.early_receipts) == [sms_id]
    harness.bus.handle(PruneBodies(90, now=NOW + timedelta(hours=25)))
    assert harness.uow.store.early_receipts == {}


def test_a_receipt_that_is_not_final_or_names_nothing_changes_nothing(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.SENT, "esms", "SMS-1"))
    assert harness.bus.handle(ApplySmsReceipt("esms", "SMS-1", None)) is None
    assert harness.bus.handle(ApplySmsReceipt("esms", "", Status.DELIVERED)) is None
    assert harness.sms().status == Status.SENT


# --- operators ----------------------------------------------------------------------------------

def test_an_operator_resend_queues_failed_messages_again_with_fresh_attempts(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.PERMANENT_FAILURE, "esms", None, "refused"))
    resent = harness.bus.handle(ResendNotifications(reference=DOSSIER, now=NOW))
    assert [n.id for n in resent] == [harness.sms().id]  # the e-mail did not fail
    assert (harness.sms().status, harness.sms().attempts) == (Status.CREATED, 0)
    assert harness.uow.deliveries()[-1] == ("deliver_sms", harness.sms().id, 0)
    assert harness.bus.handle(ResendNotifications(reference=DOSSIER, now=NOW)) == []
    with pytest.raises(ValueError):
        harness.bus.handle(ResendNotifications())


def test_old_delivered_texts_are_blanked_and_failed_ones_kept(harness):
    harness.dossier_event()
    harness.send_sms(Outcome(Status.SENT, "esms", "SMS-1"))
    assert harness.bus.handle(PruneBodies(90, now=NOW + timedelta(days=89))) == 0
    assert harness.bus.handle(PruneBodies(90, now=NOW + timedelta(days=91))) == 1  # the e-mail was never sent
    assert (harness.sms().body, harness.sms().recipient) == ("", "0912345678")


def test_notifications_are_read_by_id_and_by_reference(harness):
    ids = harness.dossier_event()
    assert get_notification(harness.uow, ids[1]).channel == "email"
    assert [n.channel for n in list_notifications(harness.uow, DOSSIER)] == ["email", "sms"]
    with pytest.raises(NotificationNotFound):
        get_notification(harness.uow, "nope")


def test_leaving_the_unit_of_work_without_commit_keeps_nothing(harness):
    with harness.uow:
        harness.uow.inbox.claim(CONSUMER, "evt-x")
    assert harness.uow.store.inbox == set()
