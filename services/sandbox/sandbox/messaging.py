"""eSMS, SpeedSMS and SMTP in the sandbox: the fakes (``sandbox.fakes.sms``, ``sandbox.fakes.smtp``)
check the wire format and answer as the providers do; this module puts every accepted message in the
sandbox's outbox and sends eSMS delivery receipts to the ``CallbackUrl`` the request named.
"""
import email
import email.policy
import logging

from sandbox.callbacks import deliver
from sandbox.fakes.sms import FakeEsms, FakeSpeedSms
from sandbox.fakes.smtp import RecordingSmtpHandler, SinkController


class SandboxEsms(FakeEsms):
    def __init__(self, settings, store):
        super().__init__(api_key=settings.esms_api_key, secret_key=settings.esms_secret_key,
                         brandname=settings.esms_brandname, timeout_seconds=settings.hang_seconds)
        self.settings, self.store = settings, store

    def answer(self, body, behaviour):
        answer = super().answer(body, behaviour)
        if answer.get("CodeResult") == "100":
            self.store.add_message("sms", "esms", body["Phone"], body["Content"], brandname=body["Brandname"],
                                   request_id=body["RequestId"], sms_id=answer["SMSID"])
            if body.get("CallbackUrl"):
                receipt = {"SMSID": answer["SMSID"], "RequestId": body["RequestId"], "SendStatus": "5",
                           "SendSuccess": "1", "SendFailed": "0", "TotalReceiver": "1", "TotalSent": "1",
                           "phonenumber": body["Phone"]}
                deliver(self.store, "esms_receipt", "POST", body["CallbackUrl"], receipt, as_json=True,
                        accepted=lambda response: response.status_code < 500, attempts=3,
                        delay=self.settings.receipt_delay_seconds)
        return answer


class SandboxSpeedSms(FakeSpeedSms):
    def __init__(self, settings, store):
        super().__init__(access_token=settings.speedsms_access_token, sender=settings.speedsms_sender,
                         timeout_seconds=settings.hang_seconds)
        self.settings, self.store = settings, store

    def answer(self, body, behaviour):
        answer = super().answer(body, behaviour)
        if answer.get("status") == "success":
            self.store.add_message("sms", "speedsms", body["to"][0], body["content"], sender=body.get("sender"),
                                   tran_id=answer["data"]["tranId"])
        return answer


class OutboxSmtpHandler(RecordingSmtpHandler):
    """The SMTP sink, decoding each accepted e-mail into the outbox."""

    def __init__(self, store):
        super().__init__()
        self.store = store

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        fault = self.store.faults.take("smtp")
        if fault:
            return f"{fault} Sandbox: injected failure"
        reply = await super().handle_DATA(server, session, envelope)
        raw = envelope.original_content or envelope.content
        for recipient in envelope.rcpt_tos:
            self.store.add_message("email", "smtp", recipient, text=None, mail_from=envelope.mail_from,
                                   raw=raw[:4000].decode("utf-8", "replace"), decode=lambda: decode_mail(raw))
        return reply


def decode_mail(raw):
    """The outbox fields of one accepted e-mail (``Store.add_message``'s ``decode``)."""
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    return {
        "text": text_part.get_content() if text_part is not None else "",
        "subject": str(parsed.get("Subject", "")),
        "html": html_part.get_content() if html_part is not None else None,
        "meta": {"from_header": str(parsed.get("From", "")), "message_id": str(parsed.get("Message-ID", ""))},
    }


def start_smtp(store, host, port):
    """Start the sink in its own thread; returns the controller (``.stop()`` to end it).

    aiosmtpd logs every SMTP command and reply at INFO (logger ``mail.log``): a tenth of the sandbox's CPU
    under ``make bench``. Its warnings and errors still show; the messages themselves are in the outbox."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = SinkController(OutboxSmtpHandler(store), hostname=host, port=port)
    controller.start()
    return controller
