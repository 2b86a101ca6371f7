"""A submission's log line: masked personal data, call id and entrypoint."""
import io
import json

from portal_shared.logs import configure_logging
from tests.helpers import rpc_proxy


def test_submission_log_line_masks_the_applicant(dossier_container, dossier_config, applicant):
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", stream=stream, force=True)
    try:
        with rpc_proxy(dossier_config) as rpc:
            code = rpc.dossier.submit_dossier("LLTP-01", applicant)["code"]
    finally:
        configure_logging(force=True)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]
    submitted = [line for line in lines if line.get("event") == "dossier_submitted"]
    assert len(submitted) == 1
    line = submitted[0]
    assert line["dossier_code"] == code
    assert line["entrypoint"] == "submit_dossier" and line["call_id"].startswith("dossier.submit_dossier.")
    raw = json.dumps(line, ensure_ascii=False)
    for secret in ("0912345678", "001099012345", "an.nguyen@example.vn"):
        assert secret not in raw
    assert line["applicant"]["phone"] == "***78"
    assert line["applicant"]["id_number"] == "*********345"
    assert line["applicant"]["email"] == "a***@example.vn"
