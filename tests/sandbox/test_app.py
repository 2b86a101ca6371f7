"""``python -m sandbox``'s app: every fake is mounted, with the sandbox's own procedure data."""
import json

import pytest
from werkzeug.test import Client

from sandbox.app import SandboxApp
from sandbox.config import DUMMY, Settings
from sandbox.national_portal import ProceduresFileError, national_procedures
from sandbox.store import Store
from tests import wire_vectors as v


@pytest.fixture
def sandbox():
    return Client(SandboxApp(Settings.from_env({}), Store()))


def test_every_provider_s_path_reaches_its_fake(sandbox):
    assert sandbox.get("/healthz").json == {"status": "ok"}
    assert sandbox.get("/paymentv2/vpcpay.html?vnp_TxnRef=X&vnp_SecureHash=00").status_code == 400
    assert sandbox.post("/merchant_webapi/api/transaction", json={"vnp_Command": "querydr"}).json[
        "vnp_ResponseCode"] == "97"
    for path in ("/v2/gateway/api/create", "/v2/gateway/api/query", "/v2/gateway/api/refund"):
        assert sandbox.post(path, json={"partnerCode": DUMMY["MOMO_PARTNER_CODE"]}).json["resultCode"] == 11
    esms = {**v.ESMS_SEND, "ApiKey": DUMMY["ESMS_API_KEY"], "SecretKey": DUMMY["ESMS_SECRET_KEY"],
            "Brandname": DUMMY["ESMS_BRANDNAME"], "CallbackUrl": ""}
    assert sandbox.post(v.ESMS_PATH, json=esms).json["CodeResult"] == "100"
    speedsms = {**v.SPEEDSMS_SEND, "sender": DUMMY["SPEEDSMS_SENDER"]}
    answer = sandbox.post(v.SPEEDSMS_PATH, json=speedsms, auth=(DUMMY["SPEEDSMS_ACCESS_TOKEN"], "x")).json
    assert answer["status"] == "success"
    assert [message["provider"] for message in sandbox.get("/outbox.json").json["messages"]] == ["speedsms", "esms"]
    login = sandbox.post("/api/login", json={"username": DUMMY["NATIONAL_PORTAL_USERNAME"],
                                             "password": DUMMY["NATIONAL_PORTAL_PASSWORD"]}).json
    catalogue = sandbox.post("/api/integration", json={
        "session": login["session"], "madonvi": DUMMY["NATIONAL_PORTAL_AGENCY_CODE"], "service": "LayThuTuc",
        "maTTHC": "1.000001-mau"}).json
    assert catalogue["result"][0]["TENTTHC"] == "Cấp Phiếu lý lịch tư pháp"


def test_a_poller_asks_the_outbox_for_the_messages_newer_than_the_last_it_saw():
    store = Store()
    sandbox = Client(SandboxApp(Settings.from_env({}), store))
    first = store.add_message("sms", "esms", "84912345678", "một")
    store.add_message("email", "smtp", "a@example.vn", None)
    third = store.add_message("sms", "esms", "84912345679", "hai")
    assert [m["id"] for m in sandbox.get("/outbox.json?channel=sms&after=0").json["messages"]] == [third["id"],
                                                                                                   first["id"]]
    assert [m["id"] for m in sandbox.get(f"/outbox.json?channel=sms&after={first['id']}").json["messages"]] == [
        third["id"]]
    assert sandbox.get(f"/outbox.json?after={third['id']}").json["messages"] == []
    refused = sandbox.get("/outbox.json?after=last")
    assert refused.status_code == 400 and "after" in refused.json["error"]


def test_sms_faults_are_scripted_and_cleared_through_the_sandbox(sandbox):
    planned = sandbox.post("/_sandbox/faults", json={"provider": "esms", "code": "http_500", "times": 2}).json
    assert planned["esms"] == ["http_500", "http_500"]
    assert sandbox.delete("/_sandbox/faults").json["esms"] == []


def test_the_sandbox_knows_every_national_code_of_the_sample_catalogue():
    from dossier.procedures import load_catalogue, parse_national_codes  # the test compares; the sandbox does not

    catalogue = load_catalogue(parse=parse_national_codes)
    national = national_procedures()
    for code, entry in catalogue.items():
        known = national[entry["national_code"] or code]
        assert (known["name"], known["field_code"], known["field_name"]) == (
            entry["name"], entry["field_code"], entry["field_name"])


def test_a_procedures_file_of_its_own_replaces_the_sample_and_a_bad_one_is_named(tmp_path):
    path = tmp_path / "national.json"
    path.write_text(json.dumps({"procedures": {"2.000001": {"name": "Thủ tục", "field_code": "X"}}}), "utf-8")
    assert national_procedures(str(path)) == {"2.000001": {"name": "Thủ tục", "field_code": "X", "field_name": ""}}
    path.write_text(json.dumps({"procedures": {"2.000001": {"field_code": "X"}}}), "utf-8")
    with pytest.raises(ProceduresFileError, match="2.000001"):
        national_procedures(str(path))
