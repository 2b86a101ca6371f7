"""Sandbox settings, read from the same environment variables as the services.

The credentials the sandbox checks are the ones the services send, so the
defaults below are also what ``python -m sandbox.env`` exports for ``make run``.
"""
import os
from dataclasses import dataclass
from urllib.parse import urlparse

DUMMY = {
    "VNPAY_TMN_CODE": "SANDBOX01",
    "VNPAY_HASH_SECRET": "SANDBOXVNPAYHASHSECRET0123456789",
    "MOMO_PARTNER_CODE": "MOMOSANDBOX01",
    "MOMO_ACCESS_KEY": "sandboxaccesskey",
    "MOMO_SECRET_KEY": "sandboxmomosecretkey0123456789ab",
    "ESMS_API_KEY": "sandbox-esms-api-key",
    "ESMS_SECRET_KEY": "sandbox-esms-secret-key",
    "ESMS_BRANDNAME": "DVCSANDBOX",
    "SPEEDSMS_ACCESS_TOKEN": "sandbox-speedsms-token",
    "SPEEDSMS_SENDER": "DVCSANDBOX",
    "NATIONAL_PORTAL_USERNAME": "sandbox-lgsp",
    "NATIONAL_PORTAL_PASSWORD": "sandbox-lgsp-password",
    "NATIONAL_PORTAL_AGENCY_CODE": "000.00.00.H26",
}
DEFAULT_HTTP_ADDRESS = "127.0.0.1:8090"
DEFAULT_SMTP_ADDRESS = "127.0.0.1:2525"
DEFAULT_VNPAY_PAYMENT_PATH = "/paymentv2/vpcpay.html"
DEFAULT_VNPAY_API_PATH = "/merchant_webapi/api/transaction"


def split_address(address):
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _path_of(url, default):
    return (urlparse(url).path or default) if url else default


@dataclass
class Settings:
    http_host: str
    http_port: int
    smtp_host: str
    smtp_port: int
    public_url: str
    payment_callback_base_url: str
    vnpay_tmn_code: str
    vnpay_hash_secret: str
    vnpay_payment_path: str
    vnpay_api_path: str
    momo_partner_code: str
    momo_access_key: str
    momo_secret_key: str
    esms_api_key: str
    esms_secret_key: str
    esms_brandname: str
    speedsms_access_token: str
    speedsms_sender: str
    ipn_retry_seconds: float = 2.0
    ipn_attempts: int = 5
    receipt_delay_seconds: float = 0.3
    national_portal_username: str = DUMMY["NATIONAL_PORTAL_USERNAME"]
    national_portal_password: str = DUMMY["NATIONAL_PORTAL_PASSWORD"]
    national_portal_agency_code: str = DUMMY["NATIONAL_PORTAL_AGENCY_CODE"]
    national_portal_auth_path: str = "/api/login"
    national_portal_integration_path: str = "/api/integration"
    national_procedures_file: str = ""  # empty: the sample shipped in sandbox/data
    hang_seconds: float = 12.0  # a scripted "timeout"/"hang" answers nothing this long (the clients wait 10 s)

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ

        def get(name, default=""):
            return env.get(name) or default

        http_host, http_port = split_address(get("SANDBOX_HTTP_ADDRESS", DEFAULT_HTTP_ADDRESS))
        smtp_host, smtp_port = split_address(get("SANDBOX_SMTP_ADDRESS", DEFAULT_SMTP_ADDRESS))
        public_host = "127.0.0.1" if http_host in ("0.0.0.0", "") else http_host
        return cls(
            http_host=http_host,
            http_port=http_port,
            smtp_host=smtp_host,
            smtp_port=smtp_port,
            public_url=get("SANDBOX_PUBLIC_URL", f"http://{public_host}:{http_port}").rstrip("/"),
            payment_callback_base_url=get("PAYMENT_CALLBACK_BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
            vnpay_tmn_code=get("VNPAY_TMN_CODE", DUMMY["VNPAY_TMN_CODE"]),
            vnpay_hash_secret=get("VNPAY_HASH_SECRET", DUMMY["VNPAY_HASH_SECRET"]),
            vnpay_payment_path=_path_of(get("VNPAY_PAYMENT_URL"), DEFAULT_VNPAY_PAYMENT_PATH),
            vnpay_api_path=_path_of(get("VNPAY_API_URL"), DEFAULT_VNPAY_API_PATH),
            momo_partner_code=get("MOMO_PARTNER_CODE", DUMMY["MOMO_PARTNER_CODE"]),
            momo_access_key=get("MOMO_ACCESS_KEY", DUMMY["MOMO_ACCESS_KEY"]),
            momo_secret_key=get("MOMO_SECRET_KEY", DUMMY["MOMO_SECRET_KEY"]),
            esms_api_key=get("ESMS_API_KEY", DUMMY["ESMS_API_KEY"]),
            esms_secret_key=get("ESMS_SECRET_KEY", DUMMY["ESMS_SECRET_KEY"]),
            esms_brandname=get("ESMS_BRANDNAME", DUMMY["ESMS_BRANDNAME"]),
            speedsms_access_token=get("SPEEDSMS_ACCESS_TOKEN", DUMMY["SPEEDSMS_ACCESS_TOKEN"]),
            speedsms_sender=get("SPEEDSMS_SENDER", DUMMY["SPEEDSMS_SENDER"]),
            ipn_retry_seconds=float(get("SANDBOX_IPN_RETRY_SECONDS", "2")),
            receipt_delay_seconds=float(get("SANDBOX_RECEIPT_DELAY_SECONDS", "0.3")),
            national_portal_username=get("NATIONAL_PORTAL_USERNAME", DUMMY["NATIONAL_PORTAL_USERNAME"]),
            national_portal_password=get("NATIONAL_PORTAL_PASSWORD", DUMMY["NATIONAL_PORTAL_PASSWORD"]),
            national_portal_agency_code=get("NATIONAL_PORTAL_AGENCY_CODE", DUMMY["NATIONAL_PORTAL_AGENCY_CODE"]),
            national_portal_auth_path=get("NATIONAL_PORTAL_AUTH_PATH", "/api/login"),
            national_portal_integration_path=get("NATIONAL_PORTAL_INTEGRATION_PATH", "/api/integration"),
            national_procedures_file=get("SANDBOX_NATIONAL_PROCEDURES_FILE"),
            hang_seconds=float(get("SANDBOX_HANG_SECONDS", "12")),
        )
