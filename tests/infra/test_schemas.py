"""The compose file and the Kubernetes manifests against their published JSON schemas.

Both schemas are vendored inside PyPI packages (check-jsonschema's copy of the
Compose specification, kubernetes-validate's Kubernetes OpenAPI schemas), so
nothing is downloaded at test time. Each validator is also shown a broken copy,
to prove it can fail.
"""
import copy
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.infra.conftest import K8S_DIR, K8S_VERSION, REPO, load_k8s_documents

CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")


def check_compose_file(path):
    """Run check-jsonschema with its vendored Compose specification schema."""
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_compose_file_follows_the_compose_specification():
    result = check_compose_file(REPO / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_validator_rejects_a_broken_compose_file(tmp_path):
    broken = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    broken["services"]["payment"]["deploy"] = {"replicas": "two", "restart_policy": "sometimes"}
    broken["services"]["dossier"]["depends_on"] = {"rabbitmq": {"condition": "when_it_feels_like_it"}}
    broken["services"]["notify"]["healtcheck"] = {"test": "true"}  # misspelt key
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = check_compose_file(path)
    assert result.returncode != 0
    assert "healtcheck" in result.stdout + result.stderr


def validate_k8s(document):
    """Strict validation (unknown fields rejected); a kind without a schema is an error too."""
    kubernetes_validate.validate(document, K8S_VERSION, strict=True)


@pytest.mark.parametrize(
    "resource, document",
    load_k8s_documents(),
    ids=lambda value: value if isinstance(value, str) else f"{value['kind']}/{value['metadata']['name']}",
)
def test_each_kubernetes_manifest_follows_the_kubernetes_schema(resource, document):
    try:
        validate_k8s(document)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        pytest.fail(f"{resource}: {document['kind']}/{document['metadata']['name']}: {path}: {error.message}")


def deployment(name):
    return next(doc for _, doc in load_k8s_documents() if doc["kind"] == "Deployment" and doc["metadata"]["name"] == name)


@pytest.mark.parametrize(
    "breakage",
    [
        lambda d: d["spec"].__setitem__("replicas", "two"),
        lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("readinesProbe", {}),
        lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].pop("containerPort"),
        lambda d: d["spec"].pop("selector"),
    ],
    ids=["replicas-not-integer", "misspelt-field", "port-without-number", "no-selector"],
)
def test_the_kubernetes_validator_rejects_a_broken_deployment(breakage):
    broken = copy.deepcopy(deployment("payment"))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(broken)


def test_the_kubernetes_validator_rejects_an_unknown_api_version():
    hpa = {"apiVersion": "autoscaling/v9", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"}}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        validate_k8s(hpa)


def test_the_kustomization_lists_every_manifest_of_the_folder():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == "portal"
    on_disk = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk
    images = {image["name"] for image in kustomization["images"]}
    assert images == {"portal/dossier", "portal/payment", "portal/notify", "portal/portal_sync"}
