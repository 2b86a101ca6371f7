"""The sandbox imports nothing of the services, and no production package imports the sandbox."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = ("dossier", "payment", "notify", "portal_sync")


def imported_roots(package_dir):
    """``{top-level module: [file:line, ...]}`` of every import in the package's sources."""
    found = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_the_sandbox_imports_no_service():
    imports = imported_roots(REPO / "services" / "sandbox" / "sandbox")
    assert "sandbox" in imports  # the walk sees the package's own imports
    assert {name: imports[name] for name in SERVICES if name in imports} == {}


@pytest.mark.parametrize("package_dir", [*(f"services/{name}/{name}" for name in SERVICES), "shared/portal_shared"])
def test_no_production_package_imports_the_sandbox_or_keeps_a_fake(package_dir):
    assert imported_roots(REPO / package_dir).get("sandbox") is None
    assert not list((REPO / package_dir).rglob("fakes.py"))
