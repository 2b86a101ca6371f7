"""A dossier's life reaches the fake national portal in order, whatever the adapter does meanwhile."""
import uuid

from portal_shared.timeutil import isoformat, utcnow
from tests.helpers import rpc_proxy, wait_for


def paid(dispatch_payment_event, code, amount=200000):
    dispatch_payment_event("payment_succeeded", {
        "event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), "txn_ref": f"T{uuid.uuid4().hex[:12]}",
        "dossier_code": code, "amount": amount, "gateway": "vnpay", "gateway_txn_no": "14123456",
        "paid_at": isoformat(utcnow()),
    })


def test_a_dossiers_whole_life_reaches_the_portal_in_order(dossier_service, start_sync, national_portal, rabbit_config,
                                                            dispatch_payment_event, applicant):
    start_sync()
    with rpc_proxy(rabbit_config) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", applicant, {"so_ban": 2, "muc_dich": "xin việc"})["code"]
        rpc.dossier.act_on_dossier(code, "accept", "can-bo-mot-cua")
        wait_for(lambda: national_portal.statuses(code) == ["1", "2", "6"], timeout=15, message="the first three steps")
        paid(dispatch_payment_event, code)
        wait_for(lambda: rpc.dossier.get_dossier(code)["status"] == "processing", timeout=15, message="the payment applied")
        rpc.dossier.act_on_dossier(code, "request_supplement", "can-bo-xu-ly", "Thiếu bản sao CCCD")
        rpc.dossier.act_on_dossier(code, "supplement", "cong-dan")
        rpc.dossier.act_on_dossier(code, "finish", "can-bo-xu-ly")
        rpc.dossier.act_on_dossier(code, "return_result", "can-bo-mot-cua")
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
