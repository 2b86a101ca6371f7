"""One dossier at a time through the real processes, checking each effect happened exactly once.

Every test runs twice: against one process of each service and against two
(``scaled``); the assertions are the same, which is the point.
"""
import re
import time
import uuid
from urllib.parse import parse_qsl, urlparse

import eventlet
import requests

from tests.e2e.conftest import requires_notify, requires_payment

RETURN_URL = "http://127.0.0.1:9/cong-dvc/thanh-toan/ket-qua"
NOTIFIABLE = {"accepted", "not_accepted", "payment_requested", "supplement_requested", "processed", "returned",
              "stopped", "withdrawn"}
SETTLE_SECONDS = 2.5  # after the expected effects arrived, how long extra effects get to show up


def wait_for(stack, predicate, timeout=20.0, message="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        stack.check_alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        eventlet.sleep(0.2)


def applicant():
    unique = uuid.uuid4().int
    return {
        "full_name": "Nguyễn Văn An",
        "id_number": f"{unique % 10**12:012d}",
        "phone": f"091{unique % 10**7:07d}",  # 091: always a valid mobile prefix
        "email": f"an.{unique % 10**6}@example.vn",
        "address": "Số 1 Tràng Tiền, Hoàn Kiếm, Hà Nội",
    }


def act(rpc, code, action, note=None):
    return rpc.dossier.act_on_dossier(code, action, "can-bo-e2e", note)


def wait_status(stack, rpc, code, status, timeout=20.0):
    return wait_for(stack, lambda: (d := rpc.dossier.get_dossier(code))["status"] == status and d,
                    timeout, f"dossier {code} to reach {status}")


def history(rpc, code):
    return [entry["status"] for entry in rpc.dossier.get_dossier(code)["history"]]


def click(stack, pay_url, action="pay"):
    """What the citizen's browser does: open the pay page, press a button, get redirected back."""
    page = requests.get(pay_url, timeout=10)
    assert page.status_code == 200, page.text
    assert "Thanh toán" in page.text and "Hủy" in page.text
    form_action = re.search(r'<form method="post" action="([^"]+)"', page.text).group(1)
    answer = requests.post(stack.sandbox_url + form_action, data={"action": action}, allow_redirects=False,
                           timeout=30)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(RETURN_URL)
    return page, dict(parse_qsl(urlparse(location).query))


def wait_payment(stack, rpc, txn_ref, status, timeout=20.0):
    return wait_for(stack, lambda: (p := rpc.payment.get_payment(txn_ref))["status"] == status and p,
                    timeout, f"payment {txn_ref} to become {status}")


def assert_notified_once(stack, rpc, code, payment_events=0):
    """One SMS and one e-mail per notifiable transition and payment event: no more, no fewer."""
    statuses = history(rpc, code)
    expected = sum(1 for status in statuses if status in NOTIFIABLE) + payment_events

    def arrived():
        messages = stack.outbox(contains=code)
        return (len([m for m in messages if m["channel"] == "sms"]) >= expected
                and len([m for m in messages if m["channel"] == "email"]) >= expected)

    wait_for(stack, arrived, 30, f"{expected} SMS and {expected} e-mails about {code}")
    eventlet.sleep(SETTLE_SECONDS)
    messages = stack.outbox(contains=code)
    sms = [m for m in messages if m["channel"] == "sms"]
    emails = [m for m in messages if m["channel"] == "email"]
    assert len(sms) == expected, [m["text"] for m in sms]
    assert len(emails) == expected, [m["subject"] for m in emails]
    assert len({m["text"] for m in sms}) == expected, "the same SMS text went out twice"
    for message in sms:
        assert message["text"].isascii(), message["text"]
    for message in emails:
        # a From header the receiving server can read (a literal "${MAIL_FROM:...}" breaks the header block)
        assert "${" not in message["meta"]["raw"].split("\r\n\r\n", 1)[0], message["meta"]["raw"][:300]
        assert message["meta"]["from_header"].endswith(f"<{message['meta']['mail_from']}>"), message["meta"]
        assert code in (message["subject"] or ""), {k: message[k] for k in ("subject", "text", "meta")}
    return sms, emails


def assert_one_event_per_transition(stack, rpc, code):
    """``dossier_status_changed`` events, in order, one per history entry."""
    statuses = history(rpc, code)
    wait_for(stack, lambda: len(stack.observer.of("dossier_status_changed", dossier_code=code)) >= len(statuses),
             10, f"{len(statuses)} dossier_status_changed events")
    eventlet.sleep(1)
    changes = stack.observer.of("dossier_status_changed", dossier_code=code)
    assert [c["new_status"] for c in changes] == statuses


def submit(rpc, procedure_code):
    dossier = rpc.dossier.submit_dossier(procedure_code, applicant(), {"purpose": "e2e"})
    assert dossier["status"] == "submitted"
    return dossier["code"]


# --- flows on the dossier service alone (+ notifications when notify runs) ---


def test_free_dossier_goes_from_submission_to_returned(stack, rpc):
    code = submit(rpc, "KHAISINH-01")
    assert act(rpc, code, "accept")["status"] == "accepted"
    assert act(rpc, code, "start")["status"] == "processing"
    assert act(rpc, code, "finish")["status"] == "processed"
    returned = act(rpc, code, "return_result")
    assert returned["status"] == "returned" and returned["status_code"] == 10
    assert returned["fee_amount"] == 0
    assert history(rpc, code) == ["submitted", "accepted", "processing", "processed", "returned"]
    assert_one_event_per_transition(stack, rpc, code)
    if stack.has("notify"):
        assert_notified_once(stack, rpc, code)


def test_supplement_loop_pauses_and_resumes_processing(stack, rpc):
    code = submit(rpc, "KHAISINH-01")
    act(rpc, code, "accept")
    act(rpc, code, "start")
    for round_ in range(2):
        assert act(rpc, code, "request_supplement", f"thiếu giấy tờ {round_}")["status"] == "supplement_requested"
        assert act(rpc, code, "supplement")["status"] == "processing"
    act(rpc, code, "finish")
    act(rpc, code, "return_result")
    assert history(rpc, code) == ["submitted", "accepted", "processing", "supplement_requested", "processing",
                                  "supplement_requested", "processing", "processed", "returned"]
    assert_one_event_per_transition(stack, rpc, code)
    if stack.has("notify"):
        sms, _ = assert_notified_once(stack, rpc, code)
        assert len([m for m in sms if "bo sung" in m["text"].lower()]) >= 2


# --- flows through payment (and notify) ---


def start_paid_dossier(stack, rpc):
    code = submit(rpc, "LLTP-01")
    accepted = act(rpc, code, "accept")
    assert accepted["status"] == "payment_requested" and accepted["fee_amount"] == 200000
    return code


def start_payment(stack, rpc, code, gateway):
    # payment learns the amount from the dossier's event: it may take a moment to arrive
    def attempt():
        try:
            return rpc.payment.start_payment(code, gateway, RETURN_URL, "203.0.113.7")
        except Exception as exc:
            if type(exc).__name__ == "RemoteError" and "NoPaymentDue" in str(exc):
                return None
            raise
    payment = wait_for(stack, attempt, 15, f"a payment due for {code}")
    assert payment["status"] == "pending" and payment["amount"] == 200000 and payment["gateway"] == gateway
    assert payment["pay_url"].startswith(stack.sandbox_url)
    return payment


def assert_paid_once(stack, rpc, code, txn_ref):
    wait_payment(stack, rpc, txn_ref, "succeeded")
    wait_status(stack, rpc, code, "processing")
    wait_for(stack, lambda: stack.observer.of("payment_succeeded", dossier_code=code), 10, "payment_succeeded")
    eventlet.sleep(SETTLE_SECONDS)  # IPN, its retries and the pending-check timers of every process had their go
    succeeded = stack.observer.of("payment_succeeded", dossier_code=code)
    assert len(succeeded) == 1, succeeded
    assert succeeded[0]["txn_ref"] == txn_ref and succeeded[0]["amount"] == 200000
    dossier = rpc.dossier.get_dossier(code)
    assert dossier["fee_paid"] is True
    assert [s for s in history(rpc, code)].count("processing") == 1


@requires_payment
def test_paid_dossier_through_vnpay(stack, rpc):
    code = start_paid_dossier(stack, rpc)
    payment = start_payment(stack, rpc, code, "vnpay")
    page, result = click(stack, payment["pay_url"])
    assert "200.000" in page.text
    assert result["vnp_ResponseCode"] == "00" and result["vnp_TxnRef"] == payment["txn_ref"]
    assert result["vnp_Amount"] == "20000000"
    assert_paid_once(stack, rpc, code, payment["txn_ref"])
    assert rpc.payment.get_payment(payment["txn_ref"])["gateway_txn_no"] == result["vnp_TransactionNo"]
    act(rpc, code, "finish")
    act(rpc, code, "return_result")
    assert history(rpc, code) == ["submitted", "accepted", "payment_requested", "processing", "processed",
                                  "returned"]
    assert_one_event_per_transition(stack, rpc, code)
    if stack.has("notify"):
        assert_notified_once(stack, rpc, code, payment_events=1)


@requires_payment
def test_paid_dossier_through_momo(stack, rpc):
    code = start_paid_dossier(stack, rpc)
    payment = start_payment(stack, rpc, code, "momo")
    page, result = click(stack, payment["pay_url"])
    assert "200.000" in page.text
    assert result["resultCode"] == "0" and result["orderId"] == payment["txn_ref"]
    assert_paid_once(stack, rpc, code, payment["txn_ref"])
    assert rpc.payment.get_payment(payment["txn_ref"])["gateway_txn_no"] == result["transId"]
    act(rpc, code, "finish")
    act(rpc, code, "return_result")
    if stack.has("notify"):
        assert_notified_once(stack, rpc, code, payment_events=1)


@requires_payment
def test_failed_then_successful_payment(stack, rpc):
    code = start_paid_dossier(stack, rpc)
    first = start_payment(stack, rpc, code, "vnpay")
    _, result = click(stack, first["pay_url"], action="cancel")
    assert result["vnp_ResponseCode"] == "24"
    wait_payment(stack, rpc, first["txn_ref"], "failed")
    wait_for(stack, lambda: stack.observer.of("payment_failed", txn_ref=first["txn_ref"]), 10, "payment_failed")
    assert rpc.dossier.get_dossier(code)["status"] == "payment_requested"

    second = start_payment(stack, rpc, code, "vnpay")
    assert second["txn_ref"] != first["txn_ref"]
    click(stack, second["pay_url"])
    assert_paid_once(stack, rpc, code, second["txn_ref"])
    assert len(stack.observer.of("payment_failed", txn_ref=first["txn_ref"])) == 1
    assert rpc.payment.get_payment(first["txn_ref"])["status"] == "failed"
    if stack.has("notify"):
        assert_notified_once(stack, rpc, code, payment_events=1)


@requires_payment
def test_withdrawn_after_payment_is_refunded(stack, rpc):
    code = start_paid_dossier(stack, rpc)
    payment = start_payment(stack, rpc, code, "vnpay")
    click(stack, payment["pay_url"])
    assert_paid_once(stack, rpc, code, payment["txn_ref"])
    act(rpc, code, "request_supplement", "thiếu ảnh chân dung")
    assert act(rpc, code, "withdraw")["status"] == "withdrawn"

    wait_payment(stack, rpc, payment["txn_ref"], "refunded", timeout=30)
    wait_for(stack, lambda: stack.observer.of("payment_refunded", dossier_code=code), 10, "payment_refunded")
    eventlet.sleep(SETTLE_SECONDS)
    assert len(stack.observer.of("payment_refunded", dossier_code=code)) == 1
    refunds = [r for r in stack.gateway_state()["refunds"] if r["txn_ref"] == payment["txn_ref"]]
    assert len(refunds) == 1 and refunds[0]["amount"] == 200000
    if stack.has("notify"):
        assert_notified_once(stack, rpc, code, payment_events=2)


# --- the sandbox's provider faults, through the real processes ---


@requires_notify
def test_sms_fails_over_to_speedsms_and_esms_receipts_mark_delivery(stack, rpc):
    code = submit(rpc, "KHAISINH-01")
    # eSMS answers HTTP 500 to the next two requests: notify's two tries, then SpeedSMS
    requests.post(f"{stack.sandbox_url}/_sandbox/faults", json={"provider": "esms", "code": "http_500", "times": 2},
                  timeout=5).raise_for_status()
    act(rpc, code, "accept")
    sms, _ = assert_notified_once(stack, rpc, code)
    assert [m["provider"] for m in sms] == ["speedsms"]
    notifications = rpc.notify.get_notifications(code)
    assert [(n["channel"], n["provider"], n["status"]) for n in notifications if n["channel"] == "sms"] == [
        ("sms", "speedsms", "sent")]

    # the next change goes through eSMS again, whose delivery receipt reaches notify's callback
    act(rpc, code, "start")
    act(rpc, code, "finish")
    sms, _ = assert_notified_once(stack, rpc, code)
    # two temporary errors are below notify's cool-down threshold: eSMS stays first in line
    assert sorted(m["provider"] for m in sms) == ["esms", "speedsms"]
    wait_for(stack, lambda: [n["status"] for n in rpc.notify.get_notifications(code)
                             if n["channel"] == "sms" and n["provider"] == "esms"] == ["delivered"],
             10, "the eSMS delivery receipt applied")
