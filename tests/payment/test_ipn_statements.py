"""The IPN hot path against the real PostgreSQL: one transaction, at most four statements.

Every statement the payment service's engine sends while its ``vnpay_ipn`` worker runs is counted with
a ``before_cursor_execute`` listener (the worker's entrypoint is in its log context), and so are the
transactions it commits; the relay and the timer, on other green threads, are not counted.
"""
import pytest
import sqlalchemy as sa
import structlog
from nameko.testing.utils import get_extension

from portal_shared.extensions.database import Database
from tests.helpers import rpc_proxy
from tests.payment.conftest import vnpay_ipn

RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"


class IpnStatements:
    def __init__(self, engine):
        self.engine = engine
        self.statements, self.commits, self.rollbacks = [], 0, 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._rollback)

    @staticmethod
    def _in_ipn():
        return structlog.contextvars.get_contextvars().get("entrypoint") == "vnpay_ipn"

    def _statement(self, conn, cursor, statement, parameters, context, executemany):
        if self._in_ipn():
            self.statements.append(statement)

    def _commit(self, conn):
        self.commits += self._in_ipn()

    def _rollback(self, conn):
        self.rollbacks += self._in_ipn()

    def reset(self):
        self.statements, self.commits, self.rollbacks = [], 0, 0

    def remove(self):
        sa.event.remove(self.engine, "before_cursor_execute", self._statement)
        sa.event.remove(self.engine, "commit", self._commit)
        sa.event.remove(self.engine, "rollback", self._rollback)


@pytest.fixture
def ipn_statements(payment_container):
    database = get_extension(payment_container, Database)
    counter = IpnStatements(database.engine)
    yield counter
    counter.remove()


def test_an_applied_ipn_is_one_transaction_of_at_most_four_statements(
        payment_container, payment_config, announce, fake_vnpay, payment_db, ipn_statements):
    announce("STP-HN-261204-STMT01", fee_amount=200000)
    with rpc_proxy(payment_config) as rpc:
        payment = rpc.payment.start_payment("STP-HN-261204-STMT01", "vnpay", RETURN_URL, "203.0.113.7")
    fake_vnpay.visit(payment["pay_url"])  # the citizen at the pay page, then paying
    params = fake_vnpay.pay(payment["txn_ref"])

    ipn_statements.reset()
    assert vnpay_ipn(payment_config, params)["RspCode"] == "00"
    statements = ipn_statements.statements
    assert len(statements) <= 4, statements
    assert ipn_statements.commits == 1
    assert "FOR UPDATE OF payments, charges" in statements[0]
    # and it did all it did before: status, history, charge, the event in the outbox
    assert payment_db.payment(payment["txn_ref"])["status"] == "succeeded"
    assert [row["new_status"] for row in payment_db.history(payment["txn_ref"])] == ["pending", "succeeded"]
    charge = payment_db.charge("STP-HN-261204-STMT01")
    assert charge["status"] == "paid" and charge["paid_txn_ref"] == payment["txn_ref"]
    assert sum("INSERT INTO outbox" in statement for statement in statements) == 1

    # the same IPN again: read under the lock, nothing written, nothing committed
    ipn_statements.reset()
    assert vnpay_ipn(payment_config, params)["RspCode"] == "02"
    assert len(ipn_statements.statements) == 1 and ipn_statements.commits == 0

    # an unknown order: the join finds nothing, the payment alone is looked for once more
    ipn_statements.reset()
    unknown = fake_vnpay.ipn_params(payment["txn_ref"], vnp_TxnRef="PUNKNOWN0000000001")
    assert vnpay_ipn(payment_config, unknown)["RspCode"] == "01"
    assert len(ipn_statements.statements) <= 2 and ipn_statements.commits == 0
