"""portal_shared's framework-free core, and the command-line tools that use only it.

Each check runs in a fresh interpreter: what a module imports is what
``sys.modules`` holds after importing it alone.
"""
import json
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORE = ROOT / "shared" / "portal_shared"
# the backend's own packages; the sandbox's commands drive the services over Nameko RPC
PACKAGES = ("shared", "services/dossier", "services/payment", "services/notify", "services/portal_sync")
FRAMEWORK = ("nameko", "eventlet")


def console_modules():
    """The module of every console script the backend's packages install."""
    modules = set()
    for package in PACKAGES:
        pyproject = ROOT / package / "pyproject.toml"
        if pyproject.exists():
            scripts = tomllib.loads(pyproject.read_text())["project"].get("scripts", {})
            modules |= {target.split(":")[0] for target in scripts.values()}
    return sorted(modules)


def core_modules():
    """Every module at the top of ``portal_shared``; ``deadletters`` talks to the broker through kombu."""
    return sorted(f"portal_shared.{path.stem}" for path in CORE.glob("*.py")
                  if path.stem not in ("__init__", "deadletters"))


def loaded_after_import(module, watched):
    code = (f"import importlib, json, sys; importlib.import_module({module!r}); "
            f"print(json.dumps([name for name in {list(watched)!r} if name in sys.modules]))")
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_console_scripts_include_the_operator_tools():
    assert {"payment.recon_cli", "portal_sync.cli", "notify.resend", "portal_shared.migrations",
            "portal_shared.auth", "portal_shared.deadletters"} <= set(console_modules())


@pytest.mark.parametrize("module", console_modules())
def test_a_command_line_tool_imports_neither_nameko_nor_eventlet(module):
    assert loaded_after_import(module, FRAMEWORK) == []


@pytest.mark.parametrize("module", core_modules())
def test_a_core_module_imports_no_framework_and_no_broker_client(module):
    assert loaded_after_import(module, FRAMEWORK + ("kombu",)) == []


def test_the_nameko_part_is_apart_from_the_core():
    assert loaded_after_import("portal_shared.extensions.database", FRAMEWORK) == list(FRAMEWORK)
