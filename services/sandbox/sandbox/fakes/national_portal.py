"""A fake of the province's integration adapter of the national portal (docs/protocols.md wire format).

It logs callers in, answers ``DongBoHoSoMC``, ``CapNhatTienDoHoSoMC``,
``TraCuuHoSo`` and ``LayThuTuc`` (from the procedures it is given: the
national procedure database, not the province's catalogue), records every call
in order, keeps the dossiers and their progress as the portal would show
them, and notes any request the real adapter would not understand in
``format_errors``. Faults for tests and the sandbox: ``down(times)`` (HTTP
503), ``hang(times)`` (no answer), ``expire_sessions()``, ``refuse(code)`` (a
dossier refused with an error code), ``lose(code)`` (the portal forgets a
dossier).
"""
import json
import re
import secrets
from datetime import datetime, timedelta, timezone

from sandbox.fakes.server import FakeServer, hang_up, json_response

VN_TZ = timezone(timedelta(hours=7), "ICT")
DATE = re.compile(r"^(\d{14})?$")
DOSSIER_FIELDS = (
    "MaHoSo", "MaTTHC", "TenTTHC", "MaLinhVuc", "TenLinhVuc", "ChuHoSo", "LoaiDoiTuong", "MaDoiTuong",
    "ThongTinKhac", "Email", "Fax", "SoDienThoai", "TrichYeuHoSo", "NgayTiepNhan", "NgayHenTra", "TrangThaiHoSo",
    "NgayTra", "ThongTinTra", "HinhThuc", "NgayKetThucXuLy", "DonViXuLy", "GhiChu", "TaiLieuNop", "DanhSachLePhi",
    "DanhSachTepDinhKemKhac", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua",
)
DOSSIER_DATES = ("NgayTiepNhan", "NgayHenTra", "NgayTra", "NgayKetThucXuLy")
LIST_FIELDS = ("TaiLieuNop", "DanhSachLePhi", "DanhSachTepDinhKemKhac", "DanhSachHoSoBoSung", "DanhSachGiayToKetQua")
FEE_FIELDS = ("TenPhiLePhi", "MaPhiLePhi", "HinhThucThu", "Gia", "LoaiPhiLePhi")
PROGRESS_FIELDS = ("MaHoSo", "NguoiXuLy", "ChucDanh", "ThoiDiemXuLy", "PhongBanXuLy", "NoiDungXuLy", "TrangThai",
                   "NgayBatDau", "NgayKetThucTheoQuyDinh")
PROGRESS_DATES = ("ThoiDiemXuLy", "NgayBatDau", "NgayKetThucTheoQuyDinh")
MAX_BATCH = 1000


def ok(**extra):
    return {"error_code": "00", "message": "Thành công", **extra}


class FakeNationalPortal(FakeServer):
    def __init__(self, username="lgsp-user", password="lgsp-password", agency_code="000.00.00.H26",
                 auth_path="/api/login", integration_path="/api/integration", procedures=None,
                 hang_seconds=3.0, **server):
        super().__init__(**server)
        self.username, self.password, self.agency_code = username, password, agency_code
        self.auth_path, self.integration_path = auth_path, integration_path
        self.procedures = procedures or {}  # national code -> {"name", "field_code", "field_name"}
        self.hang_seconds = hang_seconds
        self.reset()

    def reset(self):
        with self.lock:
            self.sessions = set()
            self.logins = 0
            self.calls = []          # every integration call answered, in order: {service, isUpdating, data, at}
            self.dossiers = {}       # MaHoSo -> the record as the portal shows it
            self.progress = {}       # MaHoSo -> [progress entries], in the order received
            self.format_errors = []  # what the real adapter would not understand
            self.rejected = []       # calls answered with an error: {service, error_code, reason}
            self._down = 0
            self._hang = 0
            self._refused = {}

    # -- faults ------------------------------------------------------------
    def down(self, times=-1):
        """The next ``times`` requests (every one when -1, until ``up()``) answer HTTP 503."""
        with self.lock:
            self._down = times

    def hang(self, times=1):
        with self.lock:
            self._hang = times

    def up(self):
        with self.lock:
            self._down = 0
            self._hang = 0

    def expire_sessions(self):
        with self.lock:
            self.sessions.clear()

    def refuse(self, dossier_code, message="MaTTHC không có trong CSDL thủ tục hành chính quốc gia"):
        with self.lock:
            self._refused[dossier_code] = message

    def accept(self, dossier_code=None):
        with self.lock:
            if dossier_code is None:
                self._refused.clear()
            else:
                self._refused.pop(dossier_code, None)

    def lose(self, dossier_code):
        with self.lock:
            self.dossiers.pop(dossier_code, None)
            self.progress.pop(dossier_code, None)

    # -- views -------------------------------------------------------------
    def statuses(self, dossier_code):
        """The ``TrangThai`` of every progress entry of a dossier, in the order received."""
        with self.lock:
            return [entry["TrangThai"] for entry in self.progress.get(dossier_code, [])]

    def state(self):
        with self.lock:
            return {
                "logins": self.logins,
                "dossiers": dict(self.dossiers),
                "progress": {code: list(entries) for code, entries in self.progress.items()},
                "calls": [{k: v for k, v in call.items() if k != "data"} | {"size": len(call["data"])}
                          for call in self.calls],
                "rejected": list(self.rejected),
                "format_errors": list(self.format_errors),
            }

    # -- the wire ----------------------------------------------------------
    def handle(self, path, body):
        """``(http_status, answer)``; ``(None, None)`` for a request to leave without an answer."""
        with self.lock:
            if self._hang:
                self._hang -= 1 if self._hang > 0 else 0
                return None, None
            if self._down:
                if self._down > 0:
                    self._down -= 1
                return 503, {"message": "Service Unavailable"}
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"error_code": "400", "message": "JSON không hợp lệ"}
        if not isinstance(request, dict):
            return 400, {"error_code": "400", "message": "JSON không hợp lệ"}
        if path == self.auth_path:
            return 200, self._login(request)
        if path == self.integration_path:
            return 200, self._integration(request)
        return 404, {"message": "not found"}  # the web server, not the adapter

    def _login(self, request):
        if request.get("username") != self.username or request.get("password") != self.password:
            return {"error_code": "403", "message": "Sai tên đăng nhập hoặc mật khẩu"}
        token = secrets.token_hex(16)
        with self.lock:
            self.sessions.add(token)
            self.logins += 1
        return {"error_code": 0, "session": token}

    def _integration(self, request):
        with self.lock:
            if request.get("session") not in self.sessions:
                return {"error_code": "401", "message": "Phiên làm việc không hợp lệ hoặc đã hết hạn"}
            if self.agency_code and request.get("madonvi") != self.agency_code:
                return self._reject(request, "403", f"madonvi {request.get('madonvi')!r} không đúng")
            service = request.get("service")
            if service == "DongBoHoSoMC":
                return self._sync(request)
            if service == "CapNhatTienDoHoSoMC":
                return self._progress(request)
            if service == "TraCuuHoSo":
                record = self.dossiers.get(str(request.get("mahoso") or ""))
                return ok(result=[dict(record)] if record else [])
            if service == "LayThuTuc":
                procedure = self.procedures.get(str(request.get("maTTHC") or ""))
                result = [{"MATTHC": request.get("maTTHC"), "TENTTHC": procedure["name"],
                           "LINHVUCTHUCHIEN": [{"MALINHVUC": procedure.get("field_code") or "",
                                                "TENLINHVUC": procedure.get("field_name") or ""}]}] if procedure else []
                return ok(result=result)
            return self._reject(request, "404", f"service {service!r} không tồn tại")

    def _reject(self, request, code, reason):
        self.rejected.append({"service": request.get("service"), "error_code": code, "reason": reason})
        return {"error_code": code, "message": reason}

    def _data(self, request):
        data = request.get("data")
        if not isinstance(data, list) or not data or len(data) > MAX_BATCH:
            return None
        if not all(isinstance(item, dict) for item in data):
            return None
        return data

    def _refusal(self, request, data):
        for item in data:
            if item.get("MaHoSo") in self._refused:
                return self._reject(request, "99", f"{item['MaHoSo']}: {self._refused[item['MaHoSo']]}")
        return None

    def _sync(self, request):
        data = self._data(request)
        updating = request.get("isUpdating")
        if data is None or updating not in ("True", "False"):
            self.format_errors.append({"service": "DongBoHoSoMC", "reason": "data or isUpdating malformed"})
            return self._reject(request, "400", "data phải là danh sách hồ sơ, isUpdating là \"True\"/\"False\"")
        refusal = self._refusal(request, data)
        if refusal:
            return refusal
        for item in data:
            missing = [name for name in DOSSIER_FIELDS if name not in item]
            bad_dates = [name for name in DOSSIER_DATES if not DATE.match(str(item.get(name, "")))]
            bad_lists = [name for name in LIST_FIELDS if not isinstance(item.get(name, []), list)]
            bad_fees = [fee for fee in item.get("DanhSachLePhi") or [] if any(k not in fee for k in FEE_FIELDS)]
            status = str(item.get("TrangThaiHoSo", ""))
            if missing or bad_dates or bad_lists or bad_fees or status not in {str(n) for n in range(1, 11)}:
                self.format_errors.append({"MaHoSo": item.get("MaHoSo"), "missing": missing, "dates": bad_dates,
                                           "lists": bad_lists, "fees": bool(bad_fees), "status": status})
            known = item.get("MaHoSo") in self.dossiers
            if updating == "False" and known:
                self.format_errors.append({"MaHoSo": item.get("MaHoSo"), "reason": "created twice"})
        for item in data:
            self.dossiers[item["MaHoSo"]] = dict(item)
        self.calls.append({"service": "DongBoHoSoMC", "isUpdating": updating, "data": data,
                           "at": datetime.now(VN_TZ).isoformat()})
        return ok()

    def _progress(self, request):
        data = self._data(request)
        if data is None:
            self.format_errors.append({"service": "CapNhatTienDoHoSoMC", "reason": "data malformed"})
            return self._reject(request, "400", "data phải là danh sách tiến độ")
        refusal = self._refusal(request, data)
        if refusal:
            return refusal
        for item in data:
            missing = [name for name in PROGRESS_FIELDS if name not in item]
            bad_dates = [name for name in PROGRESS_DATES if not DATE.match(str(item.get(name, "")))]
            if missing or bad_dates or str(item.get("TrangThai")) not in {str(n) for n in range(1, 11)}:
                self.format_errors.append({"MaHoSo": item.get("MaHoSo"), "missing": missing, "dates": bad_dates})
            if item.get("MaHoSo") not in self.dossiers:
                self.format_errors.append({"MaHoSo": item.get("MaHoSo"), "reason": "progress before the dossier"})
            self.progress.setdefault(item.get("MaHoSo"), []).append(dict(item))
        self.calls.append({"service": "CapNhatTienDoHoSoMC", "data": data, "at": datetime.now(VN_TZ).isoformat()})
        return ok()

    def app(self, request):
        if request.method != "POST":
            return json_response({"message": "not found"}, 404)
        status, answer = self.handle(request.path, request.get_data())
        if status is None:
            hang_up(self.hang_seconds)
        return json_response(answer, status)
