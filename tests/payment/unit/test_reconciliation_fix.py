"""Reconciliation's fix step on a fake unit of work: what the file and the gateway confirm goes through the aggregate."""
from datetime import datetime, timedelta, timezone

from payment.domain.model import Charge, ChargeStatus, Payment, Source, Status
from payment.domain.events import PaymentSucceeded, RefundRequired
from payment.reconciliation.fixing import ConfirmedSuccess, settle_confirmed
from tests.payment.unit.fakes import FakeUnitOfWork

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
PAID_AT = datetime(2026, 11, 25, 2, 15, 30, tzinfo=timezone.utc)


def stored(uow, txn_ref, status=Status.pending, dossier_code=None, charge=ChargeStatus.due, paid_by=None):
    """A payment (and its dossier's charge) as committed before the run; returns its id."""
    dossier_code = dossier_code or f"D-{txn_ref}"
    created = NOW - timedelta(days=1)
    with uow:
        if charge is not None and uow.charges.get_for_update(dossier_code) is None:
            uow.charges.add_if_missing(Charge(dossier_code, 150_000, charge, paid_txn_ref=paid_by,
                                              created_at=created, updated_at=created))
        payment = Payment(txn_ref=txn_ref, dossier_code=dossier_code, amount=150_000, gateway="vnpay", status=status,
                          created_at=created, expires_at=created + timedelta(minutes=15), updated_at=created)
        uow.payments.add(payment)
        uow.commit()
    return payment.id


def success(payment_id, line=2):
    return ConfirmedSuccess(payment_id, line, "900002", PAID_AT)


def run(uow, *successes):
    with uow:
        findings = settle_confirmed(uow, list(successes), run_id=7, source="vnpay.csv", now=NOW)
        uow.commit()
    return findings


def test_a_confirmed_pending_payment_succeeds_pays_its_charge_and_records_one_event():
    uow = FakeUnitOfWork()
    payment_id = stored(uow, "PPENDING")

    [finding] = run(uow, success(payment_id, line=3))

    payment = uow.payment("PPENDING")
    assert (payment.status, payment.gateway_txn_no, payment.paid_at) == (Status.succeeded, "900002", PAID_AT)
    assert (uow.charge("D-PPENDING").status, uow.charge("D-PPENDING").paid_txn_ref) == (ChargeStatus.paid, "PPENDING")
    [entry] = uow.history("PPENDING")
    assert (entry.old_status, entry.new_status, entry.source) == (Status.pending, Status.succeeded, Source.reconciliation)
    assert entry.evidence == {"run_id": 7, "file": "vnpay.csv", "line": 3, "gateway_txn_no": "900002",
                              "amount": 150_000, "paid_at": "2026-11-25T09:15:30+07:00"}
    assert [payload["txn_ref"] for _, payload in uow.events("payment_succeeded")] == ["PPENDING"]
    assert finding == {
        "run_id": 7, "outcome": "fixed", "line": 3, "txn_ref": "PPENDING", "dossier_code": "D-PPENDING",
        "gateway_txn_no": "900002", "local_status": "pending", "gateway_status": "success", "local_amount": 150_000,
        "gateway_amount": 150_000, "paid_at": PAID_AT, "reason": None,
    }
    assert [type(event) for event in uow.collect_new_events()] == [PaymentSucceeded]


def test_an_expired_payment_is_fixed_too():
    uow = FakeUnitOfWork()
    payment_id = stored(uow, "PEXPIRED", status=Status.expired)
    [finding] = run(uow, success(payment_id))
    assert finding["local_status"] == "expired"
    assert uow.payment("PEXPIRED").status is Status.succeeded


def test_a_payment_settled_meanwhile_is_left_as_it_is():
    uow = FakeUnitOfWork()
    failed_id = stored(uow, "PFAILED", status=Status.failed)
    succeeded_id = stored(uow, "PIPN", status=Status.succeeded, charge=ChargeStatus.paid, paid_by="PIPN")

    assert run(uow, success(failed_id), success(succeeded_id, line=3)) == []
    assert uow.payment("PFAILED").status is Status.failed
    assert uow.history("PFAILED") == uow.history("PIPN") == []
    assert uow.events() == []


def test_a_success_for_a_dossier_paid_by_another_payment_is_queued_for_refund():
    uow = FakeUnitOfWork()
    stored(uow, "PFIRST", status=Status.succeeded, dossier_code="D-1", charge=ChargeStatus.paid, paid_by="PFIRST")
    second_id = stored(uow, "PSECOND", status=Status.expired, dossier_code="D-1")

    [finding] = run(uow, success(second_id))

    assert finding["reason"] == "to be refunded: dossier already paid by PFIRST"
    assert uow.payment("PSECOND").status is Status.refund_pending
    assert uow.charge("D-1").paid_txn_ref == "PFIRST"
    assert [(e.old_status, e.new_status) for e in uow.history("PSECOND")] == [
        (Status.expired, Status.succeeded), (Status.succeeded, Status.refund_pending)]
    assert [payload["txn_ref"] for _, payload in uow.events("payment_succeeded")] == ["PSECOND"]
    assert [type(event) for event in uow.collect_new_events()] == [PaymentSucceeded, RefundRequired]


def test_a_payment_without_a_charge_is_queued_for_refund():
    uow = FakeUnitOfWork()
    payment_id = stored(uow, "PNOFEE", charge=None)
    [finding] = run(uow, success(payment_id))
    assert finding["reason"] == "to be refunded: no fee due for this dossier"
    assert uow.payment("PNOFEE").status is Status.refund_pending


def test_what_is_flushed_is_stored_only_when_the_transaction_commits():
    uow = FakeUnitOfWork()
    payment_id = stored(uow, "PPENDING")
    with uow:
        settle_confirmed(uow, [success(payment_id)], run_id=7, source="vnpay.csv", now=NOW)
        # the run fails later (leaves the block without committing): nothing of it remains
    assert uow.payment("PPENDING").status is Status.pending
    assert uow.events() == [] and uow.history("PPENDING") == []
    assert uow.collect_new_events() == []
