"""Loaders for the deployment files checked by tests/infra (no broker, no database)."""
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# The interface reference kept in the repository (section 1: processes and configuration).
CONTRACT = REPO / "docs" / "reference.md"
SERVICES = {"dossier": 8002, "payment": 8000, "notify": 8001}
K8S_DIR = REPO / "infra" / "k8s"
# Kubernetes release the manifests must be valid for (schemas vendored in kubernetes-validate).
K8S_VERSION = "1.30"
# Contract variables that hold credentials: Secret in Kubernetes, never a literal in compose.
SECRET_VARIABLES = {
    "AMQP_URI",
    "AUTH_JWT_SECRET",
    "PAYMENT_EVENT_KEY",
    "DOSSIER_DATABASE_URL",
    "PAYMENT_DATABASE_URL",
    "NOTIFY_DATABASE_URL",
    "VNPAY_HASH_SECRET",
    "MOMO_ACCESS_KEY",
    "MOMO_SECRET_KEY",
    "ESMS_API_KEY",
    "ESMS_SECRET_KEY",
    "ESMS_CALLBACK_TOKEN",
    "SPEEDSMS_ACCESS_TOKEN",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
}


def parse_contract_variables(text):
    """``{variable: {services using it}}`` from the table of CONTRACT section 1."""
    section = re.search(r"^## 1\..*?(?=^## 2\.)", text, re.S | re.M)
    if section is None:
        raise ValueError("the reference has no section 1 followed by a section 2")
    variables = {}
    for line in section.group(0).splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        names = re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0])
        if not names or len(cells) < 2:
            continue  # header or separator row
        used_by = cells[1].lower()
        for name in names:
            if used_by == "all":
                users = set(SERVICES)
            elif used_by == "each its own":
                users = {name.split("_", 1)[0].lower()}
            else:
                users = {service for service in SERVICES if re.search(rf"\b{service}\b", used_by)}
            if not users or not users <= set(SERVICES):
                raise ValueError(f"cannot tell which service uses {name}: {cells[1]!r}")
            variables[name] = users
    if not variables:
        raise ValueError("found no variable in the table of CONTRACT section 1")
    return variables


@pytest.fixture(scope="session")
def contract_variables():
    if not CONTRACT.is_file():
        pytest.fail(
            f"the interface reference is missing: expected {CONTRACT}; "
            "the configuration table of its section 1 is what these tests check",
            pytrace=False,
        )
    return parse_contract_variables(CONTRACT.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def load_k8s_documents():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    documents = []
    for resource in kustomization["resources"]:
        path = K8S_DIR / resource
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append((resource, document))
    return documents


@pytest.fixture(scope="session")
def k8s_documents():
    return load_k8s_documents()


def k8s_objects(documents, kind):
    return {doc["metadata"]["name"]: doc for _, doc in documents if doc["kind"] == kind}
