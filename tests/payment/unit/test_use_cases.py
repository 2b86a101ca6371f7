"""Every payment use case through the message bus, on a fake unit of work and scripted gateways.

No broker, no database: these read as the rules of the service and run in a second.
"""
from datetime import datetime, timedelta, timezone

import pytest

from payment.commands import (
    AcceptMomoIpn,
    AcceptVnpayIpn,
    RecordDossierStatus,
    RefundPayment,
    SettlePending,
    StartPayment,
)
from payment.domain.model import AlreadyPaid, ChargeStatus, NoPaymentDue, Outcome, PaymentNotFound, Source, Status
from payment.gateways import (
    CheckoutRequest,
    ForeignMerchant,
    GatewayUnavailable,
    InvalidSignature,
    MalformedMessage,
    PaymentReport,
    RefundResult,
)
from payment.messagebus import MessageBus
from payment.use_cases import RejectedNotification, get_payment, list_payments, refunds_due
from portal_shared.errors import ValidationError
from tests.payment.unit.fakes import FakeGateway, FakeSettings, FakeUnitOfWork

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
DOSSIER = "STP-HN-261126-ABCDEF"
CONSUMER = "payment.on_dossier_status_changed"


class Harness:
    def __init__(self):
        self.uow = FakeUnitOfWork()
        self.settings = FakeSettings()
        self.refunds_requested = []
        self.bus = MessageBus(self.uow, self.settings, request_refund=self.refunds_requested.append)

    def gateway(self, name="vnpay"):
        return self.settings.gateway(name)

    def announce(self, new_status="payment_requested", fee=200_000, event_id=None, dossier_code=DOSSIER):
        event = {"event_id": event_id or f"evt-{new_status}-{fee}", "dossier_code": dossier_code,
                 "new_status": new_status, "fee_amount": fee, "procedure_name": "Cấp Phiếu lý lịch tư pháp",
                 "agency_code": "STP-HN"}
        self.bus.handle(RecordDossierStatus(CONSUMER, event, now=NOW))
        return event

    def start(self, gateway="vnpay", now=NOW, dossier_code=DOSSIER):
        return self.bus.handle(StartPayment(dossier_code, gateway, "https://portal.example/back", "203.0.113.7",
                                            now=now))

    def ipn(self, payment, outcome=Outcome.succeeded, amount=None, now=None):
        self.gateway().notification = PaymentReport(
            payment.txn_ref, outcome, payment.amount if amount is None else amount, "14000000",
            NOW + timedelta(minutes=1), reason=None if outcome is Outcome.succeeded else "24: customer cancelled",
            raw={"vnp_TxnRef": payment.txn_ref})
        return self.bus.handle(AcceptVnpayIpn({"vnp_TxnRef": payment.txn_ref}, now=now or NOW + timedelta(minutes=1)))


@pytest.fixture
def h():
    return Harness()


@pytest.fixture
def due(h):
    h.announce()
    return h


# --- charges ----------------------------------------------------------------------------------


def test_a_fee_announced_becomes_a_due_charge_once_per_event(h):
    event = h.announce(fee=200_000)
    h.bus.handle(RecordDossierStatus(CONSUMER, {**event, "fee_amount": 999}, now=NOW))  # the same event again
    charge = h.uow.charge(DOSSIER)
    assert (charge.status, charge.amount, charge.agency_code) == (ChargeStatus.due, 200_000, "STP-HN")


@pytest.mark.parametrize("new_status, fee", [("accepted", 0), ("processing", 200_000), ("payment_requested", 0)])
def test_a_change_that_concerns_no_fee_opens_no_transaction(h, new_status, fee):
    h.announce(new_status=new_status, fee=fee)
    assert h.uow.commits == 0 and h.uow.charge(DOSSIER) is None


def test_a_new_fee_updates_a_due_charge_but_never_a_paid_one(due):
    due.announce(fee=250_000)
    assert due.uow.charge(DOSSIER).amount == 250_000
    due.ipn(due.start())
    due.announce(fee=300_000)
    assert (due.uow.charge(DOSSIER).status, due.uow.charge(DOSSIER).amount) == (ChargeStatus.paid, 250_000)


def test_a_closed_dossier_cancels_its_charge_and_refunds_what_was_paid(due):
    payment = due.start()
    due.ipn(payment)
    due.announce("withdrawn", fee=0)
    assert due.uow.charge(DOSSIER).status is ChargeStatus.cancelled
    assert due.uow.payment(payment.txn_ref).status is Status.refund_pending
    assert due.uow.payment(payment.txn_ref).refund_reason == "dossier withdrawn"
    assert due.refunds_requested == [payment.txn_ref]


# --- starting a payment -----------------------------------------------------------------------


def test_a_payment_starts_pending_with_the_gateways_pay_url(due):
    payment = due.start()
    stored = due.uow.payment(payment.txn_ref)
    assert (stored.status, stored.amount, stored.pay_url) == (Status.pending, 200_000,
                                                               f"https://pay.example/{payment.txn_ref}")
    assert stored.expires_at == NOW + timedelta(minutes=15)
    [creation] = due.uow.history(payment.txn_ref)
    assert creation.source is Source.create and creation.evidence["gateway_answer"] == {"payUrl": "yes"}
    [(kind, request)] = due.gateway().calls
    assert kind == "checkout" and isinstance(request, CheckoutRequest) and "ho so" in request.order_info


def test_an_unexpired_pending_attempt_is_handed_out_again(due):
    first = due.start()
    assert due.start(now=NOW + timedelta(minutes=5)).txn_ref == first.txn_ref
    assert due.start(now=NOW + timedelta(minutes=14)).txn_ref != first.txn_ref  # less than 2 minutes left


def test_no_payment_without_a_due_charge(h):
    with pytest.raises(NoPaymentDue):
        h.start()
    h.announce()
    h.ipn(h.start())
    with pytest.raises(AlreadyPaid):
        h.start()


def test_refusals_name_the_field_and_store_nothing(due):
    due.settings.gateways["momo"].refused_amount = "MoMo takes 1,000 to 50,000,000 VND"
    with pytest.raises(ValidationError) as refused:
        due.start(gateway="momo")
    assert "gateway" in refused.value.fields
    with pytest.raises(ValidationError) as refused:
        due.bus.handle(StartPayment(DOSSIER, "vnpay", "https://evil.example/", "203.0.113.7", now=NOW))
    assert "return_url" in refused.value.fields
    assert due.uow.store.payments == {}


def test_a_dossier_has_at_most_max_attempts(due):
    for minute in range(3):
        due.bus.handle(StartPayment(DOSSIER, ("vnpay", "momo")[minute % 2], "https://portal.example/back",
                                    "203.0.113.7", now=NOW + timedelta(minutes=20 * minute)))
    with pytest.raises(ValidationError) as refused:
        due.start(now=NOW + timedelta(hours=2))
    assert "dossier_code" in refused.value.fields


def test_a_gateway_outage_at_checkout_leaves_the_payment_failed_with_its_event(due):
    due.gateway().checkout_answer = GatewayUnavailable("vnpay unreachable")
    with pytest.raises(GatewayUnavailable):
        due.start()
    [payment] = due.uow.store.payments.values()
    assert payment.status is Status.failed
    [(kind, payload)] = due.uow.events()
    assert kind == "payment_failed" and "unreachable" in payload["reason"]


def test_an_unconfigured_gateway_is_refused_before_anything_is_stored(due):
    due.settings.gateways["vnpay"] = FakeGateway("vnpay", configured=False)
    with pytest.raises(GatewayUnavailable):
        due.start()
    assert due.uow.store.payments == {}


# --- VNPay IPN --------------------------------------------------------------------------------


def test_a_vnpay_success_pays_the_charge_with_one_event(due):
    payment = due.start()
    assert due.ipn(payment).code == "00"
    assert due.ipn(payment).code == "02"  # VNPay repeating itself
    assert due.uow.payment(payment.txn_ref).status is Status.succeeded
    assert due.uow.charge(DOSSIER).paid_txn_ref == payment.txn_ref
    [(kind, payload)] = due.uow.events("payment_succeeded")
    assert (payload["txn_ref"], payload["amount"], payload["gateway_txn_no"]) == (payment.txn_ref, 200_000,
                                                                                  "14000000")
    assert payload["event_id"] and payload["paid_at"].endswith("+07:00")


@pytest.mark.parametrize("error,code", [(InvalidSignature("bad"), "97"), (ForeignMerchant("other"), "01"),
                                        (MalformedMessage("no amount"), "99")])
def test_a_vnpay_ipn_that_cannot_be_read_changes_nothing(due, error, code):
    payment = due.start()
    due.gateway().notification = error
    verdict = due.bus.handle(AcceptVnpayIpn({}))
    assert (verdict.code, verdict.apply) == (code, False)
    assert due.uow.payment(payment.txn_ref).status is Status.pending and due.uow.events() == []


def test_a_vnpay_ipn_for_an_unknown_order_or_a_wrong_amount_changes_nothing(due):
    payment = due.start()
    assert due.ipn(payment, amount=1).code == "04"
    payment.txn_ref = "PUNKNOWN"
    assert due.ipn(payment).code == "01"
    assert due.uow.events() == [] and due.uow.commits == 3  # the charge, and the start (row, then pay URL)


def test_a_vnpay_failure_fails_the_payment(due):
    payment = due.start()
    assert due.ipn(payment, Outcome.failed).code == "00"
    assert due.uow.payment(payment.txn_ref).status is Status.failed
    [(kind, payload)] = due.uow.events()
    assert kind == "payment_failed" and payload["reason"] == "24: customer cancelled"


def test_a_late_success_of_an_expired_payment_is_still_money_received(due):
    payment = due.start()
    due.gateway().query_answer = PaymentReport(payment.txn_ref, Outcome.pending)
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=16)))
    assert due.uow.payment(payment.txn_ref).status is Status.expired
    assert due.ipn(payment, now=NOW + timedelta(minutes=17)).code == "00"
    assert due.uow.payment(payment.txn_ref).status is Status.succeeded


def test_a_second_success_for_a_paid_dossier_is_refunded_in_the_background(due):
    first, second = due.start(), due.start(gateway="momo")
    due.ipn(first)
    due.gateway("momo").notification = PaymentReport(second.txn_ref, Outcome.succeeded, 200_000, "999",
                                                      NOW + timedelta(minutes=2))
    due.bus.handle(AcceptMomoIpn({"orderId": second.txn_ref}, now=NOW + timedelta(minutes=2)))
    stored = due.uow.payment(second.txn_ref)
    assert stored.status is Status.refund_pending and first.txn_ref in stored.refund_reason
    assert due.refunds_requested == [second.txn_ref]
    assert [payload["txn_ref"] for _, payload in due.uow.events("payment_succeeded")] == [first.txn_ref,
                                                                                          second.txn_ref]
    assert due.uow.charge(DOSSIER).paid_txn_ref == first.txn_ref


# --- MoMo IPN ---------------------------------------------------------------------------------


def test_momo_ipns_that_change_nothing_are_rejected(due):
    payment = due.start(gateway="momo")
    momo = due.gateway("momo")
    for notification in (InvalidSignature("bad"), MalformedMessage("no orderId"),
                         PaymentReport("PUNKNOWN", Outcome.succeeded, 200_000),
                         PaymentReport(payment.txn_ref, Outcome.succeeded, 1)):
        momo.notification = notification
        with pytest.raises(RejectedNotification):
            due.bus.handle(AcceptMomoIpn({}))
    assert due.uow.payment(payment.txn_ref).status is Status.pending


def test_a_vnpay_order_is_not_settled_by_a_momo_ipn(due):
    payment = due.start()
    due.gateway("momo").notification = PaymentReport(payment.txn_ref, Outcome.succeeded, 200_000)
    with pytest.raises(RejectedNotification):
        due.bus.handle(AcceptMomoIpn({}))


# --- the timer --------------------------------------------------------------------------------


def test_the_timer_settles_what_the_gateway_reports(due):
    payment = due.start()
    due.gateway().query_answer = PaymentReport(payment.txn_ref, Outcome.succeeded, 200_000, "1", NOW)
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=5)))
    assert due.uow.payment(payment.txn_ref).status is Status.succeeded
    assert due.uow.history(payment.txn_ref)[-1].source is Source.query
    assert len(due.uow.events("payment_succeeded")) == 1


def test_the_timer_expires_a_stale_payment_the_gateway_cannot_answer_for(due):
    payment = due.start()
    due.gateway().query_answer = GatewayUnavailable("timeout")
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=5)))
    assert due.uow.payment(payment.txn_ref).status is Status.pending
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=16)))
    assert due.uow.payment(payment.txn_ref).status is Status.expired
    assert due.uow.history(payment.txn_ref)[-1].evidence["error"] == "timeout"


def test_the_timer_leaves_a_payment_an_ipn_holds_and_ignores_a_wrong_amount(due):
    payment = due.start()
    due.gateway().query_answer = PaymentReport(payment.txn_ref, Outcome.succeeded, 200_000)
    due.uow.store.busy.add(payment.txn_ref)
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=20)))
    assert due.uow.payment(payment.txn_ref).status is Status.pending
    due.uow.store.busy.clear()
    due.gateway().query_answer = PaymentReport(payment.txn_ref, Outcome.succeeded, 1)
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=5)))
    assert due.uow.payment(payment.txn_ref).status is Status.pending


def test_an_unconfigured_gateway_is_not_queried_and_its_payments_expire(due):
    payment = due.start()
    due.settings.gateways["vnpay"] = FakeGateway("vnpay", configured=False)
    due.bus.handle(SettlePending(now=NOW + timedelta(minutes=16)))
    assert due.uow.payment(payment.txn_ref).status is Status.expired


# --- refunds ----------------------------------------------------------------------------------


@pytest.fixture
def to_refund(due):
    payment = due.start()
    due.ipn(payment)
    due.announce("stopped", fee=0)
    return due, payment.txn_ref


def test_a_refund_accepted_marks_the_payment_refunded_with_its_event(to_refund):
    h, txn_ref = to_refund
    assert refunds_due(h.uow) == [txn_ref]
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=5))) is True
    stored = h.uow.payment(txn_ref)
    assert (stored.status, stored.refund_attempts) == (Status.refunded, 1)
    [(kind, payload)] = h.uow.events("payment_refunded")
    assert payload["txn_ref"] == txn_ref
    assert h.bus.handle(RefundPayment(txn_ref)) is False  # nothing left to refund
    assert refunds_due(h.uow) == []


def test_a_refused_refund_is_kept_pending_and_tried_again(to_refund):
    h, txn_ref = to_refund
    h.gateway().refund_answer = RefundResult(False, reason="merchant balance too low")
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=5))) is False
    assert (h.uow.payment(txn_ref).status, h.uow.payment(txn_ref).refund_error) == (
        Status.refund_pending, "merchant balance too low")
    h.gateway().refund_answer = GatewayUnavailable("unreachable")
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=6))) is False
    h.gateway().refund_answer = RefundResult(True)
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=7))) is True
    assert [request.attempt for kind, request in h.gateway().calls if kind == "refund"] == [1, 2, 3]


def test_an_answer_for_an_attempt_that_was_overtaken_is_dropped(to_refund):
    h, txn_ref = to_refund

    def another_process_claims_the_next_attempt():
        h.uow.store.payments[txn_ref].refund_attempts = 2

    h.gateway().during_refund = another_process_claims_the_next_attempt
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=5))) is False
    assert h.uow.payment(txn_ref).status is Status.refund_pending and h.uow.events("payment_refunded") == []


def test_an_attempt_in_flight_is_not_sent_again(to_refund):
    h, txn_ref = to_refund
    h.uow.store.payments[txn_ref].refund_attempts = 1  # claimed a minute ago by another process
    h.uow.store.payments[txn_ref].updated_at = NOW + timedelta(minutes=4)
    assert h.bus.handle(RefundPayment(txn_ref, now=NOW + timedelta(minutes=5))) is False
    assert [kind for kind, _ in h.gateway().calls if kind == "refund"] == []


# --- reads and the unit of work ---------------------------------------------------------------


def test_reads_return_the_payments_of_a_dossier(due):
    payment = due.start()
    assert get_payment(due.uow, payment.txn_ref).txn_ref == payment.txn_ref
    assert [p.txn_ref for p in list_payments(due.uow, DOSSIER)] == [payment.txn_ref]
    with pytest.raises(PaymentNotFound):
        get_payment(due.uow, "PNONE")


def test_a_block_left_without_commit_stores_nothing(due):
    payment = due.start()
    with due.uow:
        locked = due.uow.payments.get_for_update(payment.txn_ref)
        locked.expire(NOW + timedelta(hours=1))
    assert due.uow.payment(payment.txn_ref).status is Status.pending
    assert due.uow.collect_new_events() == []


# --- signed events ------------------------------------------------------------------------------


def test_payment_events_carry_the_signature_of_the_shared_key_and_none_without_it(monkeypatch):
    from types import SimpleNamespace

    from payment.domain.events import PaymentSucceeded
    from payment.messagebus import EVENT_KEY, record_in_outbox
    from portal_shared.event_signing import HEADER, verify
    from portal_shared.testing.memory import FakeOutbox

    event = PaymentSucceeded(txn_ref="P1", dossier_code=DOSSIER, amount=200_000, gateway="vnpay",
                             gateway_txn_no="14000000", paid_at=NOW)
    monkeypatch.setenv(EVENT_KEY, "unit-test-payment-event-key-0123456789")
    uow = SimpleNamespace(outbox=FakeOutbox(SimpleNamespace(outbox=[])))
    record_in_outbox(event, uow)
    [(kind, payload, _)] = uow.outbox._store.outbox
    signature = uow.outbox.headers[payload["event_id"]][HEADER]
    assert verify(b"unit-test-payment-event-key-0123456789", kind, payload, signature)
    monkeypatch.delenv(EVENT_KEY)
    uow = SimpleNamespace(outbox=FakeOutbox(SimpleNamespace(outbox=[])))
    record_in_outbox(event, uow)
    assert uow.outbox.headers == {}


# --- a charge learned from the dossier service ------------------------------------------------------


def test_a_charge_learned_before_its_event_is_what_the_event_then_finds(h):
    from payment.commands import LearnCharge

    h.bus.handle(LearnCharge(DOSSIER, 200_000, "Cấp Phiếu lý lịch tư pháp", "STP-HN", now=NOW))
    payment = h.start()
    assert (payment.amount, h.uow.charge(DOSSIER).status) == (200_000, ChargeStatus.due)
    h.announce()  # dossier's payment_requested event arrives afterwards
    assert (h.uow.charge(DOSSIER).status, h.uow.charge(DOSSIER).amount) == (ChargeStatus.due, 200_000)
    h.announce("withdrawn", fee=0)  # later events act on it as on any charge
    assert h.uow.charge(DOSSIER).status is ChargeStatus.cancelled
    h.bus.handle(LearnCharge(DOSSIER, 200_000, None, "STP-HN", now=NOW))  # a stale answer never revives it
    assert h.uow.charge(DOSSIER).status is ChargeStatus.cancelled
