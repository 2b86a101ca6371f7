"""How the process starts: the Procfile's module, the config file, start-up without secrets."""
import copy
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from nameko.cli.run import import_service

from notify.service import NotifyService
from portal_shared.runtime import autogroup_nice
from tests.helpers import rpc_proxy
from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "services" / "notify" / "config.yml"
CONTRACT_VARIABLES = [
    "AMQP_URI", "SMS_PROVIDERS", "ESMS_BASE_URL", "ESMS_API_KEY", "ESMS_SECRET_KEY", "ESMS_BRANDNAME",
    "SPEEDSMS_BASE_URL", "SPEEDSMS_ACCESS_TOKEN", "SPEEDSMS_SENDER", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME",
    "SMTP_PASSWORD", "SMTP_SECURITY", "MAIL_FROM", "LOG_LEVEL", "LOG_FORMAT",
]


def test_procfile_module_holds_exactly_the_notify_service():
    assert import_service("notify.service") == [NotifyService]


def test_config_maps_every_contract_variable_to_the_same_key():
    text = CONFIG.read_text()
    for name in CONTRACT_VARIABLES:
        assert re.search(rf"^{name}: (!raw_env_var \")?\$\{{{name}:", text, re.M), name
    assert "WEB_SERVER_ADDRESS: ${NOTIFY_HTTP_ADDRESS:0.0.0.0:8001}" in text
    assert 'DATABASE_URL: !raw_env_var "${NOTIFY_DATABASE_URL:sqlite:///var/notify.db}"' in text
    assert "SMS_PROVIDERS: ${SMS_PROVIDERS:esms,speedsms}" in text
    assert "ESMS_BASE_URL: ${ESMS_BASE_URL:https://rest.esms.vn}" in text
    assert "SPEEDSMS_BASE_URL: ${SPEEDSMS_BASE_URL:https://api.speedsms.vn}" in text


@pytest.fixture
def nameko_yaml():
    """Nameko's YAML tags (``${VAR:default}``, ``!env_var``) for this test only: its set-up changes the
    loaders of the whole process, and a later test reading a compose file would see them."""
    from nameko.cli.main import setup_yaml_parser

    loaders = (yaml.SafeLoader, yaml.FullLoader, yaml.Loader, yaml.UnsafeLoader)
    saved = {loader: {name: copy.deepcopy(loader.__dict__[name]) for name in
                      ("yaml_constructors", "yaml_implicit_resolvers") if name in loader.__dict__}
             for loader in loaders}
    setup_yaml_parser()
    yield
    for loader in loaders:
        for name in ("yaml_constructors", "yaml_implicit_resolvers"):
            if name in saved[loader]:
                setattr(loader, name, saved[loader][name])
            elif name in loader.__dict__:
                delattr(loader, name)


def test_config_file_reads_secrets_and_sender_verbatim(monkeypatch, nameko_yaml):
    defaults = yaml.safe_load(CONFIG.read_text())
    assert defaults["MAIL_FROM"] == "Cổng Dịch vụ công <no-reply@dichvucong.localhost>"
    assert defaults["SMS_PROVIDERS"] == "esms,speedsms" and defaults["SMTP_SECURITY"] == "none"
    assert defaults["CPU_NICE"] == -5
    monkeypatch.setenv("SMTP_PASSWORD", "p#ss: {word}")
    monkeypatch.setenv("MAIL_FROM", '"UBND Phường" <noreply@ubnd.gov.vn>')
    monkeypatch.setenv("ESMS_API_KEY", "00123")
    config = yaml.safe_load(CONFIG.read_text())
    assert config["SMTP_PASSWORD"] == "p#ss: {word}"
    assert config["MAIL_FROM"] == '"UBND Phường" <noreply@ubnd.gov.vn>'
    assert config["ESMS_API_KEY"] == "00123"


def test_nameko_run_starts_without_any_secret_and_says_what_is_disabled(rabbit_config, tmp_path):
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ESMS_", "SPEEDSMS_", "SMTP_"))},
        "AMQP_URI": rabbit_config["AMQP_URI"],
        "NOTIFY_DATABASE_URL": f"sqlite:///{tmp_path}/notify.db",
        "NOTIFY_HTTP_ADDRESS": f"127.0.0.1:{port}",
        "SMTP_HOST": "",
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "notify.log"
    with open(log_path, "w") as log_file:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("nameko")), "run", "--config", str(CONFIG), "notify.service"],
            cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
            start_new_session=True,  # as process managers start it: a session, and so an autogroup, of its own
        )
    try:
        deadline = time.monotonic() + 60  # a loaded CI machine starts nameko slowly
        while True:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if ready.status_code == 200 or time.monotonic() > deadline:
                    break  # ready; or never ready in time, which the assertion below reports
            except requests.RequestException:  # not listening yet, or too slow to answer
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)  # listening, but the first readiness check has not run yet
        assert ready.status_code == 200, ready.text + log_path.read_text()[-3000:]
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        # no ESMS_CALLBACK_TOKEN here: every receipt path is refused, and nothing answers 5xx
        assert requests.post(f"http://127.0.0.1:{port}/callbacks/esms", data="garbage", timeout=2).status_code == 404
        assert requests.post(f"http://127.0.0.1:{port}/callbacks/esms/x", data="garbage", timeout=2).status_code == 404
        # CPU_NICE's default, -5: taken where the process may raise its weight (CAP_SYS_NICE), said where not
        if os.geteuid() == 0:
            assert os.getpriority(os.PRIO_PROCESS, process.pid) == -5
            assert autogroup_nice(f"/proc/{process.pid}/autogroup") in (None, -5)  # None: no autogroup shown
            assert '"cpu_weight_set"' in log_path.read_text()
        else:
            assert os.getpriority(os.PRIO_PROCESS, process.pid) == 0
            assert '"cpu_weight_refused"' in log_path.read_text()
        # the RPC consumer is up too (and stopping before it is would trip a nameko 2.14 race in shutdown)
        with rpc_proxy(rabbit_config) as rpc:
            assert rpc.notify.get_notifications("NONE") == []
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise AssertionError("no clean stop on SIGTERM:\n" + log_path.read_text()[-3000:])
    output = log_path.read_text()
    assert output.count('"sms_provider_disabled"') == 2, output[-3000:]
    assert '"email_disabled"' in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
