"""Signed events (portal_shared.event_signing): a signature binds one event of one type under one key."""
import json

import pytest

from portal_shared import event_signing
from portal_shared.event_signing import SigningKeyError, load_key, sign, signed_headers, verify

KEY = b"k" * 32
EVENT = {"event_id": "5d1f0c9e-6a55-4a8e-9a43-2b8f2f3f7a10", "occurred_at": "2026-12-04T10:00:00+07:00",
         "txn_ref": "P20261204ABC", "dossier_code": "G22.51-261204-0001", "amount": 200000, "gateway": "vnpay",
         "gateway_txn_no": "14123456", "paid_at": "2026-12-04T10:00:00+07:00"}


def test_a_signature_verifies_the_event_it_was_made_for_whatever_the_key_order():
    signature = sign(KEY, "payment_succeeded", EVENT)
    assert signature.startswith("v1=") and len(signature) == 3 + 64
    reordered = json.loads(json.dumps(dict(reversed(list(EVENT.items())))))  # as jsonb hands it back
    assert verify(KEY, "payment_succeeded", reordered, signature)


@pytest.mark.parametrize("field, value", [
    ("amount", 2000000), ("amount", "200000"), ("dossier_code", "G22.51-261204-0002"), ("txn_ref", "P2"),
    ("event_id", "00000000-0000-0000-0000-000000000000"), ("paid_at", "2026-12-05T10:00:00+07:00"),
    ("extra", "anything"),
])
def test_any_changed_or_added_field_breaks_the_signature(field, value):
    signature = sign(KEY, "payment_succeeded", EVENT)
    assert not verify(KEY, "payment_succeeded", {**EVENT, field: value}, signature)


def test_the_signature_binds_the_event_type_and_the_key():
    signature = sign(KEY, "payment_refunded", EVENT)
    assert not verify(KEY, "payment_succeeded", EVENT, signature)
    assert not verify(b"x" * 32, "payment_refunded", EVENT, signature)
    assert verify(KEY, "payment_refunded", EVENT, signature)


@pytest.mark.parametrize("signature", [None, "", "v1=", "v2=" + "0" * 64, 12345, ["v1=00"], "v1=" + "0" * 500,
                                       sign(KEY, "payment_succeeded", EVENT).upper()])
def test_missing_malformed_or_foreign_signatures_do_not_verify(signature):
    assert not verify(KEY, "payment_succeeded", EVENT, signature)


def test_without_a_key_nothing_verifies_and_nothing_is_signed():
    assert not verify(None, "payment_succeeded", EVENT, sign(KEY, "payment_succeeded", EVENT))
    assert signed_headers(None, "payment_succeeded", EVENT) == {}
    assert signed_headers(KEY, "payment_succeeded", EVENT) == {
        event_signing.HEADER: sign(KEY, "payment_succeeded", EVENT)}


def test_a_payload_json_cannot_carry_does_not_verify():
    assert not verify(KEY, "payment_succeeded", {"amount": float("nan")}, "v1=" + "0" * 64)
    assert not verify(KEY, "payment_succeeded", {"when": object()}, "v1=" + "0" * 64)


def test_keys_are_read_verbatim_and_a_short_one_is_refused_with_its_name(monkeypatch):
    assert load_key("PAYMENT_EVENT_KEY", {}) is None
    assert load_key("PAYMENT_EVENT_KEY", {"PAYMENT_EVENT_KEY": ""}) is None
    assert load_key("PAYMENT_EVENT_KEY", {"PAYMENT_EVENT_KEY": " #x *y " + "z" * 30}) == (" #x *y " + "z" * 30).encode()
    with pytest.raises(SigningKeyError, match="PAYMENT_EVENT_KEY has 5 bytes"):
        load_key("PAYMENT_EVENT_KEY", {"PAYMENT_EVENT_KEY": "short"})
    monkeypatch.setenv("SOME_EVENT_KEY", "a" * 40)
    assert event_signing.environ_key("SOME_EVENT_KEY") == b"a" * 40
    monkeypatch.setenv("SOME_EVENT_KEY", "b" * 40)  # a changed environment is read again
    assert event_signing.environ_key("SOME_EVENT_KEY") == b"b" * 40
