"""``DossierReader.get_many``: one ``get_dossiers`` call per hundred codes, and what a failure becomes."""
import pytest
from nameko.exceptions import MethodNotFound, RemoteError

from portal_sync.dossiers import DossierUnavailable
from portal_sync.providers import CODES_PER_CALL, DossierReader


class DossierService:
    """The dossier service's answers as the RPC proxy returns them (``proxy.dossier.<method>``)."""

    def __init__(self, known, batch_read=True, failure=None):
        self.known, self.batch_read, self.failure = known, batch_read, failure
        self.calls = []
        self.dossier = self

    def get_dossiers(self, codes):
        self.calls.append(("get_dossiers", list(codes)))
        if not self.batch_read:  # what Nameko raises at the caller for a method the service lacks
            raise MethodNotFound("get_dossiers")
        if self.failure is not None:
            raise self.failure
        return {"dossiers": [{"code": code} for code in dict.fromkeys(codes) if code in self.known],
                "missing": [code for code in dict.fromkeys(codes) if code not in self.known]}

    def get_dossier(self, code):
        self.calls.append(("get_dossier", code))
        if code not in self.known:
            raise RemoteError("DossierNotFound", f"no dossier {code!r}")
        return {"code": code}


def test_codes_are_read_a_hundred_at_a_time_each_once():
    codes = [f"D{n}" for n in range(250)]
    service = DossierService(known=set(codes[:-1]))
    found = DossierReader(service).get_many(codes + codes[:3])
    assert [len(called[1]) for called in service.calls] == [CODES_PER_CALL, CODES_PER_CALL, 50]
    assert {name for name, _ in service.calls} == {"get_dossiers"}
    assert found == {code: {"code": code} for code in codes[:-1]}  # D249, unknown, is absent


def test_an_older_dossier_service_without_get_dossiers_is_read_one_code_at_a_time():
    service = DossierService(known={"D1", "D2"}, batch_read=False)
    found = DossierReader(service).get_many(["D1", "GONE", "D2"])
    assert found == {"D1": {"code": "D1"}, "D2": {"code": "D2"}}
    assert service.calls == [("get_dossiers", ["D1", "GONE", "D2"]), ("get_dossier", "D1"),
                             ("get_dossier", "GONE"), ("get_dossier", "D2")]


@pytest.mark.parametrize("failure, reason", [
    (RemoteError("Forbidden", "this call needs one of the roles service"), "get_dossiers: Forbidden"),
    (RemoteError("ValidationError", "invalid fields: codes.0"), "get_dossiers: ValidationError"),
    (TimeoutError(), "get_dossiers: TimeoutError"),
])
def test_any_other_failure_makes_the_dossier_service_unavailable(failure, reason):
    with pytest.raises(DossierUnavailable) as away:
        DossierReader(DossierService(known={"D1"}, failure=failure)).get_many(["D1"])
    assert str(away.value) == reason
