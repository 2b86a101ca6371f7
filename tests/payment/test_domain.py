"""Payment rules without broker or database."""
import pytest

from payment.domain.model import (
    AlreadyPaid,
    InvalidPaymentTransition,
    NoPaymentDue,
    check_payable,
    check_transition,
    decide_success,
)


def test_only_a_due_charge_can_be_paid():
    check_payable("due")
    with pytest.raises(NoPaymentDue):
        check_payable(None)
    with pytest.raises(NoPaymentDue):
        check_payable("cancelled")
    with pytest.raises(AlreadyPaid):
        check_payable("paid")


def test_a_success_pays_the_charge_once_and_anything_else_is_refunded():
    assert decide_success("due", None, "P1").keep
    assert decide_success("paid", "P1", "P1").keep
    assert "P1" in decide_success("paid", "P1", "P2").refund_reason
    assert not decide_success("cancelled", None, "P2").keep
    assert not decide_success(None, None, "P2").keep


@pytest.mark.parametrize("old, new", [("failed", "succeeded"), ("refunded", "succeeded"), ("succeeded", "failed"),
                                      ("pending", "refunded"), ("expired", "failed")])
def test_forbidden_transitions(old, new):
    with pytest.raises(InvalidPaymentTransition):
        check_transition(old, new)
