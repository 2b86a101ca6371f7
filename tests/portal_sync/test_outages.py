"""The adapter down, slow, expiring sessions or refusing a dossier: nothing lost, nothing repeated, order kept."""
import io
import json

from tests.helpers import rpc_proxy, wait_for

FREE = "KHAISINH-01"


def codes_of(history):
    numbers = {"submitted": "1", "accepted": "2", "processing": "4", "supplement_requested": "5", "processed": "9",
               "returned": "10", "stopped": "8"}
    return [numbers[entry["status"]] for entry in history]


def drive(rpc, code, actions):
    for action in actions:
        rpc.dossier.act_on_dossier(code, action, "can-bo", "ghi chú" if action == "request_supplement" else None)


def test_adapter_down_and_session_expired_then_back_everything_in_order_once(
        dossier_service, start_sync, national_portal, rabbit_config, applicant):
    start_sync()
    start_sync()  # two replicas: they share the work and never send one dossier at once
    with rpc_proxy(rabbit_config) as rpc:
        early = rpc.dossier.submit_dossier(FREE, applicant)["code"]
        wait_for(lambda: national_portal.statuses(early) == ["1"], message="the first dossier at the portal")
        logins_before = national_portal.logins

        national_portal.down()  # every request answers 503 until up()
        codes = [early] + [rpc.dossier.submit_dossier(FREE, applicant)["code"] for _ in range(5)]
        plans = [["accept", "start", "request_supplement", "supplement", "finish", "return_result"],
                 ["accept", "start", "finish"], ["accept", "stop"], ["accept"], ["accept", "start"], []]
        for code, actions in zip(codes, plans):
            drive(rpc, code, actions)
        wait_for(lambda: rpc.portal_sync.sync_stats()["pending"] == len(codes), timeout=15,
                 message="every changed dossier pending")
        eventlet_sleep(1.0)
        stats = rpc.portal_sync.sync_stats()
        assert stats["pending"] == len(codes) and stats["oldest_pending_seconds"] > 0
        assert national_portal.statuses(codes[1]) == []

        national_portal.expire_sessions()  # the token the replicas hold is no longer valid
        national_portal.hang(1)            # and the first request after the outage times out
        national_portal.down(0)
        histories = {code: rpc.dossier.get_dossier(code)["history"] for code in codes}
        for code in codes:
            wait_for(lambda: national_portal.statuses(code) == codes_of(histories[code]), timeout=30,
                     message=f"every step of {code}")
        wait_for(lambda: rpc.portal_sync.sync_stats()["synced"] == len(codes), timeout=10, message="all synced")

    assert national_portal.logins > logins_before  # logged in again after the session expired
    assert national_portal.format_errors == []
    for code in codes:
        assert national_portal.dossiers[code]["TrangThaiHoSo"] == codes_of(histories[code])[-1]
    # the backlog went out batched: one DongBoHoSoMC call carried several dossiers
    assert max(len(call["data"]) for call in national_portal.calls if call["service"] == "DongBoHoSoMC") > 1


def eventlet_sleep(seconds):
    import eventlet

    eventlet.sleep(seconds)


def test_a_refused_dossier_is_parked_with_the_answer_and_resent_by_the_command(
        dossier_service, start_sync, national_portal, rabbit_config, applicant, sync_database, monkeypatch):
    from portal_sync import cli

    start_sync()
    with rpc_proxy(rabbit_config) as rpc:
        refused = rpc.dossier.submit_dossier(FREE, applicant)["code"]
        national_portal.refuse(refused)
        fine = rpc.dossier.submit_dossier(FREE, applicant)["code"]
        rpc.dossier.act_on_dossier(refused, "accept", "can-bo")
        rpc.dossier.act_on_dossier(fine, "accept", "can-bo")
        wait_for(lambda: national_portal.statuses(fine) == ["1", "2"], message="the other dossier delivered")
        wait_for(lambda: rpc.portal_sync.sync_stats()["parked"] == 1, message="the refused dossier parked")
        assert refused not in national_portal.dossiers

        monkeypatch.setenv("PORTAL_SYNC_DATABASE_URL", sync_database.url)
        monkeypatch.setenv("AMQP_URI", rabbit_config["AMQP_URI"])
        out = io.StringIO()
        assert cli.main(["parked", "--json"], out=out) == 0
        parked = json.loads(out.getvalue())
        assert [item["dossier_code"] for item in parked] == [refused]
        assert parked[0]["answer"]["error_code"] == "99" and "MaTTHC" in parked[0]["answer"]["message"]

        rpc.dossier.act_on_dossier(refused, "start", "can-bo")  # changes while parked are kept
        eventlet_sleep(1.0)
        assert refused not in national_portal.dossiers

        national_portal.accept(refused)  # the operator had the procedure registered nationally
        out = io.StringIO()
        assert cli.main(["retry", refused], out=out) == 0
        assert refused in out.getvalue()
        wait_for(lambda: national_portal.statuses(refused) == ["1", "2", "4"], timeout=15,
                 message="the parked dossier delivered after the retry")
        wait_for(lambda: rpc.portal_sync.sync_stats() == {"synced": 2, "pending": 0, "parked": 0,
                                                          "oldest_pending_seconds": 0.0}, message="stats")
    assert national_portal.statuses(fine) == ["1", "2"]
    assert national_portal.format_errors == []


def test_drift_check_finds_and_fixes_what_the_portal_lost_or_shows_differently(
        dossier_service, start_sync, national_portal, rabbit_config, applicant, sync_database, monkeypatch, portal_settings):
    from portal_sync import cli

    start_sync()
    with rpc_proxy(rabbit_config) as rpc:
        lost, other, fine = (rpc.dossier.submit_dossier(FREE, applicant)["code"] for _ in range(3))
        for code in (lost, other, fine):
            drive(rpc, code, ["accept", "start"])
        for code in (lost, other, fine):
            wait_for(lambda: national_portal.statuses(code) == ["1", "2", "4"], message=f"{code} delivered")
        wait_for(lambda: rpc.portal_sync.sync_stats()["synced"] == 3, message="all synced")

    national_portal.lose(lost)
    national_portal.dossiers[other]["TrangThaiHoSo"] = "2"
    for name, value in {**portal_settings, "PORTAL_SYNC_DATABASE_URL": sync_database.url,
                        "AMQP_URI": rabbit_config["AMQP_URI"]}.items():
        monkeypatch.setenv(name, str(value))
    out = io.StringIO()
    assert cli.main(["drift", "--all", "--no-progress"], out=out) == 0
    report = out.getvalue()
    assert "checked 3: 1 unknown to the portal, 1 in another status" in report, report
    assert f"{lost}: unknown to the portal" in report and f"{other}: portal 2, ours 4" in report

    # the record goes first and its progress entries after it: wait for the last of them
    wait_for(lambda: national_portal.statuses(lost) == ["1", "2", "4"], timeout=15,
             message="the lost dossier sent again, from scratch, each step once")
    wait_for(lambda: national_portal.dossiers[other]["TrangThaiHoSo"] == "4", timeout=15,
             message="the other status corrected")
    assert national_portal.dossiers[lost]["TrangThaiHoSo"] == "4"
    eventlet_sleep(0.5)                                              # nothing more follows
    assert national_portal.statuses(lost) == ["1", "2", "4"]
    assert national_portal.statuses(other) == ["1", "2", "4"]     # its steps were there: not repeated
    assert national_portal.statuses(fine) == ["1", "2", "4"]
    out = io.StringIO()
    assert cli.main(["drift", "--sample", "10", "--no-progress"], out=out) == 0
    assert "checked 3: 0 unknown to the portal, 0 in another status" in out.getvalue()
    assert national_portal.format_errors == []
