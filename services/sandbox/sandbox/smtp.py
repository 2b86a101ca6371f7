"""SMTP sink (aiosmtpd): every accepted e-mail lands in the outbox, decoded."""
import email
import email.policy

from aiosmtpd.controller import Controller


class OutboxHandler:
    def __init__(self, store):
        self.store = store

    async def handle_DATA(self, server, session, envelope):
        fault = self.store.faults.take("smtp")
        if fault:
            return f"{fault} Sandbox: injected failure"
        raw = envelope.original_content or envelope.content
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        for recipient in envelope.rcpt_tos:
            self.store.add_message(
                "email", "smtp", recipient,
                text=text_part.get_content() if text_part is not None else "",
                subject=str(parsed.get("Subject", "")),
                html=html_part.get_content() if html_part is not None else None,
                mail_from=envelope.mail_from,
                from_header=str(parsed.get("From", "")),
                message_id=str(parsed.get("Message-ID", "")),
                raw=raw[:4000].decode("utf-8", "replace"),
            )
        return "250 Message accepted for delivery"


def start_smtp(store, host, port):
    """Start the sink in its own thread; returns the controller (``.stop()`` to end it)."""
    controller = Controller(OutboxHandler(store), hostname=host, port=port)
    controller.start()
    return controller
