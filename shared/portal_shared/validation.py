"""Bounded, clean input for the request schemas (marshmallow 4).

Every string a caller sends is refused (as a ``ValidationError`` naming the
field, never a ``ValueError`` from the database driver) when it holds NUL or
a lone surrogate, which PostgreSQL and UTF-8 cannot store; every dict is
bounded by its encoded size and depth.
"""
import json
import re

from marshmallow import ValidationError, fields, validate

CITIZEN_ID = re.compile(r"[0-9]{12}", re.ASCII)
MAX_OFFSET = 1_000_000
MAX_PAGE = 200
_BAD_CHARACTERS = re.compile(r"[\x00\ud800-\udfff]")


def check_text(value):
    if _BAD_CHARACTERS.search(value):
        raise ValidationError("must not contain NUL or unpaired surrogate characters")


class Text(fields.String):
    """A string without NUL or lone surrogates, at most ``max_length`` characters (checked first)."""

    def __init__(self, *args, max_length=1000, min_length=None, **kwargs):
        self.max_length, self.min_length = max_length, min_length
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > self.max_length:
            raise ValidationError(f"must be at most {self.max_length} characters")
        if self.min_length is not None and len(value) < self.min_length:
            raise ValidationError(f"must be at least {self.min_length} characters")
        check_text(value)
        return value


class CitizenId(Text):
    """A 12-digit citizen ID: ASCII digits only, by full match (no full-width digits, no newline)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=12, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not CITIZEN_ID.fullmatch(value):
            raise ValidationError("must be a 12-digit citizen ID number")
        return value


class EmailAddress(Text):
    """An e-mail address of at most 254 characters (the length is checked before the pattern)."""

    _email = validate.Email()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, max_length=254, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs).strip()
        self._email(value)
        return value


def _walk(value, depth, max_depth):
    if depth > max_depth:
        raise ValidationError(f"must not nest deeper than {max_depth} levels")
    if isinstance(value, str):
        check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError("keys must be strings")
            check_text(key)
            _walk(item, depth + 1, max_depth)
    elif isinstance(value, list):
        for item in value:
            _walk(item, depth + 1, max_depth)
    elif not (value is None or isinstance(value, (bool, int, float))):
        raise ValidationError("must hold only JSON values")


class BoundedDict(fields.Dict):
    """A JSON object of at most ``max_bytes`` once encoded as UTF-8, ``max_depth`` levels deep."""

    def __init__(self, *args, max_bytes=64 * 1024, max_depth=10, **kwargs):
        self.max_bytes, self.max_depth = max_bytes, max_depth
        super().__init__(*args, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, dict):
            _walk(value, 1, self.max_depth)
            try:
                size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
            except (TypeError, ValueError, RecursionError):
                raise ValidationError("must be a JSON object") from None
            if size > self.max_bytes:
                raise ValidationError(f"must be at most {self.max_bytes} bytes as JSON (got {size})")
        return super()._deserialize(value, attr, data, **kwargs)


def page_limit(default=50):
    return fields.Integer(load_default=default, validate=validate.Range(min=1, max=MAX_PAGE), strict=True)


def page_offset():
    return fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET), strict=True)
