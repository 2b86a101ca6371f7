"""How amounts and dates are written to Vietnamese citizens."""
from datetime import datetime

from portal_shared.timeutil import parse_iso, to_vn


def vnd(amount):
    """``200000`` → ``200.000`` (Vietnamese thousands separator)."""
    if amount is None or amount == "":
        return ""
    return f"{int(amount):,}".replace(",", ".")


def vn_date(moment):
    """A datetime or ISO 8601 text as ``dd/mm/yyyy`` in Vietnam time."""
    if moment in (None, ""):
        return ""
    if not isinstance(moment, datetime):
        moment = parse_iso(moment)
    return f"{to_vn(moment):%d/%m/%Y}"


def vn_datetime(moment):
    if moment in (None, ""):
        return ""
    if not isinstance(moment, datetime):
        moment = parse_iso(moment)
    return f"{to_vn(moment):%H:%M %d/%m/%Y}"
