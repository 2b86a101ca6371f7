"""Fail closed: the sandbox beside real credentials, published secrets, SMTP without TLS, YAML-mangled secrets."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from payment.gateways.provider import PUBLISHED_SANDBOX_SECRETS, check_not_published
from portal_shared.config import ConfigError
from sandbox.config import DUMMY
from sandbox.guard import refusal

ROOT = Path(__file__).resolve().parents[2]
SANDBOX_URLS = {"VNPAY_PAYMENT_URL": "http://127.0.0.1:8090/paymentv2/vpcpay.html",
                "VNPAY_API_URL": "http://127.0.0.1:8090/merchant_webapi/api/transaction"}


def test_the_sandbox_needs_sandbox_1():
    assert "SANDBOX=1" in refusal({})
    assert refusal({"SANDBOX": "1"}) is None


def test_the_sandbox_refuses_real_credentials_and_public_listeners():
    real = {"SANDBOX": "1", "VNPAY_TMN_CODE": "REALTMN1", "VNPAY_HASH_SECRET": "real-secret"}
    assert "real VNPay credential" in refusal(real)
    assert refusal({**real, **SANDBOX_URLS}) is None  # credentials for the sandbox itself (e2e)
    assert "MoMo" in refusal({"SANDBOX": "1", "MOMO_SECRET_KEY": "k", "MOMO_API_BASE": "https://payment.momo.vn"})
    assert "SMTP" in refusal({"SANDBOX": "1", "SMTP_PASSWORD": "pw", "SMTP_HOST": "smtp.gmail.com"})
    assert "loopback" in refusal({"SANDBOX": "1", "SANDBOX_HTTP_ADDRESS": "0.0.0.0:8090"})


def test_a_container_sandbox_needs_network_mode_and_accepts_only_its_own_name():
    container = {"SANDBOX": "1", "SANDBOX_HTTP_ADDRESS": "0.0.0.0:8090", "SANDBOX_PUBLIC_URL": "http://sandbox:8090",
                 "VNPAY_TMN_CODE": "SANDBOX01", "VNPAY_HASH_SECRET": "SANDBOXVNPAYHASHSECRET0123456789",
                 "VNPAY_PAYMENT_URL": "http://sandbox:8090/paymentv2/vpcpay.html",
                 "VNPAY_API_URL": "http://sandbox:8090/merchant_webapi/api/transaction"}
    assert refusal(container) is not None  # no explicit network mode: refused
    assert "loopback" in refusal({"SANDBOX": "1", "SANDBOX_HTTP_ADDRESS": "0.0.0.0:8090"})
    assert refusal({**container, "SANDBOX_ALLOW_NETWORK": "1"}) is None
    # network mode does not make a real gateway "this sandbox"
    real = {**container, "SANDBOX_ALLOW_NETWORK": "1", "VNPAY_API_URL": "https://merchant.vnpay.vn/api"}
    assert "real VNPay credential" in refusal(real)
    assert "SMTP" in refusal({**container, "SANDBOX_ALLOW_NETWORK": "1", "SMTP_PASSWORD": "pw",
                              "SMTP_HOST": "smtp.gmail.com"})


def test_the_sandbox_process_exits_when_a_real_secret_is_set():
    env = {key: value for key, value in os.environ.items() if not key.startswith(("VNPAY_", "MOMO_", "SANDBOX"))}
    env.update({"SANDBOX": "1", "VNPAY_HASH_SECRET": "a-real-merchant-secret", "VNPAY_TMN_CODE": "REALTMN1",
                "SANDBOX_HTTP_ADDRESS": "127.0.0.1:0", "SANDBOX_SMTP_ADDRESS": "127.0.0.1:0"})
    finished = subprocess.run([sys.executable, "-m", "sandbox"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=ROOT)
    assert finished.returncode == 2
    assert "refuses to start" in finished.stderr and "a-real-merchant-secret" not in finished.stderr


def test_payment_refuses_the_sandbox_s_published_secrets_outside_dev_mode():
    assert all(DUMMY[key] == value for key, value in PUBLISHED_SANDBOX_SECRETS.items())
    config = {"VNPAY_HASH_SECRET": DUMMY["VNPAY_HASH_SECRET"], "PORTAL_DEV_MODE": "0"}
    with pytest.raises(ConfigError, match="VNPAY_HASH_SECRET"):
        check_not_published(config)
    check_not_published({**config, "PORTAL_DEV_MODE": "1"})
    check_not_published({"VNPAY_HASH_SECRET": "another-secret", "PORTAL_DEV_MODE": "0"})


def test_a_payment_container_with_a_published_secret_does_not_start(container_factory, rabbit_config):
    from payment.service import PaymentService

    config = {**rabbit_config, "DATABASE_URL": "sqlite://", "WEB_SERVER_ADDRESS": "127.0.0.1:0",
              "MOMO_SECRET_KEY": DUMMY["MOMO_SECRET_KEY"], "PORTAL_DEV_MODE": "0"}
    with pytest.raises(ConfigError, match="MOMO_SECRET_KEY"):
        container_factory(PaymentService, config).start()


def test_smtp_security_is_checked_at_start_up():
    from notify.mail import SmtpMailer

    with pytest.raises(ConfigError, match="SMTP_SECURITY"):
        SmtpMailer.from_config({"SMTP_HOST": "smtp.example.vn", "SMTP_SECURITY": "tls"})
    with pytest.raises(ConfigError, match="SMTP_ALLOW_PLAINTEXT_AUTH"):
        SmtpMailer.from_config({"SMTP_HOST": "smtp.example.vn", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"})
    assert SmtpMailer.from_config({"SMTP_HOST": "smtp.example.vn", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p",
                                   "SMTP_ALLOW_PLAINTEXT_AUTH": "1"}).security == "none"
    assert SmtpMailer.from_config({"SMTP_HOST": "smtp.example.vn", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p",
                                   "SMTP_SECURITY": "starttls"}).security == "starttls"


@pytest.mark.parametrize("service", ["dossier", "payment", "notify"])
def test_secrets_in_the_config_files_are_read_verbatim(service, monkeypatch):
    from functools import partial

    from nameko.cli.main import IMPLICIT_ENV_VAR_MATCHER, env_var_constructor

    class Loader(yaml.SafeLoader):  # nameko's parser, without touching the global SafeLoader
        pass

    Loader.add_constructor("!env_var", env_var_constructor)
    Loader.add_constructor("!raw_env_var", partial(env_var_constructor, raw=True))
    Loader.add_implicit_resolver("!env_var", IMPLICIT_ENV_VAR_MATCHER, None)
    values = {"AMQP_URI": "amqp://u:abc #x@h:5672/", "VNPAY_HASH_SECRET": "0123456701234567",
              "MOMO_SECRET_KEY": "abc #x", "MOMO_ACCESS_KEY": "*x", "MOMO_PARTNER_CODE": "0x1F",
              "SMTP_PASSWORD": "*pw #1", "ESMS_SECRET_KEY": "0012", "DOSSIER_DATABASE_URL": "postgresql://u:p #w@h/d",
              "PAYMENT_DATABASE_URL": "postgresql://u:p #w@h/d", "NOTIFY_DATABASE_URL": "postgresql://u:p #w@h/d"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    config = yaml.load((ROOT / "services" / service / "config.yml").read_text(), Loader=Loader)
    assert config["AMQP_URI"] == values["AMQP_URI"]
    assert config["DATABASE_URL"] == "postgresql://u:p #w@h/d"
    for name in ("VNPAY_HASH_SECRET", "MOMO_SECRET_KEY", "MOMO_ACCESS_KEY", "MOMO_PARTNER_CODE", "SMTP_PASSWORD",
                 "ESMS_SECRET_KEY"):
        if name in config:
            assert config[name] == values[name], name
