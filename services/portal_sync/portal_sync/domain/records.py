"""What the national portal receives, built from a dossier as the dossier service shows it.

Plain functions over the contract's Dossier dictionary (``get_dossier``), the
procedure's national codes and the fees paid: no Nameko, no SQLAlchemy, no
HTTP. Field names and formats are those of docs/protocols.md, "National
public-service portal" (``DongBoHoSoMC`` and ``CapNhatTienDoHoSoMC``).
"""
import json
from dataclasses import dataclass
from datetime import datetime

from dossier.domain.model import Status
from portal_shared.timeutil import parse_iso, to_vn

PORTAL_DATE_FORMAT = "%Y%m%d%H%M%S"
OTHER_INFO_LIMIT = 2000  # ThongTinKhac: the form data, bounded
APPLICANT_IS_CITIZEN = "1"
AT_THE_COUNTER = "0"


@dataclass(frozen=True)
class NationalProcedure:
    """A procedure as the national portal names it (``MaTTHC``, ``MaLinhVuc``...)."""

    national_code: str
    name: str = ""
    field_code: str = ""
    field_name: str = ""


@dataclass(frozen=True)
class PaidFee:
    """A fee the citizen paid (from ``payment_succeeded``), as ``DanhSachLePhi`` lists it."""

    txn_ref: str
    amount: int
    gateway: str
    paid_at: str | None


def portal_date(moment):
    """``yyyyMMddHHmmss`` in Vietnam time; an ISO string or datetime in, ``""`` for none."""
    if moment in (None, ""):
        return ""
    if not isinstance(moment, datetime):
        moment = parse_iso(moment)
    return to_vn(moment).strftime(PORTAL_DATE_FORMAT)


def status_code(status):
    return Status(status).code


def _first_at(history, status):
    for entry in history:
        if entry["status"] == status:
            return entry["at"]
    return None


def _last_at(history, status):
    for entry in reversed(history):
        if entry["status"] == status:
            return entry["at"]
    return None


def supplement_requests(history):
    """``DanhSachHoSoBoSung``: each request for documents, with when the citizen answered it."""
    requests = []
    for index, entry in enumerate(history):
        if entry["status"] != Status.supplement_requested.value:
            continue
        answered = next((later["at"] for later in history[index + 1:]
                         if later["status"] == Status.processing.value), None)
        requests.append({
            "NguoiYeuCauBoSung": entry.get("actor") or "",
            "NgayYeuCauBoSung": portal_date(entry["at"]),
            "NoiDungBoSung": entry.get("note") or "",
            "NgayTiepNhanBoSung": portal_date(answered),
        })
    return requests


def fee_list(procedure_name, fees):
    """``DanhSachLePhi``: the fees paid (an unpaid or refunded fee is not listed)."""
    return [{
        "TenPhiLePhi": f"Lệ phí {procedure_name}",
        "MaPhiLePhi": fee.txn_ref,
        "HinhThucThu": f"Trực tuyến ({fee.gateway})",
        "Gia": int(fee.amount),
        "LoaiPhiLePhi": "1",
    } for fee in fees]


def _other_info(form_data):
    if not form_data:
        return ""
    text = json.dumps(form_data, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= OTHER_INFO_LIMIT else text[:OTHER_INFO_LIMIT - 1] + "…"


def dossier_record(dossier, procedure, fees=()):
    """One element of ``DongBoHoSoMC``'s ``data``: the dossier as it stands now."""
    history = dossier.get("history") or []
    applicant = dossier.get("applicant") or {}
    last_note = next((entry.get("note") for entry in reversed(history) if entry.get("note")), None)
    return {
        "MaHoSo": dossier["code"],
        "MaTTHC": procedure.national_code,
        "TenTTHC": procedure.name or dossier.get("procedure_name") or "",
        "MaLinhVuc": procedure.field_code,
        "TenLinhVuc": procedure.field_name,
        "ChuHoSo": applicant.get("full_name") or "",
        "LoaiDoiTuong": APPLICANT_IS_CITIZEN,
        "MaDoiTuong": applicant.get("id_number") or "",
        "ThongTinKhac": _other_info(dossier.get("form_data")),
        "Email": applicant.get("email") or "",
        "Fax": "",
        "SoDienThoai": applicant.get("phone") or "",
        "TrichYeuHoSo": f"{dossier.get('procedure_name') or procedure.name} - {applicant.get('full_name') or ''}",
        "NgayTiepNhan": portal_date(_first_at(history, Status.accepted.value)),
        "NgayHenTra": portal_date(dossier.get("due_at")),
        "TrangThaiHoSo": str(status_code(dossier["status"])),
        "NgayTra": portal_date(_last_at(history, Status.returned.value)),
        "ThongTinTra": "",
        "HinhThuc": AT_THE_COUNTER,
        "NgayKetThucXuLy": portal_date(_last_at(history, Status.processed.value)),
        "DonViXuLy": dossier.get("agency_code") or "",
        "GhiChu": last_note or "",
        "TaiLieuNop": [],
        "DanhSachLePhi": fee_list(dossier.get("procedure_name") or procedure.name, fees),
        "DanhSachTepDinhKemKhac": [],
        "DanhSachHoSoBoSung": supplement_requests(history),
        "DanhSachGiayToKetQua": [],
    }


def progress_entries(dossier, start=0):
    """``CapNhatTienDoHoSoMC`` entries for the history from index ``start`` on, oldest first."""
    history = dossier.get("history") or []
    entries = []
    for entry in history[start:]:
        status = Status(entry["status"])
        what = status.label + (f": {entry['note']}" if entry.get("note") else "")
        entries.append({
            "MaHoSo": dossier["code"],
            "NguoiXuLy": entry.get("actor") or "",
            "ChucDanh": "",
            "ThoiDiemXuLy": portal_date(entry["at"]),
            "PhongBanXuLy": dossier.get("agency_code") or "",
            "NoiDungXuLy": what,
            "TrangThai": str(status.code),
            "NgayBatDau": portal_date(entry["at"]),
            "NgayKetThucTheoQuyDinh": portal_date(dossier.get("due_at")),
        })
    return entries
