"""Time helpers: UTC inside, Vietnam time (UTC+7, no daylight saving) outside."""
from datetime import datetime, timedelta, timezone

VN_TZ = timezone(timedelta(hours=7), "ICT")


def utcnow():
    return datetime.now(timezone.utc)


def to_vn(moment):
    """An aware datetime in Vietnam time; naive values are taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(VN_TZ)


def isoformat(moment):
    """ISO 8601 with the Vietnam offset, as the contract's times are shown."""
    moment = to_vn(moment)
    return moment.isoformat() if moment is not None else None


def parse_iso(text):
    """Parse an ISO 8601 time; a value without offset is taken as Vietnam time."""
    moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=VN_TZ)
    return moment
