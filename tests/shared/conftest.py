import pytest


@pytest.fixture
def shared_config(rabbit_config, fresh_database):
    database = fresh_database("dossier")  # any service's schema holds the outbox and inbox
    database.truncate()
    return {
        **rabbit_config,
        "DATABASE_URL": database.url,
        "EVENT_MAX_ATTEMPTS": 3,
        "EVENT_RETRY_BACKOFF_SECONDS": 0.05,
    }
