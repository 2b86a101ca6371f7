"""A delivery batch reads its dossiers from the dossier service in one ``get_dossiers`` call.

Each test lets changes gather while no portal is configured, then starts a delivering portal_sync:
its first round claims every pending dossier at once. The calls are counted where the dossier
service's workers run them (``portal_worker_calls_total``).
"""
import uuid

import eventlet
import sqlalchemy as sa
from nameko.standalone.events import event_dispatcher
from prometheus_client import REGISTRY

from dossier.service import DossierService
from portal_shared.timeutil import isoformat, utcnow
from tests.helpers import rpc_proxy, wait_for

FREE = "KHAISINH-01"
GHOST = "UBND-PX-HN-000000-XXXXXX"  # a change for a dossier the dossier service does not know


class OlderDossierService(DossierService):
    """The dossier service as it was before ``get_dossiers``: a rolling upgrade meets it for a while."""

    get_dossiers = None


def worker_calls(entrypoint):
    """How many calls of ``entrypoint`` the dossier service's workers have run in this process, answered or not."""
    return sum(REGISTRY.get_sample_value("portal_worker_calls_total",
                                         {"service": "dossier", "entrypoint": entrypoint, "outcome": outcome}) or 0
               for outcome in ("ok", "error"))


def gather_changes(rabbit_config, start_sync, applicant, count, ghost=False):
    """``count`` new dossiers (and a change of ``GHOST``) pending in a portal_sync that sends nothing."""
    unconfigured = start_sync(NATIONAL_PORTAL_URL="")
    with rpc_proxy(rabbit_config) as rpc:
        codes = [rpc.dossier.submit_dossier(FREE, applicant)["code"] for _ in range(count)]
        if ghost:
            event_dispatcher(rabbit_config)("dossier", "dossier_status_changed", {
                "event_id": str(uuid.uuid4()), "occurred_at": isoformat(utcnow()), "dossier_code": GHOST,
                "old_status": None, "new_status": "submitted", "status_code": 1})
        wait_for(lambda: rpc.portal_sync.sync_stats()["pending"] == count + ghost, timeout=15,
                 message="every change pending")
    unconfigured.stop()
    return codes


def sync_rows(sync_database):
    with sync_database.engine.connect() as connection:
        return {row.dossier_code: row for row in connection.execute(
            sa.text("SELECT dossier_code, pending, attempts, last_error, parked_at FROM sync_dossiers"))}


def deliver_and_park(start_sync, national_portal, sync_database, codes):
    """Starts a delivering portal_sync; returns once ``codes`` are at the portal and ``GHOST`` is parked."""
    start_sync()
    wait_for(lambda: all(national_portal.statuses(code) == ["1"] for code in codes), timeout=15,
             message=f"the {len(codes)} dossiers at the portal")
    wait_for(lambda: sync_rows(sync_database)[GHOST].parked_at is not None, message="the unknown dossier parked")


def test_a_batch_is_read_in_one_call_and_an_unknown_dossier_is_parked(
        dossier_service, start_sync, national_portal, rabbit_config, applicant, sync_database):
    codes = gather_changes(rabbit_config, start_sync, applicant, 12, ghost=True)
    batch_reads, single_reads = worker_calls("get_dossiers"), worker_calls("get_dossier")
    deliver_and_park(start_sync, national_portal, sync_database, codes)
    eventlet.sleep(0.5)  # a second read would have come by now
    assert worker_calls("get_dossiers") == batch_reads + 1
    assert worker_calls("get_dossier") == single_reads
    assert sync_rows(sync_database)[GHOST].last_error == "dossier not found"
    assert GHOST not in national_portal.dossiers


def test_an_older_dossier_service_without_get_dossiers_is_read_one_dossier_at_a_time(
        container_factory, dossier_config, start_sync, national_portal, rabbit_config, applicant, sync_database):
    container_factory(OlderDossierService, dossier_config).start()
    codes = gather_changes(rabbit_config, start_sync, applicant, 3, ghost=True)
    batch_reads, single_reads = worker_calls("get_dossiers"), worker_calls("get_dossier")
    deliver_and_park(start_sync, national_portal, sync_database, codes)
    wait_for(lambda: worker_calls("get_dossier") == single_reads + 4, message="one get_dossier per dossier")
    assert worker_calls("get_dossiers") == batch_reads  # MethodNotFound: no worker of dossier ran one
    assert sync_rows(sync_database)[GHOST].last_error == "dossier not found"


def test_a_dossier_service_that_refuses_the_batch_read_defers_every_dossier_of_it(
        container_factory, dossier_service, dossier_config, start_sync, national_portal, rabbit_config, applicant,
        sync_database):
    codes = gather_changes(rabbit_config, start_sync, applicant, 4)
    dossier_service.stop()
    # a dossier service without the signing key answers every call Unauthorized: a remote error, not an answer
    refusing = container_factory(DossierService, {**dossier_config, "AUTH_JWT_SECRET": ""})
    refusing.start()
    start_sync()
    wait_for(lambda: all(row.attempts >= 1 for row in sync_rows(sync_database).values()), timeout=15,
             message="every dossier deferred")
    rows = sync_rows(sync_database)
    assert sorted(rows) == sorted(codes)
    assert all(row.pending and row.parked_at is None for row in rows.values())
    assert all(row.last_error == "get_dossiers: Unauthorized" for row in rows.values())
    assert national_portal.calls == []

    refusing.stop()
    container_factory(DossierService, dossier_config).start()
    wait_for(lambda: all(national_portal.statuses(code) == ["1"] for code in codes), timeout=15,
             message="the deferred dossiers delivered once the dossier service answers")
