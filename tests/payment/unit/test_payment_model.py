"""The Payment aggregate without broker or database: every transition, allowed and refused."""
from datetime import datetime, timedelta, timezone

import pytest

from payment.domain.events import PaymentFailed, PaymentRefunded, PaymentSucceeded, RefundRequired
from payment.domain.model import (
    TRANSITIONS,
    AlreadyPaid,
    Charge,
    ChargeStatus,
    InvalidPaymentTransition,
    NoPaymentDue,
    Notification,
    Outcome,
    Payment,
    Source,
    Status,
)
from payment.gateways import PaymentReport, RefundResult

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
LATER = NOW + timedelta(minutes=20)  # past the 15 minutes of a payment started at NOW


def due_charge(dossier_code="STP-HN-261126-ABCDEF", amount=200_000):
    return Charge(dossier_code, amount, ChargeStatus.due)


def payment_in(status, charge=None, txn_ref="P261126T090000ABCDEFGHJK"):
    charge = charge or due_charge()
    payment = Payment.start(txn_ref, due_charge(charge.dossier_code, charge.amount), "vnpay", "203.0.113.7", NOW,
                            NOW + timedelta(minutes=15))
    payment.status, payment.charge = status, charge
    payment.history.clear()
    return payment


def success(txn_ref="P261126T090000ABCDEFGHJK"):
    return PaymentReport(txn_ref, Outcome.succeeded, 200_000, "14000000", NOW + timedelta(minutes=1), raw={"k": "v"})


def do(action, payment):
    """Each action of ``TRANSITIONS`` through the aggregate's public method that performs it."""
    if action == "succeed":
        return payment.settle(success(), Source.ipn, LATER)
    if action == "fail":
        return payment.fail("customer cancelled", Source.ipn, LATER)
    if action == "expire":
        return payment.expire(LATER)
    if action == "queue_refund":
        return payment.queue_refund("dossier withdrawn", LATER)
    if action == "refund":
        return payment.refund_accepted(RefundResult(True, raw={"ok": 1}), 1, LATER)
    raise AssertionError(action)


EVENTS = {
    "succeed": [PaymentSucceeded],
    "fail": [PaymentFailed],
    "expire": [],
    "queue_refund": [RefundRequired],
    "refund": [PaymentRefunded],
}
ALLOWED = [(action, source) for action, (sources, _) in TRANSITIONS.items() for source in sources]
FORBIDDEN = [(action, source) for action, (sources, _) in TRANSITIONS.items() for source in Status
             if source not in sources]


@pytest.mark.parametrize("action,source", ALLOWED, ids=[f"{a}-from-{s.value}" for a, s in ALLOWED])
def test_each_allowed_transition_changes_status_records_history_and_its_event(action, source):
    payment = payment_in(source)
    do(action, payment)
    target = TRANSITIONS[action][1]
    assert payment.status is target
    assert [(entry.old_status, entry.new_status) for entry in payment.history] == [(source, target)]
    assert [type(event) for event in payment.events] == EVENTS[action]


@pytest.mark.parametrize("action,source", FORBIDDEN, ids=[f"{a}-from-{s.value}" for a, s in FORBIDDEN])
def test_every_other_transition_is_refused_and_changes_nothing(action, source):
    payment = payment_in(source)
    if action == "succeed":  # a gateway repeating itself is no error: the answer is just not applied
        assert payment.settle(success(), Source.ipn, LATER) is False
    else:
        with pytest.raises(InvalidPaymentTransition):
            do(action, payment)
    assert payment.status is source and payment.history == [] and payment.events == []


def test_a_new_payment_is_pending_with_its_creation_in_the_history():
    payment = Payment.start("P1", due_charge(), "momo", "203.0.113.7", NOW, NOW + timedelta(minutes=15))
    assert (payment.status, payment.amount, payment.dossier_code) == (Status.pending, 200_000, "STP-HN-261126-ABCDEF")
    assert [(e.old_status, e.new_status, e.source) for e in payment.history] == [(None, Status.pending, Source.create)]


@pytest.mark.parametrize("status,error", [(ChargeStatus.cancelled, NoPaymentDue), (ChargeStatus.paid, AlreadyPaid)])
def test_only_a_due_charge_can_be_paid(status, error):
    with pytest.raises(error):
        Payment.start("P1", Charge("D1", 1000, status), "vnpay", None, NOW, LATER)


def test_a_success_pays_the_charge_and_records_the_gateway_evidence():
    payment = payment_in(Status.pending)
    assert payment.settle(success(), Source.ipn, LATER)
    assert (payment.charge.status, payment.charge.paid_txn_ref) == (ChargeStatus.paid, payment.txn_ref)
    assert (payment.gateway_txn_no, payment.paid_at) == ("14000000", NOW + timedelta(minutes=1))
    assert payment.history[-1].evidence == {"gateway_answer": {"k": "v"}}
    assert payment.events == [PaymentSucceeded(payment.txn_ref, payment.dossier_code, 200_000, "vnpay", "14000000",
                                               NOW + timedelta(minutes=1))]


@pytest.mark.parametrize("charge,reason", [
    (Charge("STP-HN-261126-ABCDEF", 200_000, ChargeStatus.paid, paid_txn_ref="POTHER"), "already paid by POTHER"),
    (Charge("STP-HN-261126-ABCDEF", 200_000, ChargeStatus.cancelled), "dossier closed before payment"),
    (None, "no fee due"),
])
def test_a_success_that_cannot_be_kept_is_recorded_then_queued_for_refund(charge, reason):
    payment = payment_in(Status.pending)
    payment.charge = charge
    assert payment.settle(success(), Source.ipn, LATER)
    assert [entry.new_status for entry in payment.history] == [Status.succeeded, Status.refund_pending]
    assert [type(event) for event in payment.events] == [PaymentSucceeded, RefundRequired]
    assert reason in payment.refund_reason and reason in payment.events[-1].reason
    assert charge is None or charge.paid_txn_ref != payment.txn_ref


def test_the_same_payment_confirmed_twice_keeps_its_charge():
    charge = Charge("STP-HN-261126-ABCDEF", 200_000, ChargeStatus.paid, paid_txn_ref="P261126T090000ABCDEFGHJK")
    payment = payment_in(Status.expired, charge)
    payment.settle(success(), Source.reconciliation, LATER)
    assert payment.status is Status.succeeded


def test_a_failure_of_an_expired_payment_changes_nothing():
    payment = payment_in(Status.expired)
    failure = PaymentReport(payment.txn_ref, Outcome.failed, 200_000, reason="24: customer cancelled")
    assert payment.settle(failure, Source.query, LATER) is False
    assert payment.status is Status.expired and payment.events == []


def test_a_pending_answer_changes_nothing():
    payment = payment_in(Status.pending)
    assert payment.settle(PaymentReport(payment.txn_ref, Outcome.pending), Source.query, LATER) is False
    assert payment.history == []


def test_a_payment_expires_only_once_its_time_is_up():
    payment = payment_in(Status.pending)
    assert payment.expire(NOW + timedelta(minutes=14)) is False and payment.status is Status.pending
    assert payment.expire(LATER, {"error": "unreachable"}) is True
    assert payment.history[-1].evidence == {"error": "unreachable"} and payment.history[-1].source is Source.expiry


def test_refund_attempts_are_numbered_and_one_in_flight_is_not_sent_twice():
    payment = payment_in(Status.refund_pending)
    lease = timedelta(minutes=2)
    assert payment.claim_refund_attempt(LATER, lease) == 1
    assert payment.claim_refund_attempt(LATER + timedelta(seconds=30), lease) is None  # still in flight
    payment.refund_refused("insufficient merchant balance", LATER + timedelta(minutes=1))
    assert payment.status is Status.refund_pending and payment.refund_error == "insufficient merchant balance"
    assert payment.claim_refund_attempt(LATER + timedelta(minutes=1), lease) == 2
    assert payment.claim_refund_attempt(LATER + timedelta(minutes=4), lease) == 3  # the lease ran out: a crash


def test_a_refund_can_be_refused_only_while_one_is_pending():
    with pytest.raises(InvalidPaymentTransition):
        payment_in(Status.succeeded).refund_refused("no", LATER)
    assert payment_in(Status.succeeded).claim_refund_attempt(LATER, timedelta(minutes=2)) is None


def test_an_accepted_refund_keeps_the_attempt_and_the_gateway_answer():
    payment = payment_in(Status.refund_pending)
    payment.refund_accepted(RefundResult(True, raw={"vnp_ResponseCode": "00"}), 2, LATER)
    assert (payment.refund_attempts, payment.refunded_at, payment.refund_error) == (2, LATER, None)
    assert payment.history[-1].evidence == {"gateway_answer": {"vnp_ResponseCode": "00"}, "attempt": 2}


@pytest.mark.parametrize("status,amount,outcome,expected", [
    (None, None, Outcome.succeeded, Notification.unknown),
    (Status.pending, 99, Outcome.succeeded, Notification.amount_mismatch),
    (Status.pending, 100, Outcome.failed, Notification.apply),
    (Status.expired, 100, Outcome.succeeded, Notification.apply),
    (Status.expired, 100, Outcome.failed, Notification.already_confirmed),
    (Status.succeeded, 100, Outcome.succeeded, Notification.already_confirmed),
])
def test_a_notification_is_judged_in_vnpays_order_of_checks(status, amount, outcome, expected):
    from payment.domain.model import judge_notification

    assert judge_notification(status.value if status else None, 100, amount, outcome) is expected
