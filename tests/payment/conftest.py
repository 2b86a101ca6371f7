import pytest
import requests
import sqlalchemy as sa
from nameko.standalone.events import event_dispatcher

from sandbox.fakes import FakeMomo, FakeVnpay
from payment.orm import charges, payment_history, payments
from payment.service import PaymentService
from portal_shared.outbox import new_event
from tests.helpers import free_port, wait_for


@pytest.fixture(scope="session")
def payment_database(fresh_database):
    return fresh_database("payment")


@pytest.fixture
def fake_vnpay():
    fake = FakeVnpay().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_momo():
    fake = FakeMomo().start()
    yield fake
    fake.stop()


def make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo, **overrides):
    port = free_port()
    return {
        **rabbit_config,
        "DATABASE_URL": payment_database.url,
        "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}",
        "PAYMENT_CALLBACK_BASE_URL": f"http://127.0.0.1:{port}",
        "PAYMENT_EXPIRY_MINUTES": 15,
        "PAYMENT_PENDING_CHECK_SECONDS": 3600,  # tests of the timer turn it down
        "VNPAY_TMN_CODE": fake_vnpay.tmn_code,
        "VNPAY_HASH_SECRET": fake_vnpay.hash_secret,
        "VNPAY_PAYMENT_URL": fake_vnpay.payment_url,
        "VNPAY_API_URL": fake_vnpay.api_url,
        "MOMO_PARTNER_CODE": fake_momo.partner_code,
        "MOMO_ACCESS_KEY": fake_momo.access_key,
        "MOMO_SECRET_KEY": fake_momo.secret_key,
        "MOMO_API_BASE": fake_momo.api_base,
        "OUTBOX_SWEEP_SECONDS": 0.5,
        "EVENT_RETRY_BACKOFF_SECONDS": 0.05,
        "PAYMENT_RETURN_URL_ORIGINS": "https://dichvucong.example.vn,https://portal.example",
        **overrides,
    }


@pytest.fixture
def payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo):
    payment_database.truncate()
    return make_payment_config(rabbit_config, payment_database, fake_vnpay, fake_momo)


@pytest.fixture
def start_payment_service(container_factory):
    def start(config):
        container = container_factory(PaymentService, config)
        container.start()
        return container

    return start


@pytest.fixture
def payment_container(start_payment_service, payment_config):
    return start_payment_service(payment_config)


class PaymentDb:
    """Direct reads of the payment database, for assertions."""

    def __init__(self, engine):
        self.engine = engine

    def payment(self, txn_ref):
        with self.engine.connect() as connection:
            return connection.execute(sa.select(payments).where(payments.c.txn_ref == txn_ref)).mappings().first()

    def history(self, txn_ref):
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(payment_history).where(payment_history.c.txn_ref == txn_ref).order_by(payment_history.c.id)
            ).mappings().all()

    def charge(self, dossier_code):
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(charges).where(charges.c.dossier_code == dossier_code)).mappings().first()

    def set_expires_at(self, txn_ref, moment):
        with self.engine.begin() as connection:
            connection.execute(payments.update().where(payments.c.txn_ref == txn_ref).values(expires_at=moment))


@pytest.fixture
def start_dossier(container_factory, rabbit_config, fresh_database):
    """Start the dossier service on a fresh database; returns its config (for its RPC proxies) with the
    database under ``database``."""

    def start():
        from dossier.service import DossierService  # late: payment's own tests need no dossier import

        database = fresh_database("dossier")
        database.truncate()
        config = {**rabbit_config, "DATABASE_URL": database.url, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}",
                  "OUTBOX_SWEEP_SECONDS": 0.5, "EVENT_RETRY_BACKOFF_SECONDS": 0.05}
        container_factory(DossierService, config).start()
        return {**config, "database": database}

    return start


@pytest.fixture
def payment_db(payment_database):
    return PaymentDb(payment_database.engine)


@pytest.fixture
def announce(rabbit_config, payment_db):
    """Publish a dossier_status_changed event as the dossier service would, and wait for its effect."""
    dispatch = event_dispatcher(rabbit_config)

    def announce(dossier_code, new_status="payment_requested", fee_amount=200000, wait=True):
        event = new_event(
            dossier_code=dossier_code, procedure_code="LLTP-01", procedure_name="Cấp Phiếu lý lịch tư pháp",
            agency_code="STP-HN", old_status="accepted", new_status=new_status, status_code=6,
            fee_amount=fee_amount, due_at=None, applicant={"full_name": "Nguyễn Văn An", "phone": None, "email": None},
            note=None,
        )
        dispatch("dossier", "dossier_status_changed", event)
        if wait and new_status == "payment_requested":
            wait_for(lambda: payment_db.charge(dossier_code), message=f"charge of {dossier_code}")
        return event

    return announce


def vnpay_ipn(config, params):
    """Deliver a VNPay IPN as VNPay does (GET with the query string); returns the JSON answer."""
    response = requests.get(f"http://{config['WEB_SERVER_ADDRESS']}/callbacks/vnpay/ipn", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def momo_ipn(config, body):
    return requests.post(f"http://{config['WEB_SERVER_ADDRESS']}/callbacks/momo/ipn", json=body, timeout=30)
