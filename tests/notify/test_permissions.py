"""Notify's side of CONTRACT section 5, and notify calling dossier with its own service token."""
import uuid

import pytest
import sqlalchemy as sa
from nameko.exceptions import RemoteError
from nameko.standalone.events import event_dispatcher

from dossier.service import DossierService
from tests.helpers import free_port, rpc_proxy, wait_for

APPLICANT = {"full_name": "Lê Thị Cúc", "id_number": "079199005678", "phone": "0987654321"}


def refused(call, exc_type):
    with pytest.raises(RemoteError) as error:
        call()
    assert error.value.exc_type == exc_type, error.value


@pytest.fixture
def dossier_code(container_factory, rabbit_config, fresh_database, notify_container, notify_database):
    database = fresh_database("dossier")
    database.truncate()
    config = {**rabbit_config, "DATABASE_URL": database.url, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
              "OUTBOX_SWEEP_SECONDS": 0.5}
    container_factory(DossierService, config).start()
    with rpc_proxy(config, role="officer", agencies=["STP-HN"]) as rpc:
        return rpc.dossier.submit_dossier("LLTP-01", APPLICANT)["code"]


def test_only_operators_send_and_officers_read_their_agency_s_notifications(notify_config, dossier_code, esms):
    args = ("sms", "0987654321", "processed", {"dossier_code": dossier_code, "procedure_name": "X"}, dossier_code)
    for role, claims in (("officer", {}), ("finance", {}), ("service", {}),
                         ("citizen", {"id_number": APPLICANT["id_number"]})):
        with rpc_proxy(notify_config, role=role, **claims) as rpc:
            refused(lambda: rpc.notify.send_notification(*args), "Forbidden")
    with rpc_proxy(notify_config, token=None) as rpc:
        refused(lambda: rpc.notify.send_notification(*args), "Unauthorized")
    assert esms.requests == []
    with rpc_proxy(notify_config, role="operator") as rpc:
        sent = rpc.notify.send_notification(*args)
    with rpc_proxy(notify_config, role="officer", agencies=["STP-HN"]) as rpc:
        assert sent["id"] in {row["id"] for row in rpc.notify.get_notifications(dossier_code)}
    with rpc_proxy(notify_config, role="officer", agencies=["CA-HN"]) as rpc:
        refused(lambda: rpc.notify.get_notifications(dossier_code), "Forbidden")
    with rpc_proxy(notify_config, role="citizen", id_number=APPLICANT["id_number"]) as rpc:
        refused(lambda: rpc.notify.get_notifications(dossier_code), "Forbidden")


def test_a_payment_event_for_an_unknown_contact_asks_dossier_with_notify_s_service_token(
        notify_config, notify_database, dossier_code, esms, rabbit_config):
    wait_for(lambda: _contact(notify_database, dossier_code), message="contact learnt from the submission")
    with notify_database.engine.begin() as connection:
        connection.execute(sa.text("DELETE FROM dossier_contacts"))
    dispatch = event_dispatcher(rabbit_config)
    dispatch("payment", "payment_succeeded", {
        "event_id": str(uuid.uuid4()), "occurred_at": "2026-12-04T10:00:00+07:00", "txn_ref": "P2612040001AB",
        "dossier_code": dossier_code, "amount": 200000, "gateway": "vnpay", "gateway_txn_no": "1",
        "paid_at": "2026-12-04T10:00:00+07:00"})
    wait_for(lambda: [m for m in esms.delivered if dossier_code in m["content"]], timeout=20, message="receipt SMS")


def _contact(database, code):
    with database.engine.connect() as connection:
        return connection.execute(sa.text("SELECT 1 FROM dossier_contacts WHERE dossier_code = :c"),
                                  {"c": code}).first()
