"""Where a citizen may be sent back after paying: origins from an allow-list.

``PAYMENT_RETURN_URL_ORIGINS`` lists the portal's origins (``scheme://host[:port]``,
comma-separated). Outside dev mode each must be https; in dev mode with no
list, http(s) on localhost / 127.0.0.1 is allowed. A ``return_url`` whose
origin is not listed is a ``ValidationError`` (no open redirect after payment).
"""
from urllib.parse import urlsplit

from portal_shared.config import ConfigError, dev_mode, get_list

DEFAULT_PORTS = {"http": 80, "https": 443}
DEV_HOSTS = {"localhost", "127.0.0.1", "::1"}


def origin_of(url):
    parts = urlsplit(url)
    scheme = (parts.scheme or "").lower()
    try:
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if scheme not in DEFAULT_PORTS or not host or parts.username or parts.password:
        return None
    return scheme, host, port


class ReturnUrlPolicy:
    def __init__(self, origins, dev):
        self.dev = dev
        self.origins = set()
        for text in origins:
            origin = origin_of(text)
            if origin is None:
                raise ConfigError(f"PAYMENT_RETURN_URL_ORIGINS: {text!r} is not an http(s) origin")
            if origin[0] != "https" and not dev:
                raise ConfigError(f"PAYMENT_RETURN_URL_ORIGINS: {text!r} must be https outside dev mode")
            self.origins.add(origin)

    @classmethod
    def from_config(cls, config):
        return cls(get_list(config, "PAYMENT_RETURN_URL_ORIGINS"), dev_mode(config))

    def refusal(self, url):
        """None when ``url`` may be used, else the reason."""
        origin = origin_of(url)
        if origin is None:
            return "must be an http(s) URL without credentials"
        if origin in self.origins:
            return None
        if self.dev and not self.origins and origin[1] in DEV_HOSTS:
            return None
        if not self.origins:
            return "no return URL origin is allowed: set PAYMENT_RETURN_URL_ORIGINS"
        return "its origin is not one of PAYMENT_RETURN_URL_ORIGINS"
