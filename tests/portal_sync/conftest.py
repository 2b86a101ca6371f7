"""Fixtures of the portal_sync tests: the real dossier service, portal_sync, and the fake adapter."""
import pytest
from nameko.standalone.events import event_dispatcher

from dossier.procedures import load_catalogue, parse_national_codes
from dossier.service import DossierService
from portal_shared.db import UnitOfWork
from sandbox.fakes import FakeNationalPortal
from portal_sync.service import PortalSyncService
from sqlalchemy.orm import sessionmaker
# The real payment service settles fees here (dossier checks every payment event with it).
from tests.payment.conftest import (fake_momo, fake_vnpay, payment_config, payment_container,  # noqa: F401
                                    payment_database, payment_db, start_payment_service)

USERNAME, PASSWORD, AGENCY = "lgsp-test", "lgsp-test-password", "000.00.00.H29"


@pytest.fixture(scope="session")
def sync_database(fresh_database):
    return fresh_database("portal_sync")


@pytest.fixture(scope="session")
def dossier_db(fresh_database):
    return fresh_database("dossier")


@pytest.fixture
def national_portal():
    procedures = {entry["national_code"] or code: {"name": entry["name"], "field_code": entry["field_code"],
                                                    "field_name": entry["field_name"]}
                  for code, entry in load_catalogue(parse=parse_national_codes).items()}
    fake = FakeNationalPortal(username=USERNAME, password=PASSWORD, agency_code=AGENCY, procedures=procedures,
                              hang_seconds=2.0).start()
    yield fake
    fake.stop()


@pytest.fixture
def portal_settings(national_portal):
    return {
        "NATIONAL_PORTAL_URL": national_portal.base_url,
        "NATIONAL_PORTAL_USERNAME": USERNAME,
        "NATIONAL_PORTAL_PASSWORD": PASSWORD,
        "NATIONAL_PORTAL_AGENCY_CODE": AGENCY,
        "PORTAL_SYNC_HTTP_TIMEOUT_SECONDS": 1.0,
    }


@pytest.fixture
def dossier_config(rabbit_config, dossier_db):
    dossier_db.truncate()
    return {**rabbit_config, "DATABASE_URL": dossier_db.url, "WEB_SERVER_ADDRESS": "127.0.0.1:0",
            "OUTBOX_SWEEP_SECONDS": 0.5, "EVENT_RETRY_BACKOFF_SECONDS": 0.05}


@pytest.fixture
def sync_config(rabbit_config, sync_database, portal_settings):
    sync_database.truncate()
    return {**rabbit_config, **portal_settings, "DATABASE_URL": sync_database.url,
            "WEB_SERVER_ADDRESS": "127.0.0.1:0", "EVENT_RETRY_BACKOFF_SECONDS": 0.05,
            "PORTAL_SYNC_TICK_SECONDS": 0.2, "PORTAL_SYNC_BACKOFF_SECONDS": 0.2,
            "PORTAL_SYNC_MAX_BACKOFF_SECONDS": 1.0}


@pytest.fixture
def dossier_service(container_factory, dossier_config):
    container = container_factory(DossierService, dossier_config)
    container.start()
    return container


@pytest.fixture
def start_sync(container_factory, sync_config):
    """Start a portal_sync container (``start_sync(NATIONAL_PORTAL_URL="")`` to change a setting)."""
    def start(**overrides):
        container = container_factory(PortalSyncService, {**sync_config, **overrides})
        container.start()
        return container
    return start


@pytest.fixture
def sync_uow(sync_database):
    uow = UnitOfWork(sessionmaker(bind=sync_database.engine, expire_on_commit=False), None)
    yield uow
    uow.close()


@pytest.fixture
def dispatch_payment_event(rabbit_config):
    """Publish a payment service event as the payment service would."""
    dispatch = event_dispatcher(rabbit_config)

    def send(event_type, payload):
        dispatch("payment", event_type, payload)
    return send


@pytest.fixture
def applicant():
    return {"full_name": "Trần Thị Bình", "id_number": "079188001234", "phone": "0987654321",
            "email": "binh.tran@example.vn", "address": "5 Lê Lợi, Quận 1, TP. Hồ Chí Minh"}
