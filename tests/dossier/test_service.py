"""The dossier service over real RabbitMQ RPC and PostgreSQL."""
import eventlet
import pytest
import requests
import sqlalchemy as sa
from nameko.exceptions import RemoteError
from nameko.testing.utils import get_extension

from portal_shared.extensions.database import Database
from tests.helpers import http_port, make_collector, rpc_proxy, wait_for


def count_dossiers(database):
    with database.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM dossiers")).scalar_one()


def test_submit_normalises_the_phone_and_records_history(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant, {"purpose": "xin việc"})
        assert dossier["status"] == "submitted" and dossier["status_code"] == 1
        assert dossier["applicant"]["phone"] == "0912345678"
        assert dossier["code"].startswith("STP-HN-")
        assert dossier["fee_amount"] == 200_000 and dossier["fee_paid"] is False
        assert dossier["submitted_at"].endswith("+07:00")
        assert [h["status"] for h in dossier["history"]] == ["submitted"]
        assert rpc.dossier.get_dossier(dossier["code"]) == dossier


def test_a_bad_request_names_every_bad_field_and_stores_nothing(
    dossier_container, dossier_config, dossier_database
):
    bad_applicant = {"full_name": " ", "id_number": "12345", "phone": "0123", "email": "not-an-email"}
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as caught:
            rpc.dossier.submit_dossier("", bad_applicant, form_data="text")
    assert caught.value.exc_type == "ValidationError"
    for field in ("procedure_code", "applicant.full_name", "applicant.id_number", "applicant.phone",
                  "applicant.email", "form_data"):
        assert field in caught.value.value
    assert count_dossiers(dossier_database) == 0


def test_contact_is_required(dossier_container, dossier_config):
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as caught:
            rpc.dossier.submit_dossier("LLTP-01", {"full_name": "Lê Văn C", "id_number": "001099012345"})
    assert caught.value.exc_type == "ValidationError" and "applicant.phone" in caught.value.value


def test_unknown_procedure_missing_dossier_and_invalid_transition(
    dossier_container, dossier_config, applicant, dossier_database
):
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as unknown:
            rpc.dossier.submit_dossier("NO-SUCH", applicant)
        assert unknown.value.exc_type == "UnknownProcedure"
        assert count_dossiers(dossier_database) == 0
        with pytest.raises(RemoteError) as missing:
            rpc.dossier.get_dossier("STP-HN-000000-XXXXXX")
        assert missing.value.exc_type == "DossierNotFound"
        dossier = rpc.dossier.submit_dossier("KHAISINH-01", applicant)
        with pytest.raises(RemoteError) as invalid:
            rpc.dossier.act_on_dossier(dossier["code"], "finish", "officer-1")
        assert invalid.value.exc_type == "InvalidTransition"
        assert rpc.dossier.get_dossier(dossier["code"])["history"] == dossier["history"]
        with pytest.raises(RemoteError) as bad_action:
            rpc.dossier.act_on_dossier(dossier["code"], "approve", "")
        assert bad_action.value.exc_type == "ValidationError"
        assert "action" in bad_action.value.value and "actor" in bad_action.value.value


def test_free_dossier_walks_to_returned(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        code = rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"]
        accepted = rpc.dossier.act_on_dossier(code, "accept", "officer-1")
        assert accepted["status"] == "accepted" and accepted["due_at"] is not None
        for action, status in [("start", "processing"), ("request_supplement", "supplement_requested"),
                               ("supplement", "processing"), ("finish", "processed"),
                               ("return_result", "returned")]:
            assert rpc.dossier.act_on_dossier(code, action, "officer-1")["status"] == status
        listed = rpc.dossier.list_dossiers(applicant_id_number=applicant["id_number"])
        assert listed["total"] == 1 and listed["items"][0]["status"] == "returned"
        stats = rpc.dossier.dossier_stats()
        assert stats["by_status"]["returned"] == 1 and stats["finished"] == 1 and stats["on_time"] == 1


def test_one_event_per_change_in_order(container_factory, dossier_container, dossier_config, applicant):
    collector = make_collector("dossier", "dossier_status_changed")
    container_factory(collector, dossier_config).start()
    with rpc_proxy(dossier_config) as rpc:
        code = rpc.dossier.submit_dossier("LLTP-01", applicant)["code"]
        rpc.dossier.act_on_dossier(code, "accept", "officer-1")
        rpc.dossier.act_on_dossier(code, "stop", "officer-1", "Hồ sơ giả mạo")
    wait_for(lambda: len(collector.received) >= 4, message="four events")
    assert [(e["old_status"], e["new_status"]) for e in collector.received] == [
        (None, "submitted"), ("submitted", "accepted"), ("accepted", "payment_requested"),
        ("payment_requested", "stopped"),
    ]
    last = collector.received[-1]
    assert last["dossier_code"] == code and last["status_code"] == 8 and last["fee_amount"] == 200_000
    assert last["applicant"] == {"full_name": applicant["full_name"], "phone": "0912345678",
                                 "email": applicant["email"]}
    assert "id_number" not in last["applicant"] and last["note"] == "Hồ sơ giả mạo"
    assert len({e["event_id"] for e in collector.received}) == 4
    eventlet.sleep(0.5)
    assert len(collector.received) == 4


def test_health_endpoints(dossier_container, dossier_config):
    base = f"http://127.0.0.1:{http_port(dossier_container)}"
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["broker"] == "ok"
    metrics = requests.get(f"{base}/metrics", timeout=5).text
    assert "portal_worker_calls_total" in metrics and "portal_outbox_pending" in metrics


def test_calls_arriving_together_share_transactions_and_each_is_answered_for_itself(
        container_factory, dossier_container, dossier_config, applicant):
    """The group commit of ``act_on_dossier``: concurrent calls on different dossiers, a refused one among
    them and two on the same dossier; each caller gets its own answer, each change one event."""
    collector = make_collector("dossier", "dossier_status_changed")
    container_factory(collector, dossier_config).start()
    with rpc_proxy(dossier_config) as rpc:
        codes = [rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"] for _ in range(16)]
        finished = rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"]
    calls = [(code, "accept") for code in codes] + [(finished, "finish"), (codes[0], "accept")]
    answers = {}

    def call(index, code, action):
        with rpc_proxy(dossier_config) as rpc:
            try:
                answers[index] = rpc.dossier.act_on_dossier(code, action, "officer-1")["status"]
            except RemoteError as exc:
                answers[index] = exc.exc_type

    pool = eventlet.GreenPool(len(calls))
    for index, (code, action) in enumerate(calls):
        pool.spawn(call, index, code, action)
    pool.waitall()
    assert [answers[i] for i in range(1, 16)] == ["accepted"] * 15
    assert answers[16] == "InvalidTransition"
    assert sorted([answers[0], answers[17]]) == ["InvalidTransition", "accepted"]  # codes[0] accepted once
    group = next(dependency for dependency in dossier_container.dependencies
                 if getattr(dependency, "attr_name", None) == "actions").group
    assert group.grouped > 0  # some calls did share a transaction
    wait_for(lambda: len(collector.received) >= 33, message="33 events")  # 17 submitted, 16 accepted
    eventlet.sleep(0.5)
    accepted = [e["dossier_code"] for e in collector.received if e["new_status"] == "accepted"]
    assert sorted(accepted) == sorted(codes)


def test_get_dossiers_answers_as_get_dossier_does_and_names_the_unknown_codes(
        dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        codes = [rpc.dossier.submit_dossier(procedure, applicant)["code"]
                 for procedure in ("LLTP-01", "KHAISINH-01", "LLTP-01")]
        rpc.dossier.act_on_dossier(codes[1], "accept", "officer-1")
        rpc.dossier.act_on_dossier(codes[1], "start", "officer-1")
        one_by_one = [rpc.dossier.get_dossier(code) for code in codes]
    unknown = "STP-HN-000000-XXXXXX"
    with rpc_proxy(dossier_config, role="service") as rpc:
        answer = rpc.dossier.get_dossiers([codes[2], unknown, codes[0], codes[1], codes[0]])
    assert answer == {"dossiers": [one_by_one[2], one_by_one[0], one_by_one[1]], "missing": [unknown]}
    assert [entry["status"] for entry in answer["dossiers"][2]["history"]] == ["submitted", "accepted", "processing"]


@pytest.mark.parametrize("codes", [[], ["STP-HN-000000-XXXXXX"] * 101, ["STP-HN-000000-XXXXXX", ""],
                                   ["X" * 33], "STP-HN-000000-XXXXXX", None],
                         ids=["empty", "101-codes", "empty-code", "long-code", "not-a-list", "none"])
def test_get_dossiers_refuses_a_bad_list_naming_codes(dossier_container, dossier_config, codes):
    with rpc_proxy(dossier_config, role="service") as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.get_dossiers(codes)
    assert refused.value.exc_type == "ValidationError" and "codes" in refused.value.value


def test_get_dossiers_reads_any_number_of_dossiers_in_one_statement(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        codes = [rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"] for _ in range(8)]
        for code in codes[:4]:
            rpc.dossier.act_on_dossier(code, "accept", "officer-1")
    engine = get_extension(dossier_container, Database).engine
    reads = []

    def record(_connection, _cursor, statement, *_args):
        if "dossier" in statement and "outbox" not in statement:  # not the relay's sweeps
            reads.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        with rpc_proxy(dossier_config, role="service") as rpc:
            assert len(rpc.dossier.get_dossiers(codes[:1])["dossiers"]) == 1
            one = len(reads)
            answer = rpc.dossier.get_dossiers(codes + ["STP-HN-000000-XXXXXX"])
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert len(answer["dossiers"]) == 8 and answer["missing"] == ["STP-HN-000000-XXXXXX"]
    assert one == 1 and len(reads) == 2  # one statement for one dossier, one for eight: no read per dossier
    assert all(len(dossier["history"]) == 2 for dossier in answer["dossiers"][:4])
