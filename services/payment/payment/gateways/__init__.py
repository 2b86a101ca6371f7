"""Payment gateway adapters (VNPay, MoMo) behind one interface (their fakes: services/sandbox)."""
from payment.gateways.base import (  # noqa: F401
    CheckoutRequest,
    CheckoutResult,
    ForeignMerchant,
    Gateway,
    GatewayUnavailable,
    InvalidSignature,
    MalformedMessage,
    PaymentReport,
    QueryRequest,
    RefundRequest,
    RefundResult,
)
from payment.gateways.momo import MomoGateway
from payment.gateways.vnpay import VnpayGateway
from portal_shared.config import get_float, get_str

GATEWAY_NAMES = ("vnpay", "momo")


def gateways_from_config(config):
    """Both adapters built from the service's config keys (CONTRACT section 1)."""
    return {
        "vnpay": VnpayGateway(
            tmn_code=get_str(config, "VNPAY_TMN_CODE"),
            hash_secret=get_str(config, "VNPAY_HASH_SECRET"),
            payment_url=get_str(config, "VNPAY_PAYMENT_URL", "https://sandbox.vnpayment.vn/paymentv2/vpcpay.html"),
            api_url=get_str(config, "VNPAY_API_URL", "https://sandbox.vnpayment.vn/merchant_webapi/api/transaction"),
        ),
        "momo": MomoGateway(
            partner_code=get_str(config, "MOMO_PARTNER_CODE"),
            access_key=get_str(config, "MOMO_ACCESS_KEY"),
            secret_key=get_str(config, "MOMO_SECRET_KEY"),
            api_base=get_str(config, "MOMO_API_BASE", "https://test-payment.momo.vn"),
        ),
    }


class PaymentSettings:
    """The payment service's own settings and its gateways, as use cases need them."""

    def __init__(self, config, gateways=None):
        self.gateways = gateways if gateways is not None else gateways_from_config(config)
        self.expiry_minutes = get_float(config, "PAYMENT_EXPIRY_MINUTES", 15)
        base = get_str(config, "PAYMENT_CALLBACK_BASE_URL", "http://localhost:8000")
        self.callback_base_url = base.rstrip("/")
        from payment.return_urls import ReturnUrlPolicy  # late: return_urls is outside the gateways package

        self.return_urls = ReturnUrlPolicy.from_config(config)
        self.max_attempts = int(get_float(config, "PAYMENT_MAX_ATTEMPTS", 10))

    @property
    def momo_ipn_url(self):
        return f"{self.callback_base_url}/callbacks/momo/ipn"

    def gateway(self, name):
        return self.gateways[name]
