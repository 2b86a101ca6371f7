"""``make bench``'s stage breakdown of accept → SMS, read from the services' JSON log lines."""
import json
from datetime import datetime
from types import SimpleNamespace

from bench.sections.notify_latency import stages


def _at(seconds):
    return f"2026-12-05T04:00:{seconds:06.3f}"


def _line(event, seconds, **fields):
    return json.dumps({"event": event, "timestamp": _at(seconds) + "Z", **fields}) + "\n"


def _epoch(seconds):
    return datetime.fromisoformat(_at(seconds) + "+00:00").timestamp()


def test_each_stage_is_measured_from_the_first_matching_line_of_each_dossier(tmp_path):
    (tmp_path / "dossier.0.log").write_text(
        "not json: a warning printed by a library\n"
        + _line("dossier_transition", 1.0, dossier_code="D-1", action="submit")
        + _line("dossier_transition", 2.0, dossier_code="D-1", action="accept")
        + _line("dossier_transition", 2.5, dossier_code="D-2", action="accept"))
    (tmp_path / "notify.0.log").write_text(
        _line("event_notifications", 1.1, dossier_code="D-1", created=0)  # the submit: nothing to send
        + _line("event_notifications", 2.1, dossier_code="D-1", created=2)
        + _line("event_notifications", 2.9, dossier_code="D-2", created=2))
    (tmp_path / "notify.1.log").write_text(_line("event_notifications", 3.5, dossier_code="D-1", created=2))
    (tmp_path / "portal_sync.0.log").write_text(
        _line("dossier_change_recorded", 2.05, dossier_code="D-1", status="accepted"))
    arrivals = {0: [_epoch(2.3), _epoch(9.0)], 1: [_epoch(3.0)]}  # D-1's SMS twice: the first counts

    found = stages(SimpleNamespace(log_dir=tmp_path), ["D-1", "D-2"], arrivals)

    assert found["accept_commit_to_notify_commit"] == {"n": 2, "p50": 100.0, "p90": 400.0, "p99": 400.0}
    assert found["accept_commit_to_portal_sync_commit"] == {"n": 1, "p50": 50.0, "p90": 50.0, "p99": 50.0}
    assert found["notify_commit_to_sms"] == {"n": 2, "p50": 100.0, "p90": 200.0, "p99": 200.0}
