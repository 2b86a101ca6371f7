"""Personal data and secrets never reach a log line in plain text."""
import io
import json
import logging

import structlog

from portal_shared.logs import configure_logging
from portal_shared.masking import mask_text, mask_value


def test_phone_numbers_in_every_spelling_are_masked():
    for phone in ("0912345678", "+84912345678", "84912345678"):
        masked = mask_text(f"call {phone} now")
        assert phone not in masked and "912345678" not in masked and masked.endswith("78 now")


def test_email_and_citizen_id_are_masked_but_longer_numbers_are_not():
    text = mask_text("an.nguyen@example.vn id 001099012345 ref 20261125103000")
    assert "an.nguyen" not in text and "001099012345" not in text
    assert "a***@example.vn" in text and "*********345" in text
    assert "20261125103000" in text


def test_secrets_are_hidden_by_key_and_inline():
    assert mask_value({"VNPAY_HASH_SECRET": "abc", "api_key": "k", "amount": 1}) == {
        "VNPAY_HASH_SECRET": "***", "api_key": "***", "amount": 1
    }
    assert "s3cr3t" not in mask_text("https://x/?vnp_SecureHash=s3cr3t&vnp_Amount=100")
    assert "pw1" not in mask_text('{"SecretKey": "pw1", "Phone": "x"}')


def test_standard_library_records_are_masked_too():
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    logging.getLogger("kombu.test").warning("cannot reach 0987654321")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "0987654321" not in line["event"]
    structlog.reset_defaults()
    configure_logging(force=True)
