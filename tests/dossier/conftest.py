import pytest

from dossier.service import DossierService


@pytest.fixture(scope="session")
def dossier_database(fresh_database):
    return fresh_database("dossier")


@pytest.fixture
def dossier_config(rabbit_config, dossier_database):
    dossier_database.truncate()
    return {
        **rabbit_config,
        "DATABASE_URL": dossier_database.url,
        "WEB_SERVER_ADDRESS": "127.0.0.1:0",
        "OUTBOX_SWEEP_SECONDS": 0.5,
        "EVENT_RETRY_BACKOFF_SECONDS": 0.05,
    }


@pytest.fixture
def dossier_container(container_factory, dossier_config):
    container = container_factory(DossierService, dossier_config)
    container.start()
    return container


@pytest.fixture
def applicant():
    return {
        "full_name": "Nguyễn Văn An",
        "id_number": "001099012345",
        "phone": "+84 912 345 678",
        "email": "an.nguyen@example.vn",
        "address": "12 Tràng Tiền, Hoàn Kiếm, Hà Nội",
    }
