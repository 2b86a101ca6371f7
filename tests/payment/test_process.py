"""How the process is started: the Procfile's module, the config file, RPC wiring."""
import re
from pathlib import Path

import pytest
from nameko.cli.run import import_service
from nameko.exceptions import RemoteError

from payment.service import PaymentService
from tests.helpers import rpc_proxy

CONFIG = Path(__file__).resolve().parents[2] / "services" / "payment" / "config.yml"
CONTRACT_VARIABLES = [
    "AMQP_URI", "PAYMENT_CALLBACK_BASE_URL", "PAYMENT_EXPIRY_MINUTES", "PAYMENT_PENDING_CHECK_SECONDS",
    "VNPAY_TMN_CODE", "VNPAY_HASH_SECRET", "VNPAY_PAYMENT_URL", "VNPAY_API_URL", "MOMO_PARTNER_CODE",
    "MOMO_ACCESS_KEY", "MOMO_SECRET_KEY", "MOMO_API_BASE", "LOG_LEVEL", "LOG_FORMAT",
]


def test_procfile_module_holds_exactly_the_payment_service():
    assert import_service("payment.service") == [PaymentService]


def test_config_maps_every_contract_variable_to_the_same_key():
    text = CONFIG.read_text()
    for name in CONTRACT_VARIABLES:
        # secrets and URLs with passwords are !raw_env_var: taken verbatim, never re-parsed as YAML
        assert re.search(rf"^{name}: (!raw_env_var \")?\$\{{{name}:", text, re.M), name
    assert "WEB_SERVER_ADDRESS: ${PAYMENT_HTTP_ADDRESS:0.0.0.0:8000}" in text
    assert 'DATABASE_URL: !raw_env_var "${PAYMENT_DATABASE_URL:sqlite:///var/payment.db}"' in text


def test_reconcile_rpc_validates_and_reaches_reconciliation(payment_container, payment_config):
    with rpc_proxy(payment_config) as rpc:
        with pytest.raises(RemoteError) as error:
            rpc.payment.reconcile("paypal", "")
        assert error.value.exc_type == "ValidationError" and "gateway" in error.value.value
        report = rpc.payment.reconcile("vnpay", "txn_ref,gateway_txn_no,amount,status,paid_at\n")
        assert report["gateway"] == "vnpay" and report["rows"] == 0
