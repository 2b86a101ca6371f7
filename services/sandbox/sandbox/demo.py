"""``make demo``: one dossier from submission through a VNPay payment to the returned result.

Runs against a running ``make run`` (the services and the sandbox):
RPC through ``ClusterRpcProxy`` on ``AMQP_URI``, the citizen's clicks against
the sandbox's pay page, and after every step the SMS and e-mails the citizen
received, read from the sandbox's ``/outbox.json``; at the end, the dossier as
the (sandbox) national portal received it from portal_sync. The citizen and the
officer each call with their own token (CONTRACT section 5), signed with
``AUTH_JWT_SECRET`` or, when unset, the dev key ``make run`` wrote to
``var/dev-auth-secret``.
"""
import eventlet

eventlet.monkey_patch()  # noqa: E402  (nameko's standalone proxy runs on green threads)

import os  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import parse_qsl, urlparse  # noqa: E402

import requests  # noqa: E402
from nameko.exceptions import RemoteError  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402

RETURN_URL = "http://localhost:3000/thanh-toan/ket-qua"
APPLICANT = {
    "full_name": "Nguyễn Văn An",
    "id_number": "001099012345",
    "phone": "0912345678",
    "email": "an.nguyen@example.vn",
    "address": "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
}


class Demo:
    def __init__(self, citizen, officer, sandbox_url):
        self.rpc = citizen      # the citizen's calls (through the portal)
        self.officer = officer  # the one-stop-shop officer's calls
        self.sandbox_url = sandbox_url.rstrip("/")
        self.code = None
        self.seen = set()
        self.number = 0

    def step(self, title):
        self.number += 1
        print(f"\n== {self.number}. {title}")

    def show(self, dossier):
        print(f"   dossier {dossier['code']}: {dossier['status']} (mã {dossier['status_code']})"
              + (f", hạn trả {dossier['due_at']}" if dossier.get("due_at") else ""))

    def messages(self, wait=3.0):
        """Print what reached the citizen since the last step (new messages naming the dossier)."""
        deadline = time.monotonic() + wait
        new = []
        while time.monotonic() < deadline:
            outbox = requests.get(f"{self.sandbox_url}/outbox.json", params={"contains": self.code},
                                  timeout=5).json()["messages"]
            new = [m for m in reversed(outbox) if m["id"] not in self.seen]
            if new:
                time.sleep(0.5)  # the e-mail usually follows the SMS by a moment
                outbox = requests.get(f"{self.sandbox_url}/outbox.json", params={"contains": self.code},
                                      timeout=5).json()["messages"]
                new = [m for m in reversed(outbox) if m["id"] not in self.seen]
                break
            time.sleep(0.2)
        for message in new:
            self.seen.add(message["id"])
            if message["channel"] == "sms":
                print(f"   SMS ({message['provider']}) to {message['to']}: {message['text']}")
            else:
                print(f"   E-mail to {message['to']}: {message['subject']}")
                for line in (message["text"] or "").strip().splitlines():
                    print(f"      | {line}")
        if not new:
            print("   (no message to the citizen for this step)")

    def wait(self, what, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.3)
        raise SystemExit(f"demo: timed out waiting for {what}")

    def run(self):
        self.step("Citizen submits LLTP-01 (Cấp Phiếu lý lịch tư pháp)")
        dossier = self.rpc.dossier.submit_dossier("LLTP-01", APPLICANT, {"so_ban": 1, "muc_dich": "xin việc"})
        self.code = dossier["code"]
        self.show(dossier)
        self.messages(wait=1.5)

        self.step("Officer accepts it: the fee of 200.000 đ becomes payable")
        dossier = self.officer.dossier.act_on_dossier(self.code, "accept", "can-bo-mot-cua")
        self.show(dossier)
        self.messages()

        self.step("Citizen chooses VNPay")
        payment = self.wait("the payment service to learn the fee", self._start_payment)
        print(f"   payment {payment['txn_ref']}: {payment['amount']} đ, {payment['status']}")
        print(f"   pay URL: {payment['pay_url'][:110]}...")

        self.step("Citizen opens the pay page and presses 'Thanh toán'")
        page = requests.get(payment["pay_url"], timeout=10)
        page.raise_for_status()
        amount = re.search(r'class="amount">([^<]+)<', page.text)
        print(f"   pay page shows {amount.group(1) if amount else '?'}")
        action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
        answer = requests.post(self.sandbox_url + action, data={"action": "pay"}, allow_redirects=False, timeout=30)
        result = dict(parse_qsl(urlparse(answer.headers.get("Location", "")).query))
        print(f"   VNPay sent the IPN and redirects the browser back: vnp_ResponseCode={result.get('vnp_ResponseCode')}"
              f", vnp_TransactionNo={result.get('vnp_TransactionNo')}")

        self.step("Payment confirmed; the dossier moves on to processing")
        self.wait("the payment to succeed",
                  lambda: self.rpc.payment.get_payment(payment["txn_ref"])["status"] == "succeeded")
        dossier = self.wait("the dossier to be processing",
                            lambda: (d := self.rpc.dossier.get_dossier(self.code))["status"] == "processing" and d)
        self.show(dossier)
        self.messages()

        self.step("Officer finishes processing")
        self.show(self.officer.dossier.act_on_dossier(self.code, "finish", "can-bo-xu-ly"))
        self.messages()

        self.step("Result handed back to the citizen")
        dossier = self.officer.dossier.act_on_dossier(self.code, "return_result", "can-bo-mot-cua")
        self.show(dossier)
        self.messages()

        print("\n== History")
        for entry in dossier["history"]:
            print(f"   {entry['at'][:19]}  {entry['status']:<18} {entry['actor'] or ''}")
        self.national_portal(len(dossier["history"]))
        print(f"\nOutbox (messages and the national portal's view): {self.sandbox_url}/outbox")

    def national_portal(self, steps):
        """What portal_sync reported to the (sandbox) national portal about the demo dossier."""
        print("\n== The national portal's view (DongBoHoSoMC + CapNhatTienDoHoSoMC from portal_sync)")

        def arrived():
            view = requests.get(f"{self.sandbox_url}/national-portal.json", timeout=5).json()
            progress = view["progress"].get(self.code, [])
            return len(progress) >= steps and self.code in view["dossiers"] and view

        try:
            view = self.wait("portal_sync to report the dossier", arrived, timeout=20)
        except SystemExit:
            print("   (not reported: is the portal_sync process running with NATIONAL_PORTAL_URL set?)")
            return
        record = view["dossiers"][self.code]
        fees = ", ".join(f"{fee['Gia']} đ ({fee['HinhThucThu']})" for fee in record["DanhSachLePhi"]) or "-"
        print(f"   MaHoSo {record['MaHoSo']}, MaTTHC {record['MaTTHC']} ({record['TenTTHC']}), "
              f"TrangThaiHoSo {record['TrangThaiHoSo']}, hẹn trả {record['NgayHenTra']}, trả {record['NgayTra']}")
        print(f"   lệ phí: {fees}")
        for entry in view["progress"][self.code]:
            print(f"   {entry['ThoiDiemXuLy']}  TrangThai {entry['TrangThai']:>2}  {entry['NguoiXuLy']:<16} "
                  f"{entry['NoiDungXuLy']}")

    def _start_payment(self):
        try:
            return self.rpc.payment.start_payment(self.code, "vnpay", RETURN_URL, "127.0.0.1")
        except RemoteError as exc:
            if exc.exc_type == "NoPaymentDue":
                return None
            raise


def main():
    amqp_uri = os.environ.get("AMQP_URI") or "amqp://guest:guest@localhost:5672/"
    sandbox_url = os.environ.get("SANDBOX_URL") or "http://" + (
        os.environ.get("SANDBOX_HTTP_ADDRESS") or "127.0.0.1:8090").replace("0.0.0.0", "127.0.0.1")
    try:
        requests.get(f"{sandbox_url}/healthz", timeout=3).raise_for_status()
    except requests.RequestException:
        sys.exit(f"demo: the sandbox does not answer at {sandbox_url}; start `make run` first")
    from portal_shared.auth import DEV_SECRET_FILE, _read_dev_secret, auth_settings, bearer, make_token

    settings = auth_settings()
    secret = settings.secret or _read_dev_secret()
    if not secret:
        sys.exit(f"demo: AUTH_JWT_SECRET is not set and {DEV_SECRET_FILE} does not exist; start `make run` first")
    citizen = bearer(make_token(secret, "citizen-demo", ["citizen"], id_number=APPLICANT["id_number"],
                                issuer=settings.issuer))
    officer = bearer(make_token(secret, "can-bo-mot-cua", ["officer"], agencies=["STP-HN"], issuer=settings.issuer))
    config = {"AMQP_URI": amqp_uri}
    with ClusterRpcProxy(config, context_data={"authorization": citizen}, timeout=30) as citizen_rpc, \
            ClusterRpcProxy(config, context_data={"authorization": officer}, timeout=30) as officer_rpc:
        Demo(citizen_rpc, officer_rpc, sandbox_url).run()


if __name__ == "__main__":
    main()
