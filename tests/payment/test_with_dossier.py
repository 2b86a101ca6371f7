"""The dossier and payment services together: a paid fee moves the dossier on."""
from dossier.service import DossierService
from tests.helpers import rpc_proxy, wait_for
from tests.helpers import free_port
from tests.payment.conftest import vnpay_ipn


def test_dossier_reaches_processing_after_its_ipn(container_factory, rabbit_config, fresh_database, payment_container,
                                                  payment_config, fake_vnpay, payment_db):
    dossier_database = fresh_database("dossier")
    dossier_database.truncate()
    dossier_config = {**rabbit_config, "DATABASE_URL": dossier_database.url,
                      "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}", "OUTBOX_SWEEP_SECONDS": 0.5,
                      "EVENT_RETRY_BACKOFF_SECONDS": 0.05}
    container_factory(DossierService, dossier_config).start()
    applicant = {"full_name": "Trần Thị Bình", "id_number": "079199001234", "phone": "0912345678",
                 "email": "binh.tran@example.vn"}
    with rpc_proxy(dossier_config) as rpc:
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant)
        dossier = rpc.dossier.act_on_dossier(dossier["code"], "accept", "can-bo-01")
        assert dossier["status"] == "payment_requested"
        code = dossier["code"]
        wait_for(lambda: payment_db.charge(code), message="charge from the dossier event")
        payment = rpc.payment.start_payment(code, "vnpay", "https://portal.example/return", "198.51.100.4")
        assert payment["amount"] == dossier["fee_amount"] == 200000
        fake_vnpay.visit(payment["pay_url"])
        assert vnpay_ipn(payment_config, fake_vnpay.pay(payment["txn_ref"]))["RspCode"] == "00"
        final = wait_for(lambda: (d := rpc.dossier.get_dossier(code))["status"] == "processing" and d,
                         message="dossier in processing")
        assert final["fee_paid"] is True
