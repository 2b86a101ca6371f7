"""Bounded, clean input: every oversized or malformed value is a ValidationError naming its field,
and nothing is stored."""
import pytest
import sqlalchemy as sa
from nameko.exceptions import RemoteError

from tests.helpers import rpc_proxy


def stored(database):
    with database.engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM dossiers")).scalar_one()


def with_applicant(applicant, **changes):
    return {**applicant, **changes}


@pytest.mark.parametrize("field, args", [
    ("form_data", lambda a: ("LLTP-01", a, {"blob": "x" * (64 * 1024)})),
    ("form_data", lambda a: ("LLTP-01", a, {"k": "nul\x00byte"})),
    ("form_data", lambda a: ("LLTP-01", a, {"k\ud800": "lone surrogate key"})),
    ("form_data", lambda a: ("LLTP-01", a, {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {}}}}}}}}}}})),
    ("email", lambda a: ("LLTP-01", with_applicant(a, email="a" * 418_000 + "@example.vn"))),
    ("id_number", lambda a: ("LLTP-01", with_applicant(a, id_number="００１０９９０１２３４５"))),
    ("id_number", lambda a: ("LLTP-01", with_applicant(a, id_number="001099012345\n"))),
    ("full_name", lambda a: ("LLTP-01", with_applicant(a, full_name="Nguyễn\x00Văn An"))),
    ("address", lambda a: ("LLTP-01", with_applicant(a, address="12 Tràng Tiền \udc80"))),
    ("procedure_code", lambda a: ("LLTP-01" * 100, a)),
])
def test_submission_bounds(dossier_container, dossier_config, dossier_database, applicant, field, args):
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.submit_dossier(*args(applicant))
    assert refused.value.exc_type == "ValidationError"
    assert field in refused.value.value
    assert stored(dossier_database) == 0


def test_form_data_just_under_the_limit_is_accepted(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        dossier = rpc.dossier.submit_dossier("LLTP-01", applicant, {"blob": "x" * (60 * 1024)})
    assert len(dossier["form_data"]["blob"]) == 60 * 1024


@pytest.mark.parametrize("kwargs, field", [
    ({"offset": 10 ** 19}, "offset"),
    ({"limit": 201}, "limit"),
    ({"limit": 0}, "limit"),
    ({"applicant_id_number": "٠٠١٠٩٩٠١٢٣٤٥"}, "applicant_id_number"),
    ({"agency_code": "x" * 65}, "agency_code"),
])
def test_listing_bounds(dossier_container, dossier_config, kwargs, field):
    with rpc_proxy(dossier_config) as rpc:
        with pytest.raises(RemoteError) as refused:
            rpc.dossier.list_dossiers(**kwargs)
    assert refused.value.exc_type == "ValidationError" and field in refused.value.value


def test_note_and_actor_bounds(dossier_container, dossier_config, applicant):
    with rpc_proxy(dossier_config) as rpc:
        code = rpc.dossier.submit_dossier("KHAISINH-01", applicant)["code"]
        for args, field in (((code, "accept", "can-bo", "n" * 2001), "note"),
                            ((code, "accept", "can-bo", "bad\x00note"), "note"),
                            ((code, "accept", "x" * 129), "actor")):
            with pytest.raises(RemoteError) as refused:
                rpc.dossier.act_on_dossier(*args)
            assert refused.value.exc_type == "ValidationError" and field in refused.value.value
        assert rpc.dossier.get_dossier(code)["status"] == "submitted"
        assert rpc.dossier.act_on_dossier(code, "accept", "can-bo", "n" * 2000)["status"] == "accepted"
