"""Vietnamese mobile numbers, validated with the maintained ``phonenumbers`` library."""
from functools import lru_cache

import phonenumbers

MOBILE_TYPES = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalise_vn_mobile(text):
    """See ``_normalise``; the answers for the last few thousand short texts are remembered (libphonenumber's
    parse was 4 % of notify's event handler)."""
    return _normalise(text) if isinstance(text, str) and len(text) <= 64 else _normalise.__wrapped__(text)


@lru_cache(maxsize=4096)  # a pure function of its text
def _normalise(text):
    """Return the number as ``0xxxxxxxxx``, or None if it is not a Vietnamese mobile number.

    Accepts ``0xxxxxxxxx``, ``+84xxxxxxxxx`` and ``84xxxxxxxxx`` with optional
    spaces, dots or dashes. Numbers are portable between carriers, so nothing
    here routes by prefix.
    """
    if not isinstance(text, str):
        return None
    compact = "".join(ch for ch in text.strip() if ch not in " .-()")
    if compact.startswith("84") and len(compact) == 11:
        compact = "+" + compact
    if not (compact.startswith("+84") or compact.startswith("0")) or not compact.lstrip("+").isdigit():
        return None
    try:
        number = phonenumbers.parse(compact, "VN")
    except phonenumbers.NumberParseException:
        return None
    if number.country_code != 84 or not phonenumbers.is_valid_number(number):
        return None
    if phonenumbers.number_type(number) not in MOBILE_TYPES:
        return None
    national = str(number.national_number)
    if len(national) != 9 or national[0] not in "35789":
        return None
    return "0" + national


def to_international(phone):
    """``0912345678`` → ``84912345678`` (the form SMS providers take)."""
    return "84" + phone[1:]
