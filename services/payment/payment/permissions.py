"""Who may see and start payments (CONTRACT section 5).

A payment belongs to a dossier: a citizen may act on the payments of their own
dossiers, an officer on those of the agencies they serve, finance reads them
all; the dossier service (role ``service``) reads a payment to check an event.
The agency comes from the charge (``dossier_status_changed`` carries it); the
applicant's ID only the dossier service knows, so a citizen's call is checked
by asking it (``get_dossier`` with this service's own token). A ``start_payment``
that comes before dossier's ``payment_requested`` event asks it too, and the
answer gives payment the charge (``learn_charge``) instead of a ``NoPaymentDue``.
"""
import eventlet
import sqlalchemy as sa
from nameko.exceptions import RemoteError, UnknownService

from payment.orm import charges
from portal_shared.errors import Forbidden
from portal_shared.logs import get_logger

log = get_logger(__name__)
LEARN_LOOKUP_SECONDS = 5.0


def check_dossier_access(caller, uow, dossier_lookup, dossier_code, readers=(), learn_charge=None):
    """Raise ``Forbidden`` unless ``caller`` may act on the payments of ``dossier_code``.

    ``readers``: roles allowed whatever the dossier (``finance`` for reads). ``learn_charge``
    (``start_payment``): an object with ``due(dossier)`` and ``record(dossier)``; when payment has no
    charge for the dossier yet (dossier's event is still on its way) and the dossier service answers that
    its fee is due, the charge is recorded from that answer once the caller is allowed (a refusal stores
    nothing).
    """
    if readers and caller.has(*readers):
        return
    with uow.read() as session:
        charge = session.execute(
            sa.select(charges.c.agency_code).where(charges.c.dossier_code == dossier_code)
        ).first()
    dossier = None
    if charge is None:
        if learn_charge is None:
            return  # nothing is or was ever due: no payment to see or start (the use case says NoPaymentDue)
        dossier = _lookup_for_charge(dossier_lookup, dossier_code)
        if dossier is None or not learn_charge.due(dossier):
            return  # nothing due now: NoPaymentDue
        _require_access(caller, dossier.get("agency_code"), dossier_lookup, dossier_code, readers, dossier)
        learn_charge.record(dossier)
        return
    _require_access(caller, charge.agency_code, dossier_lookup, dossier_code, readers)


def _lookup_for_charge(dossier_lookup, dossier_code):
    """The dossier service's answer, or None when it has none to give now (unknown dossier, service away
    or slower than ``LEARN_LOOKUP_SECONDS``): then ``start_payment`` answers ``NoPaymentDue`` as it would
    without asking, and the event brings the charge."""
    try:
        with eventlet.Timeout(LEARN_LOOKUP_SECONDS):
            return dossier_lookup(dossier_code)
    except RemoteError as exc:
        if exc.exc_type not in ("DossierNotFound", "ValidationError"):
            log.warning("charge_lookup_failed", dossier_code=dossier_code, error=exc.exc_type)
    except (UnknownService, eventlet.Timeout) as exc:
        log.warning("charge_lookup_failed", dossier_code=dossier_code, error=type(exc).__name__)
    return None


def _require_access(caller, agency_code, dossier_lookup, dossier_code, readers, dossier=None):
    if caller.has("officer") and agency_code is not None and caller.serves(agency_code):
        return
    if caller.has("citizen") or (caller.has("officer") and agency_code is None):
        if dossier is None:
            try:
                dossier = dossier_lookup(dossier_code)
            except RemoteError as exc:
                if exc.exc_type in ("DossierNotFound", "ValidationError"):
                    raise Forbidden("no dossier of the caller's with this code") from None
                raise
        if caller.has("officer") and caller.serves(dossier.get("agency_code")):
            return
        if caller.is_applicant((dossier.get("applicant") or {}).get("id_number")):
            return
    allowed = ["citizen (own dossier)", "officer (its agency)"] + list(readers)
    raise Forbidden(f"payments of this dossier are for: {', '.join(allowed)}")
