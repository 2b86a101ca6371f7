"""Who may do what with dossiers (CONTRACT section 5), as plain checks on a ``Caller``.

Each check raises ``Forbidden`` naming what is missing; none reads or writes
anything, so a refusal changes nothing.
"""
from portal_shared.errors import Forbidden

CITIZEN_ACTIONS = frozenset({"supplement", "withdraw"})


def check_submit(caller, procedure, applicant_id_number):
    if caller.serves(procedure.agency_code) and caller.has("officer"):
        return
    if caller.is_applicant(applicant_id_number):
        return
    if caller.has("citizen"):
        raise Forbidden("a citizen may submit only as the applicant (applicant.id_number must be the token's)")
    raise Forbidden(f"submitting needs the citizen role, or the officer role for agency {procedure.agency_code}")


def can_read(caller, dossier):
    return (
        caller.has("service")
        or (caller.has("officer") and caller.serves(dossier.procedure.agency_code))
        or caller.is_applicant(dossier.applicant.id_number)
    )


def check_read(caller, dossier):
    if not can_read(caller, dossier):
        raise Forbidden("this dossier is neither the caller's own nor of an agency the caller serves")


def check_act(caller, dossier, action):
    if caller.has("officer") and caller.serves(dossier.procedure.agency_code):
        return
    if action in CITIZEN_ACTIONS and caller.is_applicant(dossier.applicant.id_number):
        return
    if caller.is_applicant(dossier.applicant.id_number):
        raise Forbidden(f"a citizen may only {' or '.join(sorted(CITIZEN_ACTIONS))} their own dossier")
    raise Forbidden("acting on this dossier needs the officer role for its agency")


def list_scope(caller, request):
    """Narrow a ``list_dossiers`` request to what the caller may see; returns the filters to apply."""
    scope = dict(request)
    if caller.has("service"):
        scope["agency_codes"] = None
        return scope
    if caller.has("officer"):
        if request.get("agency_code") is not None:
            if not caller.serves(request["agency_code"]):
                raise Forbidden(f"the caller does not serve agency {request['agency_code']}")
            scope["agency_codes"] = None
            return scope
        if caller.agencies:
            scope["agency_codes"] = sorted(caller.agencies)
            return scope
    if caller.has("citizen"):
        asked = request.get("applicant_id_number")
        if asked is not None and asked != caller.id_number:
            raise Forbidden("a citizen may list only their own dossiers")
        scope["applicant_id_number"] = caller.id_number
        scope["agency_codes"] = None
        return scope
    raise Forbidden("listing dossiers needs the citizen, officer or service role")


def stats_scope(caller, request):
    """The agency a ``dossier_stats`` request may cover."""
    if caller.has("operator"):
        return request
    if caller.has("officer"):
        agency = request.get("agency_code")
        if agency is None and len(caller.agencies) == 1:
            return {**request, "agency_code": next(iter(caller.agencies))}
        if agency is None:
            raise Forbidden("give agency_code: one of the agencies the caller serves")
        if caller.serves(agency):
            return request
        raise Forbidden(f"the caller does not serve agency {agency}")
    raise Forbidden("statistics need the officer or operator role")
