"""Checks for text that comes from the internet (callbacks): decoded strictly, flat, no NUL.

A callback body that fails any of these is malformed: answered 400 and never
looked at further, so no later step (signature, logging, the database) meets
a lone surrogate, a NUL or a structure it did not expect.
"""
import json
from urllib.parse import parse_qsl

MAX_FIELD_CHARS = 4096


class Malformed(ValueError):
    """The request cannot be read as a flat set of text/number fields; the message is safe to show."""


def check_text(value, name="value"):
    """Return ``value`` if it is text that round-trips to UTF-8, without NUL and of a sane length."""
    if not isinstance(value, str):
        raise Malformed(f"{name} is not text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Malformed(f"{name} is not valid UTF-8") from None
    if "\x00" in value:
        raise Malformed(f"{name} contains NUL")
    if len(value) > MAX_FIELD_CHARS:
        raise Malformed(f"{name} is too long")
    return value


def decode_utf8(data, name="body"):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed(f"{name} is not valid UTF-8") from None


def flat_fields(mapping, name="body"):
    """A dict of str -> str/int/float/bool/None whose keys and text values pass ``check_text``."""
    if not isinstance(mapping, dict):
        raise Malformed(f"{name} is not an object")
    for key, value in mapping.items():
        check_text(key, "field name")
        if isinstance(value, str):
            check_text(value, key)
        elif value is not None and not isinstance(value, (int, float, bool)):
            raise Malformed(f"{key} is not a plain value")
    return mapping


def json_object(data):
    """Parse a JSON body (bytes) into a flat object; raises ``Malformed``."""
    text = decode_utf8(data)
    if "\x00" in text:
        raise Malformed("body contains NUL")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        raise Malformed("body is not JSON") from None
    return flat_fields(parsed)


def query_fields(raw, name="query string"):
    """Parse a form/query string (bytes) strictly: UTF-8, no repeated names, no NUL; returns a dict."""
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, encoding="utf-8", errors="strict",
                          max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise Malformed(f"{name} is not valid UTF-8 form data") from None
    fields = {}
    for key, value in pairs:
        check_text(key, "field name")
        check_text(value, key)
        if key in fields:
            raise Malformed(f"{key} is repeated")
        fields[key] = value
    return fields
