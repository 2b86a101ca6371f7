"""Request, event and response schemas of the payment service (marshmallow 4)."""
import ipaddress
import re

from marshmallow import Schema, ValidationError, fields, validate, validates

from payment.domain.model import Status
from payment.gateways import GATEWAY_NAMES
from portal_shared.timeutil import isoformat
from portal_shared.validation import Text

RECONCILE_RPC_MAX_CHARACTERS = 2 * 1024 * 1024  # larger files: the payment-reconcile console command

BANK_CODE = re.compile(r"^[A-Za-z0-9_]{1,20}$")


class StartPaymentSchema(Schema):
    dossier_code = Text(required=True, min_length=1, max_length=32)
    gateway = fields.String(required=True, validate=validate.OneOf(GATEWAY_NAMES))
    return_url = Text(required=True, max_length=1000,
                      validate=validate.URL(require_tld=False, schemes={"http", "https"}))
    client_ip = Text(required=True, max_length=45)
    bank_code = fields.String(load_default=None, allow_none=True, validate=validate.Regexp(BANK_CODE))
    locale = fields.String(load_default="vn", validate=validate.OneOf(["vn", "en"]))

    @validates("client_ip")
    def _client_ip(self, value, **kwargs):
        """A plain address: no IPv6 zone (``%eth0``), no surrounding text; stored in 45 characters."""
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValidationError("must be an IPv4 or IPv6 address") from None
        if getattr(address, "scope_id", None) or "%" in value:
            raise ValidationError("must be a plain IP address (no IPv6 zone)")


class TxnRefSchema(Schema):
    txn_ref = Text(required=True, min_length=1, max_length=32)


class DossierCodeSchema(Schema):
    dossier_code = Text(required=True, min_length=1, max_length=32)


class ReconcileSchema(Schema):
    gateway = fields.String(required=True, validate=validate.OneOf(GATEWAY_NAMES))
    settlement_csv = Text(required=True, max_length=RECONCILE_RPC_MAX_CHARACTERS)


class DossierStatusChangedSchema(Schema):
    event_id = fields.String(required=True)
    dossier_code = fields.String(required=True, validate=validate.Length(min=1, max=32))
    new_status = fields.String(required=True)
    old_status = fields.String(load_default=None, allow_none=True)
    fee_amount = fields.Integer(load_default=0, allow_none=True, validate=validate.Range(min=0))
    procedure_name = fields.String(load_default=None, allow_none=True)
    agency_code = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64))

    class Meta:
        unknown = "exclude"


def dump_payment(payment):
    """The contract's Payment representation of a domain ``Payment`` (plus ``refund_error`` while a refund is refused)."""
    dumped = {
        "txn_ref": payment.txn_ref,
        "dossier_code": payment.dossier_code,
        "amount": int(payment.amount),
        "gateway": payment.gateway,
        "status": payment.status.value,
        "pay_url": payment.pay_url,
        "gateway_txn_no": payment.gateway_txn_no,
        "created_at": isoformat(payment.created_at),
        "expires_at": isoformat(payment.expires_at),
        "paid_at": isoformat(payment.paid_at),
    }
    if payment.refund_error and payment.status is Status.refund_pending:
        dumped["refund_error"] = payment.refund_error
    return dumped
