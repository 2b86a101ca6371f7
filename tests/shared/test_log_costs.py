"""Logging stays cheap on hot paths: expected errors without a stack, masking only where data can hide."""
import io
import json
import logging

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from portal_shared.logs import configure_logging
from portal_shared.masking import mask_all, mask_event, mask_text


class NoPaymentDue(Exception):
    pass


def log_lines(emit):
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    try:
        emit()
    finally:
        structlog.reset_defaults()
        configure_logging(force=True)
    return [json.loads(line) for line in stream.getvalue().strip().splitlines()]


def raised(exc):
    try:
        raise exc
    except Exception as caught:
        return caught


def test_an_expected_error_is_logged_without_its_traceback_an_unexpected_one_with():
    expected = raised(NoPaymentDue("no fee is due for dossier of 0912345678"))
    unexpected = raised(RuntimeError("boom"))

    def emit():
        containers = logging.getLogger("nameko.containers")
        # what nameko.containers does for each (ServiceContainer._run_worker)
        containers.warning("(expected) error handling worker %s: %s", "<worker>", expected,
                           exc_info=(type(expected), expected, expected.__traceback__))
        containers.error("error handling worker %s: %s", "<worker>", unexpected,
                         exc_info=(type(unexpected), unexpected, unexpected.__traceback__))

    expected_line, unexpected_line = log_lines(emit)
    assert expected_line["level"] == "warning" and "no fee is due" in expected_line["event"]
    assert "exception" not in expected_line and "0912345678" not in expected_line["event"]
    assert "Traceback" in unexpected_line["exception"] and "RuntimeError: boom" in unexpected_line["exception"]


def test_text_without_anything_to_mask_is_returned_as_it_is():
    for text in ("vnpay_ipn", "payment_recorded", "Hồ sơ đã được tiếp nhận", "P261204T233519RAWZCPY5TT"):
        assert mask_text(text) is text
    # what the quick test lets through to the patterns still gets masked
    assert "912" not in mask_text("so ０９１２３４５６７８")  # full-width digits: not NFKC-normal
    assert "an.nguyen" not in mask_text("an.nguyen＠example.vn")  # a full-width @
    assert "abc.def" not in mask_text("authorization Bearer abc.def.ghi")


def test_the_logging_set_ups_own_fields_are_not_searched_the_others_are():
    event = {"timestamp": "2026-12-04T10:00:00Z", "level": "info", "logger": "payment", "service": "payment",
             "call_id": "payment.vnpay_ipn.0912345678", "entrypoint": "vnpay_ipn", "event": "vnpay_ipn",
             "phone": "0912345678", "note": "gọi 0912345678"}
    masked = mask_event(None, "info", dict(event))
    assert {key: masked[key] for key in ("timestamp", "level", "logger", "service", "call_id", "entrypoint")} == \
        {key: event[key] for key in ("timestamp", "level", "logger", "service", "call_id", "entrypoint")}
    assert "0912345678" not in masked["phone"] and "0912345678" not in masked["note"]


# what log fields are made of: digits and their separators, the characters the other patterns need,
# letters (also Vietnamese ones and schemes), full-width and percent-encoded forms
_LOG_TEXT = st.lists(st.sampled_from(list("0123456789 .-+@:=%/_abcBEARERsic") +
                                     ["84", "09", "bearer ", "basic ", "ệ", "０", "＠", "%40", "://"]),
                     max_size=30).map("".join)


@settings(max_examples=1500, deadline=None)
@given(_LOG_TEXT)
def test_the_shortcut_masks_exactly_what_every_pattern_would(text):
    assert mask_text(text) == mask_all(text)


def test_the_shortcut_still_masks_numbers_in_plain_text():
    assert mask_text("sent to 0912 345 678 ok") == "sent to ***78 ok"
    assert mask_text("cccd 001.203.004.567") == "cccd *********567"
    uuid = "3f2a9c1e-7b4d-4e2a-9f10-2c8d5e6a7b90"
    assert mask_text(uuid) is uuid
