"""The sandbox's SMTP sink: every accepted e-mail reaches the outbox, decoded when the outbox is read."""
import smtplib
import socket
from email.message import EmailMessage

import pytest

from sandbox.messaging import start_smtp
from sandbox.store import Store


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def sink():
    store, port = Store(), free_port()
    controller = start_smtp(store, "127.0.0.1", port)
    yield store, port
    controller.stop()


def test_an_accepted_e_mail_is_in_the_outbox_with_its_text_html_and_headers(sink):
    store, port = sink
    email = EmailMessage()
    email["From"] = "Cổng Dịch vụ công <no-reply@dichvucong.localhost>"
    email["To"] = "cong.dan@example.vn"
    email["Subject"] = "Hồ sơ UBND-PX-HN-261205-ABCDEF đã được tiếp nhận"
    email["Message-ID"] = "<n-1@dichvucong.localhost>"
    email.set_content("Kính gửi ông Nguyễn Văn A", charset="utf-8")
    email.add_alternative("<p>Kính gửi ông <b>Nguyễn Văn A</b></p>", subtype="html", charset="utf-8")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(email)
    [message] = store.outbox()
    assert (message["channel"], message["provider"], message["to"]) == ("email", "smtp", "cong.dan@example.vn")
    assert message["subject"] == "Hồ sơ UBND-PX-HN-261205-ABCDEF đã được tiếp nhận"
    assert message["text"].strip() == "Kính gửi ông Nguyễn Văn A"
    assert "<b>Nguyễn Văn A</b>" in message["html"]
    assert message["meta"]["message_id"] == "<n-1@dichvucong.localhost>"
    assert message["meta"]["mail_from"] == "no-reply@dichvucong.localhost"
    assert store.outbox() == [message]  # decoded once, read as often as wanted


def test_reading_the_sms_outbox_leaves_e_mails_to_be_decoded_when_they_are_read():
    store, decoded = Store(), []
    store.add_message("sms", "esms", "84912345678", "Ho so ABC da duoc tiep nhan")
    store.add_message("email", "smtp", "a@example.vn", text=None,
                      decode=lambda: decoded.append(1) or {"text": "Kính gửi", "subject": "Hồ sơ ABC"})
    assert [m["channel"] for m in store.outbox(channel="sms")] == ["sms"] and decoded == []
    [email] = store.outbox(channel="email")
    assert (email["text"], email["subject"], decoded) == ("Kính gửi", "Hồ sơ ABC", [1])
    assert [m["channel"] for m in store.outbox()] == ["email", "sms"] and decoded == [1]


@pytest.mark.parametrize("arg", [
    "<cong.dan@example.vn>", "<a.b+c_d@bench.example> SIZE=1000 BODY=8BITMIME", " <x@y.vn>", "<x@y.vn>SIZE=1",
    "<>", '<"quoted local"@example.vn>', "bare@example.vn", "<@relay.vn:a@example.vn>", "<no-at-sign>",
    "<a@b.vn", "<Nguyễn@example.vn>", "", "<a@b.vn>   ",
])
def test_the_sinks_quick_path_reads_an_address_as_aiosmtpd_does(arg):
    from aiosmtpd.smtp import SMTP
    from sandbox.fakes.smtp import SinkSmtp

    quick, library = SinkSmtp.__new__(SinkSmtp), SMTP.__new__(SMTP)
    quick.local_part_limit = library.local_part_limit = 0
    assert quick._getaddr(arg) == SMTP._getaddr(library, arg)


def test_the_sink_refuses_an_overlong_local_part_on_the_quick_path_too():
    from sandbox.fakes.smtp import SinkSmtp

    sink = SinkSmtp.__new__(SinkSmtp)
    sink.local_part_limit = 64
    assert sink._getaddr(f"<{'a' * 65}@example.vn>") == (None, None)
    assert sink._getaddr(f"<{'a' * 64}@example.vn>") == (f"{'a' * 64}@example.vn", "")
