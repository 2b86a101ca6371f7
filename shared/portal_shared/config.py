"""Typed access to a service's configuration.

Each service's ``config.yml`` maps the environment variables of the interface
contract onto Nameko config keys of the same name (``${VAR:default}``); tests
hand the same keys in a dict. These helpers read them with a type and a
default, so a value given as text by YAML or the environment works the same.
"""
import os

TRUE_WORDS = {"1", "true", "yes", "on"}


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def get_str(config, key, default=None):
    value = config.get(key)
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return default
    return str(value).strip()


def get_float(config, key, default):
    value = get_str(config, key)
    if value is None:
        return float(default)
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{key} must be a number, got {value!r}") from None


def get_int(config, key, default):
    value = get_float(config, key, default)
    return int(value)


def get_bool(config, key, default=False):
    value = get_str(config, key)
    if value is None:
        return default
    return value.lower() in TRUE_WORDS


def get_list(config, key, default=()):
    value = get_str(config, key)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_or(key, default=None):
    """Read one environment variable, treating an empty value as unset."""
    value = os.environ.get(key, "")
    return value if value.strip() else default


def dev_mode(config=None):
    """Explicit developer mode (``PORTAL_DEV_MODE=1``, set by ``make run``): relaxes what only a
    developer machine may do (sandbox secrets, http return URLs). Off unless asked for."""
    value = (config or {}).get("PORTAL_DEV_MODE")
    if value is None:
        value = os.environ.get("PORTAL_DEV_MODE", "")
    return str(value).strip().lower() in TRUE_WORDS

