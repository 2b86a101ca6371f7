import pytest
from aiosmtpd.controller import Controller

from sandbox.fakes import FakeEsms, FakeSpeedSms, RecordingSmtpHandler
from notify.service import NotifyService
from tests.helpers import free_port


# A scripted "timeout" keeps the caller waiting longer than the client's timeout, so the
# client really times out; the client's timeout is long enough for a loaded machine's answer
# (a timeout fails over to the next provider at once, so a slow answer would change the provider).
CLIENT_TIMEOUT_SECONDS = 2.0
HANG_SECONDS = 4.0


ESMS_CALLBACK_TOKEN = "t0k3n-Receipts_only-for-eSMS"


@pytest.fixture(scope="session")
def notify_database(fresh_database):
    return fresh_database("notify")


@pytest.fixture
def esms():
    fake = FakeEsms(timeout_seconds=HANG_SECONDS).start()
    yield fake
    fake.stop()


@pytest.fixture
def speedsms():
    fake = FakeSpeedSms(timeout_seconds=HANG_SECONDS).start()
    yield fake
    fake.stop()


@pytest.fixture
def smtp():
    handler = RecordingSmtpHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    handler.port = controller.port
    yield handler
    controller.stop()


@pytest.fixture
def provider_config(esms, speedsms, smtp):
    """Configuration of the channels only (no broker, no database)."""
    return {
        "SMS_PROVIDERS": "esms,speedsms",
        "ESMS_BASE_URL": esms.base_url,
        "ESMS_API_KEY": esms.api_key,
        "ESMS_SECRET_KEY": esms.secret_key,
        "ESMS_BRANDNAME": esms.brandname,
        "SPEEDSMS_BASE_URL": speedsms.base_url,
        "SPEEDSMS_ACCESS_TOKEN": speedsms.access_token,
        "SPEEDSMS_SENDER": speedsms.sender,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": smtp.port,
        "SMTP_SECURITY": "none",
        "MAIL_FROM": "Cổng Dịch vụ công <no-reply@dichvucong.test>",
        "NOTIFY_CALLBACK_BASE_URL": "http://notify.test",
        "ESMS_CALLBACK_TOKEN": ESMS_CALLBACK_TOKEN,
        "SMS_HTTP_TIMEOUT_SECONDS": CLIENT_TIMEOUT_SECONDS,
        "SMS_PROVIDER_COOLDOWN_SECONDS": 0.5,
    }


@pytest.fixture
def notify_config(rabbit_config, notify_database, provider_config):
    notify_database.truncate()
    return {
        **rabbit_config,
        **provider_config,
        "DATABASE_URL": notify_database.url,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
        "EVENT_RETRY_BACKOFF_SECONDS": 0.05,
        "NOTIFY_RETRY_TICK_SECONDS": 0.1,
        "NOTIFY_BACKOFF_SECONDS": 0.05,
        "NOTIFY_MAX_ATTEMPTS": 3,
    }


@pytest.fixture
def notify_container(container_factory, notify_config):
    container = container_factory(NotifyService, notify_config)
    container.start()
    return container


@pytest.fixture(autouse=True)
def _quiet_smtp_server_log():
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)
