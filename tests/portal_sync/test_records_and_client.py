"""What the portal receives, field by field, and how the client reads the adapter's answers (no broker)."""
import pytest

from dossier.procedures import CatalogueError, parse_catalogue, parse_national_codes
from portal_sync.catalogue import NationalCodes
from portal_sync.client import NationalPortalClient, PortalRefused, PortalSettings, PortalUnavailable
from portal_sync.domain.records import PaidFee, dossier_record, portal_date, progress_entries
from tests.portal_sync.conftest import AGENCY, PASSWORD, USERNAME

DOSSIER = {
    "code": "STP-HN-261204-ABC234", "procedure_code": "LLTP-01", "procedure_name": "Cấp Phiếu lý lịch tư pháp",
    "agency_code": "STP-HN", "status": "processing", "status_code": 4, "fee_amount": 200000, "fee_paid": True,
    "applicant": {"full_name": "Nguyễn Văn An", "id_number": "001099012345", "phone": "0912345678",
                  "email": "an@example.vn", "address": "Hà Nội"},
    "form_data": {"so_ban": 1}, "submitted_at": "2026-12-01T08:00:00+07:00", "due_at": "2026-12-15T17:00:00+07:00",
    "history": [
        {"status": "submitted", "at": "2026-12-01T08:00:00+07:00", "actor": "cong-dan", "note": None},
        {"status": "accepted", "at": "2026-12-01T01:30:00+00:00", "actor": "can-bo", "note": None},
        {"status": "payment_requested", "at": "2026-12-01T08:30:00+07:00", "actor": "system", "note": None},
        {"status": "processing", "at": "2026-12-01T09:00:00+07:00", "actor": "system", "note": None},
        {"status": "supplement_requested", "at": "2026-12-02T10:00:00+07:00", "actor": "can-bo", "note": "Thiếu ảnh"},
        {"status": "processing", "at": "2026-12-03T11:00:00+07:00", "actor": "cong-dan", "note": None},
    ],
}


def test_dates_are_vietnam_time_as_yyyymmddhhmmss():
    assert portal_date("2026-12-31T17:30:05+00:00") == "20270101003005"
    assert portal_date("2026-12-04T08:00:00+07:00") == "20261204080000"
    assert portal_date(None) == "" and portal_date("") == ""


def test_the_dossier_record_names_the_national_procedure_status_fees_and_supplements():
    codes = NationalCodes.load()
    record = dossier_record(DOSSIER, codes.procedure("LLTP-01"), [PaidFee("T1", 200000, "vnpay", None)])
    assert record["MaHoSo"] == "STP-HN-261204-ABC234"
    assert (record["MaTTHC"], record["MaLinhVuc"], record["TenLinhVuc"]) == ("1.000001-mau", "LLTP", "Lý lịch tư pháp")
    assert record["TrangThaiHoSo"] == "4" and record["LoaiDoiTuong"] == "1"
    assert record["MaDoiTuong"] == "001099012345" and record["SoDienThoai"] == "0912345678"
    assert record["NgayTiepNhan"] == "20261201083000"  # accepted at 01:30 UTC
    assert record["NgayHenTra"] == "20261215170000" and record["NgayTra"] == "" and record["NgayKetThucXuLy"] == ""
    assert record["DanhSachLePhi"] == [{"TenPhiLePhi": "Lệ phí Cấp Phiếu lý lịch tư pháp", "MaPhiLePhi": "T1",
                                        "HinhThucThu": "Trực tuyến (vnpay)", "Gia": 200000, "LoaiPhiLePhi": "1"}]
    assert record["DanhSachHoSoBoSung"] == [{"NguoiYeuCauBoSung": "can-bo", "NgayYeuCauBoSung": "20261202100000",
                                             "NoiDungBoSung": "Thiếu ảnh", "NgayTiepNhanBoSung": "20261203110000"}]
    assert record["GhiChu"] == "Thiếu ảnh" and record["ThongTinKhac"] == '{"so_ban": 1}'


def test_a_procedure_without_national_code_is_reported_under_its_own_code():
    procedure = NationalCodes.load().procedure("GPLX-DOI")
    assert procedure.national_code == "GPLX-DOI" and procedure.field_code == "DBO"
    assert NationalCodes.load().procedure("UNKNOWN-9", "Thủ tục lạ").national_code == "UNKNOWN-9"


def test_progress_entries_follow_the_history_from_the_first_one_not_sent():
    entries = progress_entries(DOSSIER, start=4)
    assert [(e["TrangThai"], e["NguoiXuLy"], e["ThoiDiemXuLy"]) for e in entries] == [
        ("5", "can-bo", "20261202100000"), ("4", "cong-dan", "20261203110000")]
    assert entries[0]["NoiDungXuLy"] == "Yêu cầu bổ sung giấy tờ: Thiếu ảnh"
    assert entries[0]["NgayKetThucTheoQuyDinh"] == "20261215170000" and entries[0]["PhongBanXuLy"] == "STP-HN"
    assert progress_entries(DOSSIER, start=6) == []


CATALOGUE = "- {code: A-1, name: Thủ tục A, agency_code: X, fee: 0, processing_days: 1%s}\n"


def test_the_catalogue_takes_optional_national_codes_and_refuses_bad_ones():
    assert parse_national_codes(CATALOGUE % ", national_code: '1.0001'")["A-1"]["national_code"] == "1.0001"
    assert parse_national_codes(CATALOGUE % "")["A-1"]["national_code"] is None
    assert list(parse_catalogue(CATALOGUE % ", field_code: LV")) == ["A-1"]
    for bad in (", national_code: ''", ", national_code: 12", ", field_name: [x]"):
        with pytest.raises(CatalogueError, match=r"entry 1 \(A-1\): (national_code|field_name) must be"):
            parse_catalogue(CATALOGUE % bad)


@pytest.fixture
def client(national_portal):
    settings = PortalSettings(national_portal.base_url, username=USERNAME, password=PASSWORD, agency_code=AGENCY,
                              timeout_seconds=1.0)
    return NationalPortalClient(settings)


def test_the_client_logs_in_once_and_again_when_the_session_expires(client, national_portal):
    client.sync_dossiers([dossier_record(DOSSIER, NationalCodes.load().procedure("LLTP-01"))], updating=False)
    client.update_progress(progress_entries(DOSSIER))
    assert national_portal.logins == 1
    national_portal.expire_sessions()
    assert client.look_up(DOSSIER["code"])["TrangThaiHoSo"] == "4"
    assert national_portal.logins == 2 and client.logins == 2
    assert client.look_up("NOT-KNOWN") is None
    assert client.procedure("1.000001-mau")["TENTTHC"] == "Cấp Phiếu lý lịch tư pháp"
    assert national_portal.format_errors == []


def test_the_client_tells_temporary_failures_from_refusals(client, national_portal):
    national_portal.down(1)
    with pytest.raises(PortalUnavailable, match="HTTP 503"):
        client.look_up("X")
    national_portal.hang(1)
    with pytest.raises(PortalUnavailable, match="unreachable"):
        client.look_up("X")
    national_portal.refuse("REFUSED-1")
    with pytest.raises(PortalRefused) as refused:
        client.update_progress([{"MaHoSo": "REFUSED-1"}])
    assert refused.value.answer["error_code"] == "99"
    wrong = NationalPortalClient(PortalSettings(national_portal.base_url, username=USERNAME, password="wrong"))
    with pytest.raises(PortalUnavailable, match="login refused"):
        wrong.look_up("X")
    nowhere = NationalPortalClient(PortalSettings("http://127.0.0.1:9", timeout_seconds=0.5))
    with pytest.raises(PortalUnavailable):
        nowhere.look_up("X")


def test_an_http_error_without_the_adapters_error_code_is_not_a_refusal(national_portal):
    wrong_path = NationalPortalClient(PortalSettings(national_portal.base_url, integration_path="/api/wrong",
                                                     username=USERNAME, password=PASSWORD, agency_code=AGENCY))
    with pytest.raises(PortalUnavailable, match="HTTP 404"):
        wrong_path.look_up("X")


def test_the_catalogue_command_names_procedures_the_portal_does_not_know(national_portal, portal_settings,
                                                                        sync_database, monkeypatch):
    import io

    from portal_sync import cli

    for name, value in {**portal_settings, "PORTAL_SYNC_DATABASE_URL": sync_database.url}.items():
        monkeypatch.setenv(name, str(value))
    out = io.StringIO()
    assert cli.main(["catalogue"], out=out) == 0
    assert "0 of 4 procedures unknown to the portal" in out.getvalue()
    national_portal.procedures.pop("GPLX-DOI")  # no national code in our catalogue, its own unknown nationally
    out = io.StringIO()
    assert cli.main(["catalogue"], out=out) == 1
    report = out.getvalue()
    assert "LLTP-01: MaTTHC 1.000001-mau = Cấp Phiếu lý lịch tư pháp (MaLinhVuc LLTP; ours LLTP)" in report
    assert "GPLX-DOI: MaTTHC GPLX-DOI unknown to the portal" in report
    assert "1 of 4 procedures unknown to the portal" in report
