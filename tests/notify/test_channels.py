"""SMS providers, failover and cool-down, and SMTP, against the HTTP fakes and a real SMTP server."""
import email
import email.policy
import logging

import pytest

from notify.domain.model import Status
from notify.mail import SmtpMailer
from notify.sms import ProviderError, SmsRouter, clients_from_config
from notify.use_cases import Message
from portal_shared.logs import configure_logging
from tests.notify.conftest import ESMS_CALLBACK_TOKEN


def sms(message_id="11111111-2222-3333-4444-555555555555", phone="0912345678", text="DVC: Ho so X-1 da duoc tiep nhan."):
    return Message(message_id, "sms", phone, None, text, None)


@pytest.fixture
def router(provider_config):
    return SmsRouter.from_config(provider_config)


def test_esms_gets_its_real_request_format(router, esms, speedsms):
    outcome = router.send(sms())
    assert outcome.status == Status.SENT and outcome.provider == "esms"
    assert esms.format_errors == []
    body = esms.requests[0]["body"]
    assert body == {
        "ApiKey": "esms-key", "SecretKey": "esms-secret", "Phone": "84912345678",
        "Content": "DVC: Ho so X-1 da duoc tiep nhan.", "Brandname": "DICHVUCONG", "SmsType": "2",
        "IsUnicode": "0", "Sandbox": "0", "RequestId": "11111111-2222-3333-4444-555555555555",
        "CallbackUrl": f"http://notify.test/callbacks/esms/{ESMS_CALLBACK_TOKEN}",
    }
    assert outcome.reference == esms.delivered[0]["sms_id"]
    assert speedsms.requests == []


def test_a_repeated_request_id_is_treated_as_sent_and_reaches_the_citizen_once(router, esms):
    assert router.send(sms()).status == Status.SENT
    again = router.send(sms())
    assert again.status == Status.SENT and again.provider == "esms"
    assert len(esms.requests) == 2 and len(esms.delivered) == 1


@pytest.mark.parametrize("failure", ["99", "http_500", "timeout"])
def test_temporary_esms_errors_are_retried_then_fail_over_to_speedsms(router, esms, speedsms, failure):
    esms.script(failure, failure)
    outcome = router.send(sms())
    assert outcome.status == Status.SENT and outcome.provider == "speedsms"
    # a timeout is not tried again on the same provider: a hung provider costs one timeout, not two
    assert len(esms.requests) == (1 if failure == "timeout" else 2) and esms.delivered == []
    assert speedsms.format_errors == []
    request = speedsms.requests[0]
    assert request["body"] == {"to": ["84912345678"], "content": "DVC: Ho so X-1 da duoc tiep nhan.",
                               "sms_type": 3, "sender": "DICHVUCONG"}
    assert len(speedsms.delivered) == 1


def test_one_temporary_error_is_retried_on_the_same_provider(router, esms, speedsms):
    esms.script("99")
    outcome = router.send(sms())
    assert outcome.provider == "esms" and len(esms.delivered) == 1 and speedsms.requests == []


@pytest.mark.parametrize("code", ["101", "104", "146"])
def test_permanent_errors_fail_over_at_once_and_cool_the_provider_down(router, esms, speedsms, code):
    esms.script(code)
    assert router.send(sms("a")).provider == "speedsms"
    assert len(esms.requests) == 1
    # cooling down: the next message does not even try eSMS
    assert router.send(sms("b")).provider == "speedsms"
    assert len(esms.requests) == 1
    router.clock = lambda real=router.clock: real() + 1.0  # cool-down (0.5 s) over
    assert router.send(sms("c")).provider == "esms"


@pytest.mark.parametrize("failure", ["http_400", "http_401", "http_429"])
def test_esms_http_errors_are_temporary_and_retried_on_esms(router, esms, speedsms, failure):
    esms.script(failure)
    outcome = router.send(sms())
    assert outcome.status == Status.SENT and outcome.provider == "esms"
    assert len(esms.requests) == 2 and speedsms.requests == [] and not router.cooling("esms")


def test_sms_providers_are_named_in_any_case(provider_config, esms, speedsms):
    assert [c.name for c in clients_from_config({**provider_config, "SMS_PROVIDERS": "SpeedSMS, ESMS"})] == [
        "speedsms", "esms"]


def test_repeated_temporary_errors_cool_a_provider_down(provider_config, esms, speedsms):
    router = SmsRouter.from_config({**provider_config, "SMS_PROVIDER_FAILURE_THRESHOLD": 2})
    esms.always("99")
    assert router.send(sms("a")).provider == "speedsms"
    assert router.cooling("esms")
    assert router.send(sms("b")).provider == "speedsms"
    assert len(esms.requests) == 2


def test_all_providers_down_is_a_temporary_failure(router, esms, speedsms):
    esms.always("http_503")
    speedsms.always("http_502")
    outcome = router.send(sms())
    assert outcome.status == Status.TEMPORARY_FAILURE
    assert "esms http_503" in outcome.error and "speedsms http_502" in outcome.error


def test_a_provider_that_refuses_connections_is_a_temporary_connection_error(provider_config, esms, speedsms):
    from tests.helpers import free_port

    config = {**provider_config, "ESMS_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    [esms_client] = [client for client in clients_from_config(config) if client.name == "esms"]
    with pytest.raises(ProviderError) as refused:
        esms_client.send("11111111-2222-3333-4444-555555555555", "0912345678", "DVC: thu")
    assert refused.value.code == "connection_error" and not refused.value.permanent
    outcome = SmsRouter.from_config(config).send(sms())
    assert outcome.provider == "speedsms" and outcome.status == Status.SENT
    assert esms.requests == [] and len(speedsms.delivered) == 1


def test_the_sms_clients_keep_their_connections_and_honour_the_proxy_settings(monkeypatch):
    import urllib3

    from notify.sms import http_pool

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "speedsms.internal")
    assert isinstance(http_pool("https://rest.esms.vn", 4), urllib3.ProxyManager)
    assert not isinstance(http_pool("https://speedsms.internal", 4), urllib3.ProxyManager)
    monkeypatch.delenv("HTTPS_PROXY")
    assert not isinstance(http_pool("https://rest.esms.vn", 4), urllib3.ProxyManager)


def test_an_invalid_number_at_speedsms_is_permanent(router, esms, speedsms):
    esms.script("101")
    speedsms.script("105")
    assert router.send(sms()).status == Status.PERMANENT_FAILURE


def test_missing_credentials_disable_a_provider_with_one_log_line(provider_config, esms, speedsms, caplog):
    config = {**provider_config, "ESMS_API_KEY": "", "SMS_PROVIDERS": "speedsms,esms"}
    configure_logging()
    logging.getLogger().addHandler(caplog.handler)
    try:
        clients = clients_from_config(config)
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert [client.name for client in clients] == ["speedsms"]
    disabled = [r for r in caplog.records if "sms_provider_disabled" in r.getMessage()]
    assert len(disabled) == 1 and "ESMS_API_KEY" in disabled[0].getMessage()
    assert "esms-secret" not in caplog.text
    assert SmsRouter(clients).send(sms()).provider == "speedsms"


def test_no_provider_at_all_does_not_crash(provider_config):
    router = SmsRouter.from_config({**provider_config, "ESMS_API_KEY": "", "SPEEDSMS_ACCESS_TOKEN": ""})
    outcome = router.send(sms())
    assert outcome.status == Status.TEMPORARY_FAILURE and "no SMS provider" in outcome.error


def _mail(message_id="9d3c7d7e-0000-4000-8000-000000000001", recipient="dao.nguyen@example.vn"):
    return Message(message_id, "email", recipient, "[Dịch vụ công] Hồ sơ STP-1 đã được tiếp nhận",
                   "Kính gửi Ông/Bà Nguyễn Thị Đào,\n\nPhí: 200.000 đ\n", "<p>Phí: 200.000 đ</p>")


def test_smtp_sends_multipart_utf8_with_headers(provider_config, smtp):
    outcome = SmtpMailer.from_config(provider_config).send(_mail())
    assert outcome.status == Status.SENT and outcome.provider == "smtp"
    envelope = smtp.messages[0]
    assert envelope.rcpt_tos == ["dao.nguyen@example.vn"]
    assert envelope.mail_from == "no-reply@dichvucong.test"
    parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert parsed["Subject"] == "[Dịch vụ công] Hồ sơ STP-1 đã được tiếp nhận"
    assert parsed["From"].addresses[0].display_name == "Cổng Dịch vụ công"
    assert parsed["Message-ID"] == "<9d3c7d7e-0000-4000-8000-000000000001@dichvucong.test>"
    assert parsed["Date"] and "+0700" in parsed["Date"]
    assert parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text.get_content_charset() == "utf-8" and "200.000 đ" in text.get_content()
    assert "<p>Phí: 200.000 đ</p>" in html.get_content()


def test_smtp_refused_recipient_is_permanent_and_busy_server_temporary(provider_config, smtp):
    smtp.refuse["nobody@example.vn"] = "550 5.1.1 mailbox unavailable"
    smtp.refuse["later@example.vn"] = "451 4.3.0 try again later"
    mailer = SmtpMailer.from_config(provider_config)
    assert mailer.send(_mail(recipient="nobody@example.vn")).status == Status.PERMANENT_FAILURE
    assert mailer.send(_mail(recipient="later@example.vn")).status == Status.TEMPORARY_FAILURE


def test_smtp_down_is_temporary(provider_config):
    from tests.helpers import free_port

    mailer = SmtpMailer.from_config({**provider_config, "SMTP_PORT": free_port()})
    assert mailer.send(_mail()).status == Status.TEMPORARY_FAILURE
