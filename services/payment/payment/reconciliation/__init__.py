"""Reconciliation of gateway settlement files (contract section 3.4).

- ``reconcile_text(uow, gateway, settlement_csv)``: what the RPC ``reconcile`` calls;
  returns the report dict.
- ``reconcile_file(uow, gateway, path)``: the streaming core for files of millions
  of lines; returns the stored run's id (render it with ``reports``).
- ``reconcile_file_on(engine, gateway, path)``: the same in a transaction of its
  own on ``engine`` without a unit of work (the console command: no ORM session,
  no outbox relay to wake).

Both run in one transaction of the unit of work: a refused file stores nothing.
Each takes ``confirm`` (``confirm.gateway_confirmer(settings)``): nothing is fixed
that the gateway does not confirm.
"""
import io
import os

from payment.reconciliation.matching import check_gateway, reconcile_lines
from payment.reconciliation.reports import build_report
from payment.reconciliation.settlement import HEADER

__all__ = ["reconcile_text", "reconcile_file", "reconcile_file_on", "reconcile_lines", "check_gateway", "HEADER"]


def reconcile_text(uow, gateway, settlement_csv, source="rpc", *, confirm):
    """Reconcile a settlement file given as text; return the contract's report."""
    with uow.transaction() as session:
        run_id = reconcile_lines(session, gateway, io.StringIO(settlement_csv or "", newline=""), source=source,
                                 confirm=confirm)
        return build_report(session.connection(), run_id)


def reconcile_file(uow, gateway, path, wrap=None, *, confirm):
    """Reconcile the settlement file at ``path``, streaming it; return the run id.

    ``wrap(binary_file)`` may return a file-like wrapper around the raw file
    (the console command counts bytes read for its progress bar).
    """
    with open(path, "rb") as raw:
        binary = wrap(raw) if wrap is not None else raw
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="", errors="replace")
        with uow.transaction() as session:
            return reconcile_lines(session, gateway, text, source=os.path.basename(path), confirm=confirm)


class _ConnectionSession:
    """What ``reconcile_lines`` needs of a session: its connection, and ``info`` (the outbox flag)."""

    def __init__(self, connection):
        self._connection = connection
        self.info = {}

    def connection(self):
        return self._connection


def reconcile_file_on(engine, gateway, path, wrap=None, *, confirm):
    """``reconcile_file`` in one transaction of its own on ``engine`` (committed, or rolled back on error).

    For a process with no outbox relay to wake (the console command): the
    recorded events leave with the service's relay, as those of ``reconcile_file``.
    """
    with open(path, "rb") as raw:
        binary = wrap(raw) if wrap is not None else raw
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="", errors="replace")
        with engine.begin() as connection:
            return reconcile_lines(_ConnectionSession(connection), gateway, text, source=os.path.basename(path),
                                   confirm=confirm)
