"""The sandbox runs only where it is meant to: a developer machine or a test, never beside real credentials.

Its pay pages sign "paid" IPNs for any order with the credentials it loads, so
it starts only with ``SANDBOX=1`` (``make run`` and the e2e harness set it),
and refuses to start when any provider credential is set for a provider that
is not pointed at a loopback address (that is a real gateway's credential),
or when asked to listen on a non-loopback address.

In a container (docker compose's ``sandbox`` profile) the sandbox must listen
on the network and the services reach it by name: that takes an explicit
``SANDBOX_ALLOW_NETWORK=1``, and then a provider URL counts as "this sandbox"
only when its host is the one of ``SANDBOX_PUBLIC_URL``.
"""
import ipaddress
from urllib.parse import urlsplit

# provider: (credential variables, URL variables that must point at this sandbox)
PROVIDERS = {
    "VNPay": (("VNPAY_TMN_CODE", "VNPAY_HASH_SECRET"), ("VNPAY_PAYMENT_URL", "VNPAY_API_URL")),
    "MoMo": (("MOMO_PARTNER_CODE", "MOMO_ACCESS_KEY", "MOMO_SECRET_KEY"), ("MOMO_API_BASE",)),
    "eSMS": (("ESMS_API_KEY", "ESMS_SECRET_KEY"), ("ESMS_BASE_URL",)),
    "SpeedSMS": (("SPEEDSMS_ACCESS_TOKEN",), ("SPEEDSMS_BASE_URL",)),
}


def is_loopback(host):
    host = (host or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _network_allowed(environ):
    return (environ.get("SANDBOX_ALLOW_NETWORK") or "").strip() == "1"


def is_this_sandbox(host, environ):
    """A loopback host, or (network mode only) the host of ``SANDBOX_PUBLIC_URL``."""
    if is_loopback(host):
        return True
    public = urlsplit(environ.get("SANDBOX_PUBLIC_URL") or "").hostname
    return _network_allowed(environ) and bool(public) and (host or "").lower() == public.lower()


def refusal(environ):
    """None when the sandbox may start, else why not."""
    if (environ.get("SANDBOX") or "").strip() != "1":
        return "the sandbox starts only with SANDBOX=1 (make run and the e2e harness set it)"
    for provider, (credentials, urls) in PROVIDERS.items():
        set_credentials = [name for name in credentials if (environ.get(name) or "").strip()]
        if not set_credentials:
            continue
        elsewhere = [name for name in urls if not is_this_sandbox(urlsplit(environ.get(name) or "").hostname, environ)]
        if elsewhere:
            return (f"{', '.join(set_credentials)} set while {', '.join(elsewhere)} is not this sandbox: that is a "
                    f"real {provider} credential, and the sandbox refuses to start beside one")
    if (environ.get("SMTP_PASSWORD") or "").strip() and not is_this_sandbox(environ.get("SMTP_HOST"), environ):
        return "SMTP_PASSWORD is set for a real SMTP server: the sandbox refuses to start beside it"
    for name in ("SANDBOX_HTTP_ADDRESS", "SANDBOX_SMTP_ADDRESS"):
        address = environ.get(name)
        if address and not is_loopback(address.rpartition(":")[0]) and not _network_allowed(environ):
            return (f"{name}={address}: the sandbox listens on loopback addresses only "
                    "(SANDBOX_ALLOW_NETWORK=1 for a container on a private network)")
    return None


def main():
    """``python -m sandbox.guard``: exit 0 when the sandbox may start here, else 2 with the reason."""
    import os
    import sys

    reason = refusal(os.environ)
    if reason:
        sys.stdout.write(reason + "\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
