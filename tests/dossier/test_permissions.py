"""Caller identity and the permission table of CONTRACT section 5, on the dossier service."""
import pytest
from nameko.exceptions import RemoteError

from tests.helpers import bearer_token, rpc_proxy

OTHER_CITIZEN = "001099099999"


def count(database, table="dossiers"):
    import sqlalchemy as sa

    with database.engine.connect() as connection:
        return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


@pytest.fixture
def submitted(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config, role="officer", agencies=["STP-HN"], sub="can-bo-stp") as rpc:
        return rpc.dossier.submit_dossier("LLTP-01", applicant)


def history_length(dossier_config, code):
    with rpc_proxy(dossier_config, role="service") as rpc:
        return len(rpc.dossier.get_dossier(code)["history"])


@pytest.mark.parametrize("token", [
    None,
    "",
    "Bearer",
    "Basic dXNlcjpwdw==",
    "Bearer not.a.jwt",
    bearer_token(role="officer", ttl_seconds=-10),
    bearer_token(role="officer", secret="a-forger-s-own-secret-0123456789abcdef"),
    bearer_token(role="officer", issuer="someone-else"),
], ids=["none", "empty", "no-token", "basic", "garbage", "expired", "forged", "issuer"])
def test_a_call_without_a_valid_token_is_unauthorized_and_changes_nothing(
        dossier_config, dossier_database, submitted, token):
    before = history_length(dossier_config, submitted["code"])
    with rpc_proxy(dossier_config, token=token) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.act_on_dossier(submitted["code"], "refuse", "anyone")
        assert refused.value.exc_type == "Unauthorized"
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.list_dossiers()
        assert refused.value.exc_type == "Unauthorized"
    assert history_length(dossier_config, submitted["code"]) == before
    assert count(dossier_database) == 1


def test_an_officer_of_another_agency_is_forbidden(dossier_config, submitted):
    with rpc_proxy(dossier_config, role="officer", agencies=["CA-HN"]) as rpc:
        for call in (lambda: rpc.dossier.act_on_dossier(submitted["code"], "refuse", "x"),
                     lambda: rpc.dossier.get_dossier(submitted["code"]),
                     lambda: rpc.dossier.list_dossiers(agency_code="STP-HN"),
                     lambda: rpc.dossier.dossier_stats(agency_code="STP-HN")):
            with pytest.raises(RemoteError) as refused:
                call()
            assert refused.value.exc_type == "Forbidden"
        assert rpc.dossier.list_dossiers()["total"] == 0  # only CA-HN's dossiers
    assert history_length(dossier_config, submitted["code"]) == 1


def test_the_officer_of_the_agency_acts_and_the_history_records_the_token_subject(dossier_config, submitted):
    with rpc_proxy(dossier_config, role="officer", agencies=["STP-HN"], sub="can-bo-42") as rpc:
        accepted = rpc.dossier.act_on_dossier(submitted["code"], "accept", "Cán bộ tự xưng")
    actors = [entry["actor"] for entry in accepted["history"]]
    assert actors[0] == "can-bo-stp"        # the submitting officer's subject
    assert actors[1] == "can-bo-42"         # not the caller-chosen "Cán bộ tự xưng"
    assert "Cán bộ tự xưng" not in actors


def test_a_citizen_on_someone_else_s_dossier_is_forbidden(dossier_config, submitted):
    with rpc_proxy(dossier_config, role="citizen", id_number=OTHER_CITIZEN) as rpc:
        for call in (lambda: rpc.dossier.act_on_dossier(submitted["code"], "withdraw", "x"),
                     lambda: rpc.dossier.get_dossier(submitted["code"]),
                     lambda: rpc.dossier.list_dossiers(applicant_id_number=submitted["applicant"]["id_number"]),
                     lambda: rpc.dossier.dossier_stats()):
            with pytest.raises(RemoteError) as refused:
                call()
            assert refused.value.exc_type == "Forbidden"
        assert rpc.dossier.list_dossiers() == {"items": [], "total": 0}
    assert history_length(dossier_config, submitted["code"]) == 1


def test_a_citizen_reads_withdraws_but_cannot_accept_their_own_dossier(dossier_config, submitted, applicant):
    with rpc_proxy(dossier_config, role="citizen", id_number=applicant["id_number"], sub="citizen-an") as rpc:
        assert rpc.dossier.get_dossier(submitted["code"])["code"] == submitted["code"]
        assert rpc.dossier.list_dossiers()["total"] == 1
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.act_on_dossier(submitted["code"], "accept", "me")
        assert refused.value.exc_type == "Forbidden"
        withdrawn = rpc.dossier.act_on_dossier(submitted["code"], "withdraw", "me")
    assert withdrawn["status"] == "withdrawn"
    assert withdrawn["history"][-1]["actor"] == "citizen-an"


def test_a_citizen_submits_only_as_the_applicant(dossier_config, dossier_container, dossier_database, applicant):
    with rpc_proxy(dossier_config, role="citizen", id_number=OTHER_CITIZEN) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.submit_dossier("LLTP-01", applicant)
        assert refused.value.exc_type == "Forbidden"
    assert count(dossier_database) == 0
    with rpc_proxy(dossier_config, role="citizen", id_number=applicant["id_number"], sub="citizen-an") as rpc:
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant)
    assert dossier["history"][0]["actor"] == "citizen-an"


def test_roles_outside_the_table_are_forbidden(dossier_config, submitted):
    with rpc_proxy(dossier_config, role="finance") as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.act_on_dossier(submitted["code"], "refuse", "x")
        assert refused.value.exc_type == "Forbidden"
    with rpc_proxy(dossier_config, role="service") as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.act_on_dossier(submitted["code"], "refuse", "x")
        assert refused.value.exc_type == "Forbidden"
        assert rpc.dossier.list_dossiers()["total"] == 1
    with rpc_proxy(dossier_config, role="operator") as rpc:
        assert rpc.dossier.dossier_stats()["by_status"]["submitted"] == 1
    assert history_length(dossier_config, submitted["code"]) == 1


def test_without_a_configured_secret_every_call_is_refused(container_factory, dossier_config, applicant):
    from dossier.service import DossierService

    config = {**dossier_config, "AUTH_JWT_SECRET": ""}
    container_factory(DossierService, config).start()
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.submit_dossier("LLTP-01", applicant)
    assert refused.value.exc_type == "Unauthorized"
    assert "AUTH_JWT_SECRET" in str(refused.value)


@pytest.mark.parametrize("claims", [
    {"role": "citizen", "id_number": "001099012345"},
    {"role": "officer", "agencies": ["STP-HN"]},
    {"role": "operator"},
    {"role": ["officer", "finance", "operator"]},
], ids=["citizen", "officer", "operator", "staff"])
def test_reading_many_dossiers_at_once_is_for_services_only(dossier_config, submitted, claims):
    with rpc_proxy(dossier_config, **claims) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.get_dossiers([submitted["code"]])
    assert refused.value.exc_type == "Forbidden"


def test_reading_many_dossiers_at_once_needs_a_token_and_a_service_s_is_enough(dossier_config, submitted):
    with rpc_proxy(dossier_config, token=None) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.get_dossiers([submitted["code"]])
    assert refused.value.exc_type == "Unauthorized"
    with rpc_proxy(dossier_config, role="service") as rpc:
        assert rpc.dossier.get_dossiers([submitted["code"]])["dossiers"][0]["code"] == submitted["code"]
