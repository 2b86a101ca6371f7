"""Print ``export`` lines pointing every unconfigured integration at the sandbox.

``eval "$(python -m sandbox.env)"`` is what ``scripts/run.sh`` does before
starting the Procfile: a provider whose credentials are already in the
environment is left alone (real credentials win); the others get the sandbox's
URLs and its dummy credentials.
"""
import os
import shlex
import sys

from sandbox.config import DEFAULT_HTTP_ADDRESS, DEFAULT_SMTP_ADDRESS, DUMMY, split_address

GROUPS = {
    # group: (credentials that mean "configured", values to export when none is set)
    "vnpay": (("VNPAY_TMN_CODE", "VNPAY_HASH_SECRET"), lambda base: {
        "VNPAY_TMN_CODE": DUMMY["VNPAY_TMN_CODE"],
        "VNPAY_HASH_SECRET": DUMMY["VNPAY_HASH_SECRET"],
        "VNPAY_PAYMENT_URL": f"{base}/paymentv2/vpcpay.html",
        "VNPAY_API_URL": f"{base}/merchant_webapi/api/transaction",
    }),
    "momo": (("MOMO_PARTNER_CODE", "MOMO_ACCESS_KEY", "MOMO_SECRET_KEY"), lambda base: {
        "MOMO_PARTNER_CODE": DUMMY["MOMO_PARTNER_CODE"],
        "MOMO_ACCESS_KEY": DUMMY["MOMO_ACCESS_KEY"],
        "MOMO_SECRET_KEY": DUMMY["MOMO_SECRET_KEY"],
        "MOMO_API_BASE": base,
    }),
    "esms": (("ESMS_API_KEY", "ESMS_SECRET_KEY"), lambda base: {
        "ESMS_BASE_URL": base,
        "ESMS_API_KEY": DUMMY["ESMS_API_KEY"],
        "ESMS_SECRET_KEY": DUMMY["ESMS_SECRET_KEY"],
        "ESMS_BRANDNAME": DUMMY["ESMS_BRANDNAME"],
    }),
    "speedsms": (("SPEEDSMS_ACCESS_TOKEN",), lambda base: {
        "SPEEDSMS_BASE_URL": base,
        "SPEEDSMS_ACCESS_TOKEN": DUMMY["SPEEDSMS_ACCESS_TOKEN"],
        "SPEEDSMS_SENDER": DUMMY["SPEEDSMS_SENDER"],
    }),
    "national_portal": (("NATIONAL_PORTAL_URL",), lambda base: {
        "NATIONAL_PORTAL_URL": base,
        "NATIONAL_PORTAL_USERNAME": DUMMY["NATIONAL_PORTAL_USERNAME"],
        "NATIONAL_PORTAL_PASSWORD": DUMMY["NATIONAL_PORTAL_PASSWORD"],
        "NATIONAL_PORTAL_AGENCY_CODE": DUMMY["NATIONAL_PORTAL_AGENCY_CODE"],
    }),
}


def sandbox_environment(environ=None):
    """The variables to set so that every unconfigured provider is the sandbox."""
    env = os.environ if environ is None else environ
    http_host, http_port = split_address(env.get("SANDBOX_HTTP_ADDRESS") or DEFAULT_HTTP_ADDRESS)
    host = "127.0.0.1" if http_host in ("0.0.0.0", "") else http_host
    base = (env.get("SANDBOX_PUBLIC_URL") or f"http://{host}:{http_port}").rstrip("/")
    exported = {}
    for credentials, values in GROUPS.values():
        if not any(env.get(name) for name in credentials):
            exported.update(values(base))
    if not env.get("SMTP_HOST"):
        smtp_host, smtp_port = split_address(env.get("SANDBOX_SMTP_ADDRESS") or DEFAULT_SMTP_ADDRESS)
        exported.update({"SMTP_HOST": smtp_host, "SMTP_PORT": str(smtp_port), "SMTP_SECURITY": "none",
                         "SMTP_USERNAME": "", "SMTP_PASSWORD": ""})
    defaults = {
        "PAYMENT_CALLBACK_BASE_URL": "http://127.0.0.1:8000",
        "NOTIFY_CALLBACK_BASE_URL": "http://127.0.0.1:8001",
        # dev listeners on loopback only (the contract's 0.0.0.0 defaults are for containers)
        "DOSSIER_HTTP_ADDRESS": "127.0.0.1:8002",
        "PAYMENT_HTTP_ADDRESS": "127.0.0.1:8000",
        "NOTIFY_HTTP_ADDRESS": "127.0.0.1:8001",
        "PORTAL_SYNC_HTTP_ADDRESS": "127.0.0.1:8003",
        # a fixed, public token: fine for the sandbox on a developer machine, never for production
        "ESMS_CALLBACK_TOKEN": "dev-sandbox-esms-receipts",
    }
    for name, value in defaults.items():
        if not env.get(name):
            exported[name] = value
    return exported


def main():
    for name, value in sandbox_environment().items():
        sys.stdout.write(f"export {name}={shlex.quote(value)}\n")


if __name__ == "__main__":
    main()
