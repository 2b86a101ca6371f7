"""Through the real Procfile processes: a paid dossier's whole life as the national portal sees it."""
import pytest
import requests

from tests.e2e.conftest import AVAILABLE, requires_payment
from tests.e2e.test_flows import act, assert_paid_once, click, start_paid_dossier, start_payment, wait_for

requires_portal_sync = pytest.mark.skipif(not AVAILABLE["portal_sync"], reason="portal_sync not importable")


@requires_portal_sync
@requires_payment
def test_the_national_portal_sees_a_paid_dossier_in_order_with_its_fee(stack, rpc):
    code = start_paid_dossier(stack, rpc)
    payment = start_payment(stack, rpc, code, "vnpay")
    click(stack, payment["pay_url"])
    assert_paid_once(stack, rpc, code, payment["txn_ref"])
    act(rpc, code, "finish")
    act(rpc, code, "return_result")

    def delivered():
        view = stack.national_portal()
        steps = [entry["TrangThai"] for entry in view["progress"].get(code, [])]
        record = view["dossiers"].get(code) or {}
        return steps == ["1", "2", "6", "4", "9", "10"] and record.get("DanhSachLePhi") and view

    view = wait_for(stack, delivered, 30, f"{code} at the national portal")
    record = view["dossiers"][code]
    assert record["TrangThaiHoSo"] == "10" and record["MaTTHC"] == "1.000001-mau"
    assert [fee["Gia"] for fee in record["DanhSachLePhi"]] == [200000]
    assert record["DanhSachLePhi"][0]["MaPhiLePhi"] == payment["txn_ref"]
    assert view["format_errors"] == [] and view["rejected"] == []
    stats = wait_for(stack, lambda: (s := rpc.portal_sync.sync_stats())["pending"] == 0 and s, 10, "nothing pending")
    assert stats["parked"] == 0 and stats["synced"] >= 1
    page = requests.get(f"{stack.sandbox_url}/outbox", timeout=5).text
    assert code in page and "Cổng DVC quốc gia" in page
    metrics = requests.get(f"{stack.url('portal_sync')}/metrics", timeout=5).text
    assert 'portal_sync_dossiers{state="synced"}' in metrics and "portal_sync_oldest_pending_seconds" in metrics


@requires_portal_sync
@requires_payment
def test_the_demo_shows_the_national_portals_view_of_its_dossier(stack):
    import os
    import subprocess
    import sys

    if stack.replicas != 1:
        pytest.skip("the demo runs once, against one process per service")
    env = {**os.environ, "AMQP_URI": stack.amqp_uri, "SANDBOX_URL": stack.sandbox_url}
    demo = subprocess.run([sys.executable, "-m", "sandbox.demo"], env=env, capture_output=True, text=True,
                          timeout=180)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    out = demo.stdout
    print(out)  # shown with pytest -s: what `make demo` prints
    assert "The national portal's view" in out, out[-3000:]
    view = out.split("The national portal's view", 1)[1]
    assert "TrangThaiHoSo 10" in view and "MaTTHC 1.000001-mau" in view
    assert "200000 đ" in view
    assert [line.split("TrangThai", 1)[1].split()[0] for line in view.splitlines() if "  TrangThai " in line] == [
        "1", "2", "6", "4", "9", "10"]
