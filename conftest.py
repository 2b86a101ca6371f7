"""Root conftest: green threads first, then the project's fixtures."""
import os
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

# Every RPC needs a caller token signed with AUTH_JWT_SECRET: one key for the whole
# session, services in-process and the e2e processes alike (see tests/helpers.py).
os.environ.setdefault("AUTH_JWT_SECRET", "test-only-jwt-secret-0123456789abcdef0123456789")
# payment signs its events for dossier with this key; tests of the unsigned path unset it
os.environ.setdefault("PAYMENT_EVENT_KEY", "test-only-payment-event-key-0123456789abcdef")

pytest_plugins = ["portal_shared.testing.plugin"]
