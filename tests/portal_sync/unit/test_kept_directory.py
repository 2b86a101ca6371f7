"""``KeptDirectory``: the delivery loop's one proxy, kept from round to round, replaced after a failure."""
import pytest

from portal_sync.dossiers import DossierMissing, DossierUnavailable
from portal_sync.providers import KeptDirectory


class Proxy:
    def __init__(self, answers):
        self.answers, self.stopped = answers, False
        self.dossier = self

    def get_dossier(self, code):
        answer = self.answers[code]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def stop(self):
        self.stopped = True


class Directory:
    def __init__(self, answers):
        self.answers, self.proxies = answers, []

    def connect(self):
        proxy = Proxy(self.answers)
        self.proxies.append(proxy)
        return proxy, proxy


def test_rounds_share_one_proxy_until_the_dossier_service_fails_then_a_new_one_is_made():
    from nameko.exceptions import RemoteError

    directory = Directory({"D1": {"code": "D1"}, "GONE": RemoteError("DossierNotFound", "no"),
                           "AWAY": TimeoutError()})
    kept = KeptDirectory(directory)
    for _ in range(3):
        with kept.open() as dossiers:
            assert dossiers.get("D1") == {"code": "D1"}
    with kept.open() as dossiers:
        with pytest.raises(DossierMissing):  # an answer: the proxy works
            dossiers.get("GONE")
    assert len(directory.proxies) == 1 and not directory.proxies[0].stopped
    with pytest.raises(DossierUnavailable):
        with kept.open() as dossiers:
            dossiers.get("AWAY")
    assert directory.proxies[0].stopped
    with kept.open() as dossiers:
        assert dossiers.get("D1") == {"code": "D1"}
    assert len(directory.proxies) == 2
    kept.close()
    assert directory.proxies[1].stopped
