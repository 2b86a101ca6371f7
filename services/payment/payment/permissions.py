"""Who may see and start payments (CONTRACT section 5).

A payment belongs to a dossier: a citizen may act on the payments of their own
dossiers, an officer on those of the agencies they serve, finance reads them
all; the dossier service (role ``service``) reads a payment to check an event.
The agency comes from the charge (``dossier_status_changed`` carries it); the
applicant's ID only the dossier service knows, so a citizen's call is checked
by asking it (``get_dossier`` with this service's own token).
"""
import sqlalchemy as sa
from nameko.exceptions import RemoteError

from payment.orm import charges
from portal_shared.errors import Forbidden


def check_dossier_access(caller, uow, dossier_lookup, dossier_code, readers=()):
    """Raise ``Forbidden`` unless ``caller`` may act on the payments of ``dossier_code``.

    ``readers``: roles allowed whatever the dossier (``finance`` for reads).
    """
    if readers and caller.has(*readers):
        return
    with uow.read() as session:
        charge = session.execute(
            sa.select(charges.c.agency_code).where(charges.c.dossier_code == dossier_code)
        ).first()
    if charge is None:
        return  # nothing is or was ever due: no payment to see or start (the use case says NoPaymentDue)
    agency_code = charge.agency_code
    if caller.has("officer") and agency_code is not None and caller.serves(agency_code):
        return
    if caller.has("citizen") or (caller.has("officer") and agency_code is None):
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
