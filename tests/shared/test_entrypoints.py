"""The signature check done once (portal_shared.extensions.entrypoints) decides as Nameko's own does."""
from types import SimpleNamespace

import pytest
from nameko.exceptions import IncorrectSignature
from nameko.extensions import Entrypoint

from portal_shared.extensions.entrypoints import SignatureCheckedOnce


class Service:
    def plain(self, code):
        pass

    def optional(self, code, action, note=None):
        pass

    def variadic(self, request, *args, **kwargs):
        pass


class Nameko(Entrypoint):
    pass


class Ours(SignatureCheckedOnce, Entrypoint):
    pass


def entrypoint(cls, method):
    point = cls.__new__(cls)  # no Nameko set-up: only what check_signature reads
    point.container = SimpleNamespace(service_cls=Service)
    point.method_name = method
    return point


CALLS = [
    ("plain", ("D-1",), {}), ("plain", (), {}), ("plain", ("D-1", "extra"), {}), ("plain", (), {"code": "D-1"}),
    ("plain", (), {"other": 1}), ("plain", ("D-1",), {"code": "D-2"}),
    ("optional", ("D-1", "accept"), {}), ("optional", ("D-1",), {"action": "accept", "note": "n"}),
    ("optional", ("D-1",), {}), ("optional", ("D-1", "accept", "n", "more"), {}),
    ("variadic", ("request", 1, 2), {"x": 3}), ("variadic", (), {}),
]


@pytest.mark.parametrize("method, args, kwargs", CALLS)
def test_the_same_calls_pass_and_fail_as_with_namekos_check(method, args, kwargs):
    outcomes = []
    for cls in (Nameko, Ours):
        try:
            entrypoint(cls, method).check_signature(args, kwargs)
            outcomes.append("ok")
        except IncorrectSignature:
            outcomes.append("IncorrectSignature")
    assert outcomes[0] == outcomes[1]


def test_the_signature_is_built_once():
    point = entrypoint(Ours, "plain")
    point.check_signature(("D-1",), {})
    built = point._signature
    point.check_signature(("D-2",), {})
    assert point._signature is built and Ours._signature is None

