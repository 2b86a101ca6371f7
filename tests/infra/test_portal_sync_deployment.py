"""portal_sync in the deployment files: its variables (CONTRACT section 6), its broker user, its database."""
import json
import re

import pytest
import yaml

from tests.infra.conftest import K8S_DIR, REPO, k8s_objects
from tests.infra.test_configuration import compose_environment, k8s_environment
from tests.infra.test_rabbitmq import allowed, env_example, load_hash_helper

# CONTRACT section 6, plus what every process reads (sections 1 and 5) and the catalogue it shares with dossier.
VARIABLES = {
    "AMQP_URI", "AUTH_JWT_SECRET", "AUTH_JWT_ISSUER", "LOG_LEVEL", "LOG_FORMAT", "DOSSIER_PROCEDURES_FILE",
    "PORTAL_SYNC_DATABASE_URL", "PORTAL_SYNC_HTTP_ADDRESS", "NATIONAL_PORTAL_URL", "NATIONAL_PORTAL_AUTH_PATH",
    "NATIONAL_PORTAL_INTEGRATION_PATH", "NATIONAL_PORTAL_USERNAME", "NATIONAL_PORTAL_PASSWORD",
    "NATIONAL_PORTAL_AGENCY_CODE",
}
SECRETS = {"AMQP_URI", "AUTH_JWT_SECRET", "PORTAL_SYNC_DATABASE_URL", "NATIONAL_PORTAL_USERNAME", "NATIONAL_PORTAL_PASSWORD"}


def test_compose_gives_portal_sync_exactly_its_variables_and_credentials_by_interpolation(compose):
    environment = compose_environment(compose, "portal_sync")
    # PORTAL_DEV_MODE: every compose service's switch for the sandbox profile (empty otherwise)
    assert set(environment) - {"PORTAL_DEV_MODE"} == VARIABLES
    for name in SECRETS:
        value = str(environment[name])
        secret = re.match(r"^[a-z]+://[^:/@]+:([^@]*)@", value)
        assert re.match(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$", secret.group(1) if secret else value), name
        assert not re.search(r"\$\{[A-Z0-9_]+:?-[^}]", secret.group(1) if secret else value), name
    assert compose["services"]["portal_sync"]["deploy"]["replicas"] == 2
    assert "PORTAL_SYNC_DB_PASSWORD" in compose["services"]["postgres"]["environment"]


def test_kubernetes_gives_portal_sync_exactly_its_variables_with_credentials_in_a_secret():
    documents = []
    for resource in yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())["resources"]:
        documents += [(resource, doc) for doc in yaml.safe_load_all((K8S_DIR / resource).read_text()) if doc]
    deployment = k8s_objects(documents, "Deployment")["portal-sync"]
    environment = k8s_environment(documents, "portal-sync")
    assert set(environment) == VARIABLES
    for name, (kind, _) in environment.items():
        assert kind == ("Secret" if name in SECRETS else "ConfigMap"), name
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-1] == "portal_sync.service:PortalSyncService"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("operation, resource, expected", [
    ("configure", "rpc-portal_sync", True),
    ("read", "rpc-portal_sync", True),
    ("read", "dossier.events", True),
    ("read", "payment.events", True),
    ("configure", "evt-dossier-dossier_status_changed--portal_sync.on_dossier_status_changed", True),
    ("configure", "evt-payment-payment_succeeded--portal_sync.on_payment_succeeded.retry", True),
    ("write", "amq.default", False),  # retries and dead letters go through portal_sync.retries
    ("write", "portal_sync.retries", True),
    ("write", "nameko-rpc", True),
    ("configure", "rpc.reply-portal_sync-5b1c0d0e-7d1f-4a36-9d1e-0d5d1b2f9c11", True),
    ("write", "dossier.events", False),
    ("write", "payment.events", False),
    ("read", "rpc-dossier", False),
    ("read", "evt-dossier-dossier_status_changed--notify.on_status_changed", False),
    ("read", "rpc.reply-dossier-5b1c0d0e", False),
])
def test_the_portal_sync_broker_user_has_least_privilege(operation, resource, expected):
    assert allowed("portal_sync", operation, resource) is expected


def test_the_portal_sync_placeholder_hash_matches_the_example_password():
    definitions = json.loads((REPO / "infra" / "rabbitmq" / "definitions.json").read_text())
    (user,) = [user for user in definitions["users"] if user["name"] == "portal_sync"]
    assert load_hash_helper()["check_password"](env_example()["PORTAL_SYNC_AMQP_PASSWORD"], user["password_hash"])
    assert user["tags"] == []


def test_portal_sync_has_a_database_and_a_procfile_line():
    init = (REPO / "infra" / "postgres" / "10-create-service-databases.sh").read_text()
    assert re.search(r"for service in .*\bportal_sync\b", init)
    procfile = (REPO / "Procfile").read_text()
    assert re.search(r"^portal_sync: nameko run --config services/portal_sync/config.yml ", procfile, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^IMAGE_SERVICES \?=.*\bportal_sync:8003\b", makefile, re.M)  # built from the one Dockerfile
