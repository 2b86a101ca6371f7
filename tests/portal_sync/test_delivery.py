"""A dossier's life reaches the fake national portal in order, whatever the adapter does meanwhile."""
import uuid

from portal_shared.timeutil import isoformat, utcnow
from tests.helpers import rpc_proxy, wait_for
from tests.payment.conftest import vnpay_ipn

RETURN_URL = "https://dichvucong.example.vn/thanh-toan/ket-qua"


def act(config, code, action, who, note=None):
    """``act_on_dossier`` as the officer ``who``: the history (and so the portal) names the token's subject."""
    with rpc_proxy(config, sub=who) as rpc:
        return rpc.dossier.act_on_dossier(code, action, who, note)


def pay(payment_config, fake_vnpay, code):
    """The citizen pays the fee through (fake) VNPay; the real payment service confirms it."""
    with rpc_proxy(payment_config) as rpc:
        payment = rpc.payment.start_payment(code, "vnpay", RETURN_URL, "203.0.113.7")
    fake_vnpay.visit(payment["pay_url"])
    assert vnpay_ipn(payment_config, fake_vnpay.pay(payment["txn_ref"]))["RspCode"] == "00"


def test_a_dossiers_whole_life_reaches_the_portal_in_order(dossier_service, start_sync, national_portal, rabbit_config,
                                                            payment_container, payment_config, payment_db, fake_vnpay,
                                                            applicant):
    start_sync()
    with rpc_proxy(rabbit_config) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", applicant, {"so_ban": 2, "muc_dich": "xin việc"})["code"]
        act(rabbit_config, code, "accept", "can-bo-mot-cua")
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "6"], timeout=15, message="the first three steps")
        wait_for(lambda: payment_db.charge(code), message="the charge known to payment")
        pay(payment_config, fake_vnpay, code)
        wait_for(lambda: rpc.dossier.get_dossier(code)["status"] == "processing", timeout=15, message="the payment applied")
        act(rabbit_config, code, "request_supplement", "can-bo-xu-ly", "Thiếu bản sao CCCD")
        act(rabbit_config, code, "supplement", "cong-dan")
        act(rabbit_config, code, "finish", "can-bo-xu-ly")
        act(rabbit_config, code, "return_result", "can-bo-mot-cua")
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "6", "4", "5", "4", "9", "10"], timeout=20,
                 message="every step at the portal")
        wait_for(lambda: rpc.portal_sync.sync_stats()["synced"] == 1, timeout=10, message="the dossier synchronised")
        stats = rpc.portal_sync.sync_stats()
        dossier = rpc.dossier.get_dossier(code)

    assert stats == {"synced": 1, "pending": 0, "parked": 0, "oldest_pending_seconds": 0.0}
    assert national_portal.format_errors == []
    syncs = [call for call in national_portal.calls if call["service"] == "DongBoHoSoMC"]
    assert syncs[0]["isUpdating"] == "False" and all(call["isUpdating"] == "True" for call in syncs[1:])
    record = national_portal.dossiers[code]
    assert record["MaTTHC"] == "1.000001-mau" and record["MaLinhVuc"] == "LLTP"
    assert record["TrangThaiHoSo"] == "10"
    assert record["MaDoiTuong"] == applicant["id_number"] and record["ChuHoSo"] == applicant["full_name"]
    assert [fee["Gia"] for fee in record["DanhSachLePhi"]] == [200000]
    assert [item["NoiDungBoSung"] for item in record["DanhSachHoSoBoSung"]] == ["Thiếu bản sao CCCD"]
    assert record["DanhSachHoSoBoSung"][0]["NgayTiepNhanBoSung"] != ""
    returned_at = dossier["history"][-1]["at"]
    assert record["NgayTra"] == returned_at[:19].replace("-", "").replace("T", "").replace(":", "")
    progress = national_portal.progress[code]
    assert [entry["NguoiXuLy"] for entry in progress][-2:] == ["can-bo-xu-ly", "can-bo-mot-cua"]
    assert all(len(entry["ThoiDiemXuLy"]) == 14 for entry in progress)


def test_without_a_portal_url_changes_are_kept_and_sent_once_it_is_set(dossier_service, start_sync, national_portal,
                                                                       rabbit_config, applicant):
    unconfigured = start_sync(NATIONAL_PORTAL_URL="")
    with rpc_proxy(rabbit_config) as rpc:
        code = rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"]
        rpc.dossier.act_on_dossier(code, "accept", "can-bo")
        rpc.dossier.act_on_dossier(code, "start", "can-bo")
        wait_for(lambda: rpc.portal_sync.sync_stats()["pending"] == 1, timeout=10, message="the change kept")
        unconfigured.stop()
        assert national_portal.calls == [] and national_portal.logins == 0

        start_sync()
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "4"], timeout=15,
                 message="the kept changes sent")
        wait_for(lambda: rpc.portal_sync.sync_stats()["synced"] == 1, timeout=10, message="synced")


def test_a_late_or_repeated_event_neither_repeats_nor_reorders_a_step(dossier_service, start_sync, national_portal,
                                                                      rabbit_config, applicant):
    from nameko.standalone.events import event_dispatcher

    import eventlet

    start_sync()
    with rpc_proxy(rabbit_config) as rpc:
        code = rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"]
        for action in ("accept", "start", "finish"):
            rpc.dossier.act_on_dossier(code, action, "can-bo")
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "4", "9"], timeout=15, message="delivered")
        late = {"event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), "dossier_code": code,
                "old_status": "submitted", "new_status": "accepted", "status_code": 2}
        dispatch = event_dispatcher(rabbit_config)
        dispatch("dossier", "dossier_status_changed", late)  # an old change arriving late...
        dispatch("dossier", "dossier_status_changed", late)  # ...and redelivered
        calls = len(national_portal.calls)
        wait_for(lambda: len(national_portal.calls) > calls, timeout=10, message="the record refreshed")
        eventlet.sleep(1.0)
        rpc.dossier.act_on_dossier(code, "return_result", "can-bo")
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "4", "9", "10"], timeout=15,
                 message="the last step")
    assert national_portal.dossiers[code]["TrangThaiHoSo"] == "10"
    updates = [call for call in national_portal.calls if call["service"] == "DongBoHoSoMC"]
    assert all(item["TrangThaiHoSo"] in ("1", "2", "4", "9", "10") for call in updates for item in call["data"])
    assert [item["TrangThaiHoSo"] for call in updates for item in call["data"]] == sorted(
        [item["TrangThaiHoSo"] for call in updates for item in call["data"]], key=int)  # never backwards


def test_changes_arriving_together_reach_the_portal_in_one_call(dossier_service, start_sync, national_portal,
                                                                 rabbit_config, applicant):
    # no timer round: only the events wake the loop, and each wake-up first lets 1 s of changes gather
    start_sync(PORTAL_SYNC_TICK_SECONDS=30, PORTAL_SYNC_GATHER_SECONDS=1.0)
    with rpc_proxy(rabbit_config) as rpc:
        codes = [rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"] for _ in range(5)]
    wait_for(lambda: all(national_portal.statuses(code) == ["1"] for code in codes), timeout=15,
             message="the five new dossiers at the portal")
    syncs = [call for call in national_portal.calls if call["service"] == "DongBoHoSoMC"]
    assert [sorted(record["MaHoSo"] for record in call["data"]) for call in syncs] == [sorted(codes)]
