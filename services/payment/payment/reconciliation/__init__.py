"""Reconciliation of gateway settlement files (contract section 3.4).

- ``reconcile_text(database, gateway, settlement_csv)``: what the RPC ``reconcile``
  calls; returns the report dict.
- ``reconcile_file(database, gateway, path)``: the streaming core for files of
  millions of lines; returns the stored run's id (render it with ``reports``).
- ``reconcile_file_on(engine, gateway, path)``: the same in a transaction of its
  own on ``engine`` without an ORM session (the console command: no outbox relay
  to wake).

``database`` is the worker's ``portal_shared.db.UnitOfWork``. A run is one
transaction: a refused file stores nothing. Each takes ``confirm``
(``confirm.gateway_confirmer(settings)``): nothing is fixed that the gateway
does not confirm. The pieces: ``settlement.py`` (the row rules), ``loader.py``
(the only code that knows the database: it fills ``tables.recon_staging``),
``matching.py`` (duplicates, fixes, classification, in SQL that runs on both
databases) and ``fixing.py`` (fixes through the ``Payment`` aggregate).
"""
import io
import os

from payment.reconciliation.matching import check_gateway, reconcile_lines
from payment.reconciliation.reports import build_report
from payment.reconciliation.settlement import HEADER

__all__ = ["reconcile_text", "reconcile_file", "reconcile_file_on", "reconcile_lines", "check_gateway", "HEADER"]


def reconcile_text(database, gateway, settlement_csv, source="rpc", *, confirm, call_id_stack=None):
    """Reconcile a settlement file given as text; return the contract's report."""
    with database.transaction() as session:
        run_id = reconcile_lines(session, gateway, io.StringIO(settlement_csv or "", newline=""), source=source,
                                 confirm=confirm, call_id_stack=call_id_stack)
        return build_report(session.connection(), run_id)


def reconcile_file(database, gateway, path, wrap=None, *, confirm):
    """Reconcile the settlement file at ``path``, streaming it; return the run id.

    ``wrap(binary_file)`` may return a file-like wrapper around the raw file
    (the console command counts bytes read for its progress bar).
    """
    with open(path, "rb") as raw:
        binary = wrap(raw) if wrap is not None else raw
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="", errors="replace")
        with database.transaction() as session:
            return reconcile_lines(session, gateway, text, source=os.path.basename(path), confirm=confirm)


class _ConnectionSession:
    """What a run needs of a session, over a bare connection: the connection for the SQL, and for the
    repositories of the fix step ``execute``, ``get_bind`` and ``info`` (where the outbox flags its events)."""

    def __init__(self, connection):
        self._connection = connection
        self.info = {}

    def connection(self):
        return self._connection

    def execute(self, statement, *args, **kwargs):
        return self._connection.execute(statement, *args, **kwargs)

    def get_bind(self):
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
