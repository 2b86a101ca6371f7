"""Masking of personal data and secrets in log output.

Citizen phone numbers, e-mail addresses and 12-digit citizen ID numbers are
personal data under Vietnamese law; secrets (API keys, hash secrets, SMTP
passwords) must never reach a log. Masking works on keys (a field named like a
secret is hidden whole) and on text (personal data is found by pattern
wherever it appears, also inside free text and exception messages).
"""
import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote

SECRET_KEY_PATTERN = re.compile(
    r"(secret|password|passwd|token|api_?key|access_?key|signature|securehash|authorization)",
    re.IGNORECASE,
)

# Separators people and systems put inside numbers: space, dot, dash (one at a time).
_SEP = r"[ .\-]?"
# An e-mail address: a plain local part in any script, or a quoted one.
EMAIL_PATTERN = re.compile(
    r"(?:\"[^\"\r\n]{1,64}\"|([\w!#$%&'*+/=?^`{|}~-])[\w.!#$%&'*+/=?^`{|}~-]{0,63})"
    r"@((?:[\w-]+\.)+[^\W\d_]{2,})"
)
# Vietnamese mobile numbers in any of the accepted spellings, separators allowed.
PHONE_PATTERN = re.compile(
    rf"(?<![\w+])(?:\+{_SEP}84|84|0){_SEP}[35789](?:{_SEP}\d){{6}}{_SEP}(\d){_SEP}(\d)(?!\d)"
)
# A 12-digit citizen identity number (CCCD), also grouped by threes; longer digit runs are other things.
CITIZEN_ID_PATTERN = re.compile(r"(?<!\d)\d{3}([ .\-]?)\d{3}\1\d{3}\1(\d{3})(?!\d)")
# key=value or "key": "value" pairs of secrets inside free text (URLs, bodies).
INLINE_SECRET_PATTERN = re.compile(
    r"((?:secret|password|passwd|token|api_?key|accesskey|signature|securehash)[A-Za-z_]*"
    r"[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]+)",
    re.IGNORECASE,
)
# An Authorization header or field, whatever its scheme, and bare bearer tokens.
AUTHORIZATION_PATTERN = re.compile(r"(authorization[\"']?\s*[:=]\s*[\"']?)([^\"'\r\n,}]+)", re.IGNORECASE)
BEARER_PATTERN = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# The password of a URL with credentials (amqp://user:pw@host, postgresql://user:pw@host/db).
URL_PASSWORD_PATTERN = re.compile(r"([a-z][a-z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)@", re.IGNORECASE)
# PostgreSQL echoes the failing statement (psycopg2 interpolates parameters) and key values.
PG_STATEMENT_ECHO_PATTERN = re.compile(r"(LINE \d+: |DETAIL:\s+Key \([^)\n]*\)=\()[^\n]*")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# Every pattern but the phone number and the citizen ID needs one of these in the text it masks: "@"
# (e-mail, URL password), ":" (statement echo, URL password, secrets, Authorization), "=" (secrets,
# Authorization), "%" (something encoded) or a bearer/basic scheme.
_MAY_HOLD_MORE = re.compile(r"[@:=%]|bearer|basic", re.IGNORECASE)
# A phone number (10 digits or more) or a citizen ID (12) needs nine digits in a row, with at most one
# separator between two of them. Identifiers (UUIDs, dossier codes, transaction references) rarely have one.
_DIGIT_RUN = re.compile(r"\d(?:[ .\-]?\d){8}")
# Fields the logging set-up writes itself (time, level, logger, the worker's service, call id and
# entrypoint): never personal data, never searched.
OWN_FIELDS = frozenset({"timestamp", "level", "logger", "service", "call_id", "entrypoint"})

MASK = "***"


def _normalise(text):
    """What the patterns see: percent-encoding decoded, compatibility forms (full-width digits) folded."""
    if "%" in text and _PERCENT_ESCAPE.search(text):
        text = unquote(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text


def _url_password(match):
    return f"{match.group(1)}{MASK}@"


def _email(match):
    first = match.group(1)
    return f"{first or ''}***@{match.group(2)}"


def _mask_numbers(text):
    text = PHONE_PATTERN.sub(lambda m: f"***{m.group(1)}{m.group(2)}", text)
    return CITIZEN_ID_PATTERN.sub(lambda m: f"*********{m.group(2)}", text)


def mask_text(text):
    """Return ``text`` with e-mails, phone numbers, citizen IDs, URL passwords and secrets masked."""
    if (text.isascii() or unicodedata.is_normalized("NFKC", text)) and not _MAY_HOLD_MORE.search(text):
        # nothing to decode and nothing but numbers to find (log fields are mostly such text): the
        # patterns below would change nothing but the phone numbers and citizen IDs
        return _mask_numbers(text) if _DIGIT_RUN.search(text) else text
    return mask_all(text)


def mask_all(text):
    """``mask_text`` without its shortcut: every pattern, always (the reference the shortcut is tested against)."""
    text = PG_STATEMENT_ECHO_PATTERN.sub(lambda m: m.group(1) + "[hidden]", text)
    text = URL_PASSWORD_PATTERN.sub(_url_password, text)  # before decoding: a password may hold %40 (@)
    text = _normalise(text)
    text = URL_PASSWORD_PATTERN.sub(_url_password, text)
    text = AUTHORIZATION_PATTERN.sub(lambda m: m.group(1) + MASK, text)
    text = BEARER_PATTERN.sub(lambda m: f"{m.group(1)} {MASK}", text)
    text = INLINE_SECRET_PATTERN.sub(lambda m: m.group(1) + MASK, text)
    text = EMAIL_PATTERN.sub(_email, text)
    return _mask_numbers(text)


@lru_cache(maxsize=4096)
def _secret_key(key):
    """Whether a field named ``key`` holds a secret (a log event has few distinct keys: asked once each)."""
    return SECRET_KEY_PATTERN.search(key) is not None


def mask_value(value, key=None):
    """Mask one value of a structured log event, recursively."""
    if key is not None and value is not None and value != "" and _secret_key(str(key)):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    return value


def mask_event(logger, method_name, event_dict):
    """structlog processor masking every field of an event but the logging set-up's own."""
    return {key: value if key in OWN_FIELDS else mask_value(value, key) for key, value in event_dict.items()}
