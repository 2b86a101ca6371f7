"""Masking of personal data and secrets in log output.

Citizen phone numbers, e-mail addresses and 12-digit citizen ID numbers are
personal data under Vietnamese law; secrets (API keys, hash secrets, SMTP
passwords) must never reach a log. Masking works on keys (a field named like a
secret is hidden whole) and on text (personal data is found by pattern
wherever it appears, also inside free text and exception messages).
"""
import re

SECRET_KEY_PATTERN = re.compile(
    r"(secret|password|passwd|token|api_?key|access_?key|signature|securehash|authorization)",
    re.IGNORECASE,
)

EMAIL_PATTERN = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Vietnamese mobile numbers in any of the accepted spellings.
PHONE_PATTERN = re.compile(r"(?<![\w])(?:\+84|84|0)([35789]\d)\d{5}(\d{2})(?!\d)")
# A 12-digit citizen identity number (CCCD); longer digit runs are other things.
CITIZEN_ID_PATTERN = re.compile(r"(?<!\d)\d{9}(\d{3})(?!\d)")
# key=value or "key": "value" pairs of secrets inside free text (URLs, bodies).
INLINE_SECRET_PATTERN = re.compile(
    r"((?:secret|password|token|api_?key|accesskey|signature|securehash)[A-Za-z_]*"
    r"[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,}]+)",
    re.IGNORECASE,
)

MASK = "***"


def mask_text(text):
    """Return ``text`` with e-mails, phone numbers, citizen IDs and inline secrets masked."""
    text = INLINE_SECRET_PATTERN.sub(lambda m: m.group(1) + MASK, text)
    text = EMAIL_PATTERN.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)
    text = PHONE_PATTERN.sub(lambda m: f"***{m.group(2)}", text)
    text = CITIZEN_ID_PATTERN.sub(lambda m: f"*********{m.group(1)}", text)
    return text


def mask_value(value, key=None):
    """Mask one value of a structured log event, recursively."""
    if key is not None and SECRET_KEY_PATTERN.search(str(key)) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(v, k) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    return value


def mask_event(logger, method_name, event_dict):
    """structlog processor masking every field of an event."""
    return {key: mask_value(value, key) for key, value in event_dict.items()}
