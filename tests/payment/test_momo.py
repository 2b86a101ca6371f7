"""MoMo end to end against the fake MoMo: create, IPN answers."""
import hashlib
import hmac

import pytest
import requests
from nameko.exceptions import RemoteError

from tests.helpers import rpc_proxy
from tests.payment.conftest import momo_ipn
from tests.payment.test_vnpay import RETURN_URL, outbox_events, start


def test_create_request_is_signed_and_carries_the_contract_fields(payment_container, payment_config, announce,
                                                                  fake_momo):
    announce("DOSSIER-MOMO-1", fee_amount=135000)
    payment = start(payment_config, "DOSSIER-MOMO-1", gateway="momo")
    assert payment["pay_url"].startswith(fake_momo.base_url) and payment["status"] == "pending"
    sent = fake_momo.create_requests[-1]
    text = "&".join(f"{key}={value}" for key, value in [
        ("accessKey", fake_momo.access_key), ("amount", sent["amount"]), ("extraData", sent["extraData"]),
        ("ipnUrl", sent["ipnUrl"]), ("orderId", sent["orderId"]), ("orderInfo", sent["orderInfo"]),
        ("partnerCode", sent["partnerCode"]), ("redirectUrl", sent["redirectUrl"]),
        ("requestId", sent["requestId"]), ("requestType", sent["requestType"])])
    assert sent["signature"] == hmac.new(fake_momo.secret_key.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert sent["amount"] == 135000 and sent["orderId"] == payment["txn_ref"]
    assert sent["redirectUrl"] == RETURN_URL
    assert sent["ipnUrl"] == payment_config["PAYMENT_CALLBACK_BASE_URL"] + "/callbacks/momo/ipn"


def test_ipn_accepted_once_and_tampered_or_malformed_refused(payment_container, payment_config, announce, fake_momo,
                                                             payment_db, payment_database):
    announce("DOSSIER-MOMO-2", fee_amount=135000)
    payment = start(payment_config, "DOSSIER-MOMO-2", gateway="momo")
    txn_ref = payment["txn_ref"]
    body = fake_momo.pay(txn_ref)

    assert momo_ipn(payment_config, {**body, "amount": 1000}).status_code == 400
    assert momo_ipn(payment_config, {**body, "resultCode": 1006}).status_code == 400
    assert momo_ipn(payment_config, {k: v for k, v in body.items() if k != "signature"}).status_code == 400
    url = f"http://{payment_config['WEB_SERVER_ADDRESS']}/callbacks/momo/ipn"
    assert requests.post(url, data="{not json", timeout=10).status_code == 400
    assert requests.post(url, json=[1, 2], timeout=10).status_code == 400
    assert payment_db.payment(txn_ref)["status"] == "pending"
    assert len(payment_db.history(txn_ref)) == 1

    in_progress = fake_momo.pay(txn_ref, result_code=1000)
    assert momo_ipn(payment_config, in_progress).status_code == 204
    assert payment_db.payment(txn_ref)["status"] == "pending"

    body = fake_momo.pay(txn_ref)
    first = momo_ipn(payment_config, body)
    assert first.status_code == 204 and first.content == b""
    assert momo_ipn(payment_config, body).status_code == 204
    row = payment_db.payment(txn_ref)
    assert row["status"] == "succeeded" and row["gateway_txn_no"] == str(body["transId"])
    assert len(outbox_events(payment_database.engine, "payment_succeeded")) == 1


def test_momo_failure_ipn(payment_container, payment_config, announce, fake_momo, payment_db, payment_database):
    announce("DOSSIER-MOMO-3", fee_amount=135000)
    payment = start(payment_config, "DOSSIER-MOMO-3", gateway="momo")
    assert momo_ipn(payment_config, fake_momo.pay(payment["txn_ref"], result_code=1006)).status_code == 204
    assert payment_db.payment(payment["txn_ref"])["status"] == "failed"
    assert "1006" in outbox_events(payment_database.engine, "payment_failed")[0]["reason"]


def test_momo_amount_limits(payment_container, payment_config, announce):
    announce("DOSSIER-MOMO-4", fee_amount=500)
    with rpc_proxy(payment_config) as rpc:
        with pytest.raises(RemoteError) as error:
            rpc.payment.start_payment("DOSSIER-MOMO-4", "momo", RETURN_URL, "203.0.113.7")
    assert error.value.exc_type == "ValidationError" and "gateway" in error.value.value


def test_absurd_bodies_are_400_never_500(payment_container, payment_config, announce, fake_momo, payment_db):
    announce("DOSSIER-MOMO-5", fee_amount=135000)
    payment = start(payment_config, "DOSSIER-MOMO-5", gateway="momo")
    url = f"http://{payment_config['WEB_SERVER_ADDRESS']}/callbacks/momo/ipn"
    assert requests.post(url, data="[" * 100000, timeout=10).status_code in (400, 413)  # above the 64 KiB limit
    assert requests.post(url, data="[" * 60000, timeout=10).status_code == 400
    assert requests.post(url, data=b"\xff\xfe{", timeout=10).status_code == 400
    forged = {**fake_momo.pay(payment["txn_ref"]), "signature": "chữ ký"}
    assert momo_ipn(payment_config, forged).status_code == 400
    assert payment_db.payment(payment["txn_ref"])["status"] == "pending"
