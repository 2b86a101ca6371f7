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


MASKING_CASES = [
    # (text in a log line, what must not survive, what must remain)
    ("091 234 5678", "234", "***78"),
    ("0912.345.678", "345", "***78"),
    ("+84 912 345 678", "912", "***78"),
    ("%2B84912345678", "912345", "***78"),
    ("０９１２３４５６７８", "３４５", "***78"),
    ("001 099 012 345", "099 012", "*********345"),
    ('"an nguyen"@example.vn', "nguyen\"", "***@example.vn"),
    ("nguyễn.văn.an@example.vn", "văn", "n***@example.vn"),
    ("amqp://notify:s3cr3t-pw@rabbit:5672/%2F", "s3cr3t", "amqp://notify:***@rabbit"),
    ("postgresql://payment:p%40ss@db:5432/payment", "ss@db", "postgresql://payment:***@db"),
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig", "eyJ", "Authorization: ***"),
    ("headers={'Authorization': 'Basic dXNlcjpwYXNz'}", "dXNlcjpwYXNz", "***"),
    ("context authorization=Bearer abc.def.ghi", "abc.def", "***"),
    ("does not exist\nLINE 1: INSERT INTO t (address) VALUES ('12 Tràng Tiền')", "Tràng", "LINE 1: [hidden]"),
    ("duplicate key\nDETAIL:  Key (full_name)=(Nguyễn Văn An) already exists.", "Văn", "Key (full_name)=([hidden]"),
]


def test_every_masking_case_of_the_issue_in_a_real_log_line():
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    try:
        log = structlog.get_logger("masking.test")
        for text, secret, kept in MASKING_CASES:
            log.info("event", detail=f"value {text} end")
            logging.getLogger("kombu.test").warning("stdlib %s", text)
        lines = [json.loads(line) for line in stream.getvalue().strip().splitlines()]
    finally:
        structlog.reset_defaults()
        configure_logging(force=True)
    structured = [line for line in lines if line.get("event") == "event"]
    stdlib = [line for line in lines if line.get("event", "").startswith("stdlib")]
    assert len(structured) == len(stdlib) == len(MASKING_CASES)
    for (text, secret, kept), line, plain in zip(MASKING_CASES, structured, stdlib):
        assert secret not in line["detail"] and kept in line["detail"], (text, line["detail"])
        assert secret not in plain["event"] and kept in plain["event"], (text, plain["event"])


def test_ordinary_identifiers_are_left_alone():
    text = "STP-HN-261125-2KQMTC at 2026-12-04T14:22:28Z txn P2611250001AB amount 200000 ref 20261125103000"
    assert mask_text(text) == text


def test_a_failed_statement_never_carries_its_parameters(fresh_database):
    import pytest
    import sqlalchemy as sa

    from portal_shared.db import create_db_engine

    engine = create_db_engine(fresh_database("dossier").url)
    try:
        with pytest.raises(sa.exc.DBAPIError) as failed:
            with engine.begin() as connection:
                connection.execute(sa.text("CREATE TEMPORARY TABLE applicants (id_number varchar(12), address text)"))
                connection.execute(sa.text("INSERT INTO applicants (id_number, address) VALUES (:id, :address)"),
                                   {"id": "0010990123456789", "address": "12 Tràng Tiền, Hoàn Kiếm"})
    finally:
        engine.dispose()
    assert "Tràng Tiền" not in str(failed.value) and "0010990123456789" not in str(failed.value)
    assert "hide_parameters=True" in str(failed.value)
