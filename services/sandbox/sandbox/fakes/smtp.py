"""An SMTP sink: an aiosmtpd handler that keeps every message and can refuse recipients."""
import re
import time
from collections import deque

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

# The path mail clients send in MAIL FROM and RCPT TO: ``<local@domain>``, then the parameters.
_PLAIN_PATH = re.compile(r"\s*<([^<>@\s\"\\()\[\],;:]+@[A-Za-z0-9.-]+)>\s*(.*)\Z", re.DOTALL)


class SinkSmtp(SMTP):
    """aiosmtpd's server, reading a plain ``<local@domain>`` path at once. aiosmtpd parses every path
    with the e-mail package's header parser (and defines a class on each call): under ``make bench``
    that was a tenth of the sandbox's CPU, nearly half of its SMTP conversations'. Any other spelling (the null path
    ``<>``, a quoted local part, a source route, a bare address) still goes through that parser."""

    def _getaddr(self, arg):
        match = _PLAIN_PATH.match(arg) if arg else None
        if match is None:
            return super()._getaddr(arg)
        address, rest = match.groups()
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest


class SinkController(Controller):
    """aiosmtpd's ``Controller`` serving ``SinkSmtp``."""

    def factory(self):
        return SinkSmtp(self.handler, **self.SMTP_kwargs)


class RecordingSmtpHandler:
    """aiosmtpd handler keeping every message (``envelope``s) in ``messages``; can refuse recipients."""

    def __init__(self):
        self.messages = []
        self.refuse = {}   # address → SMTP reply, e.g. "550 5.1.1 no such user" or "451 4.3.0 try later"
        self.rcpts = []    # every RCPT TO: (address, time.monotonic(), accepted)
        self.peers = set()  # (host, port) of every client connection that sent a recipient
        self.received_at = []  # time.time() of every accepted message, in order
        self._refuse_next = {}  # address → deque of replies, one per next RCPT

    def refuse_next(self, address, reply, times=1):
        """Refuse the next ``times`` deliveries to ``address`` with ``reply``, then accept again."""
        self._refuse_next.setdefault(address, deque()).extend([reply] * times)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd API)
        scripted = self._refuse_next.get(address)
        reply = scripted.popleft() if scripted else self.refuse.get(address)
        self.rcpts.append((address, time.monotonic(), reply is None))
        self.peers.add(tuple(session.peer) if session.peer else None)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.messages.append(envelope)
        self.received_at.append(time.time())
        return "250 Message accepted for delivery"
