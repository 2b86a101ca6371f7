"""On-time statistics over real rows, and the procedure catalogue."""
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import sessionmaker

from dossier import use_cases
from dossier.commands import ActOnDossier, SubmitDossier
from dossier.messagebus import MessageBus
from dossier.procedures import CatalogueError, load_catalogue, parse_catalogue
from dossier.unit_of_work import SqlUnitOfWork
from portal_shared.db import UnitOfWork
from portal_shared.timeutil import VN_TZ

MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=VN_TZ)
APPLICANT = {"full_name": "Phạm Thị D", "id_number": "001199000111", "phone": "0901234567",
             "email": None, "address": None}


@pytest.fixture
def uow(dossier_database):
    dossier_database.truncate()
    return SqlUnitOfWork(UnitOfWork(sessionmaker(bind=dossier_database.engine, expire_on_commit=False), relay=None))


def walk(uow, catalogue, procedure_code, steps, agency=None):
    """Submit at MONDAY, then apply (action, days after MONDAY) steps."""
    bus = MessageBus(uow, catalogue=catalogue)
    dossier = bus.handle(SubmitDossier(procedure_code, dict(APPLICANT), {}, now=MONDAY))
    for action, days in steps:
        bus.handle(ActOnDossier(dossier.code, action, "officer", now=MONDAY + timedelta(days=days)))
    return dossier.code


def test_on_time_rate_over_a_handful_of_dossiers(uow):
    catalogue = load_catalogue()
    # KHAISINH-01: 1 working day; accepted Monday 09:00 → due Tuesday 09:00.
    walk(uow, catalogue, "KHAISINH-01", [("accept", 0), ("start", 0), ("finish", 0.5)])  # on time
    walk(uow, catalogue, "KHAISINH-01", [("accept", 0), ("start", 0), ("finish", 0.9), ("return_result", 1)])  # on time
    walk(uow, catalogue, "KHAISINH-01", [("accept", 0), ("start", 0), ("finish", 3)])  # late
    walk(uow, catalogue, "KHAISINH-01", [("accept", 0), ("start", 0)])  # open and overdue
    walk(uow, catalogue, "KHAISINH-01", [("accept", 0), ("start", 0), ("request_supplement", 0.5)])  # paused in time
    walk(uow, catalogue, "KHAISINH-01", [])  # submitted: no deadline yet
    walk(uow, catalogue, "KHAISINH-01", [("refuse", 0)])

    stats = use_cases.dossier_stats(uow, {"agency_code": None, "since": None, "until": None},
                                    now=MONDAY + timedelta(days=10))
    assert stats["on_time"] == 2 and stats["late"] == 1 and stats["finished"] == 3
    assert stats["overdue_open"] == 1
    assert stats["on_time_rate"] == pytest.approx(2 / 4)
    assert stats["by_status"]["processed"] == 2 and stats["by_status"]["returned"] == 1
    assert stats["by_status"]["not_accepted"] == 1 and sum(stats["by_status"].values()) == 7

    assert use_cases.dossier_stats(uow, {"agency_code": "CA-HN", "since": None, "until": None})["finished"] == 0
    later = use_cases.dossier_stats(uow, {"agency_code": None, "since": MONDAY + timedelta(days=1), "until": None})
    assert sum(later["by_status"].values()) == 0


def test_the_sample_catalogue_has_the_published_fees():
    catalogue = load_catalogue()
    assert catalogue["LLTP-01"].fee == 200_000 and catalogue["HOCHIEU-01"].fee == 200_000
    assert catalogue["GPLX-DOI"].fee == 135_000 and catalogue["KHAISINH-01"].fee == 0


@pytest.mark.parametrize("text,message", [
    ("- {code: A, name: X, agency_code: Y, fee: -1, processing_days: 2}", "entry 1 (A): fee"),
    ("- {code: A, name: X, agency_code: Y, fee: 1, processing_days: 2}\n- {code: B, name: X, fee: 1, processing_days: 1}",
     "entry 2 (B): missing agency_code"),
    ("- {code: A, name: X, agency_code: Y, fee: 1.5, processing_days: 2}", "fee must be a whole number"),
    ("not: a list", "non-empty list"),
])
def test_a_malformed_catalogue_is_refused_naming_the_entry(text, message):
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text, source="procedures.yml")
    assert message in str(caught.value)


def test_a_malformed_catalogue_stops_start_up(container_factory, dossier_config, tmp_path):
    from dossier.service import DossierService

    path = tmp_path / "procedures.yml"
    path.write_text("- {code: A, name: X}\n", encoding="utf-8")
    container = container_factory(DossierService, {**dossier_config, "DOSSIER_PROCEDURES_FILE": str(path)})
    with pytest.raises(CatalogueError, match="entry 1 \\(A\\): missing agency_code"):
        container.start()
