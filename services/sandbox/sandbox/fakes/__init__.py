"""Fakes of the third parties, speaking their wire formats: VNPay, MoMo, eSMS, SpeedSMS, an SMTP sink
and the national portal's integration adapter.

Each HTTP fake is a werkzeug app (``fake.app(request) -> Response``, see
``server.py``): ``python -m sandbox`` mounts them all in its one server, a
test serves one alone on a free port with ``fake.start()``. They are written
from the protocols (docs/protocols.md) and import nothing from the services,
so a signing bug in an adapter is not mirrored here; tests/sandbox checks
their signatures against vectors computed by hand.
"""
from sandbox.fakes.momo import FakeMomo
from sandbox.fakes.national_portal import FakeNationalPortal
from sandbox.fakes.sms import FakeEsms, FakeSpeedSms
from sandbox.fakes.smtp import RecordingSmtpHandler
from sandbox.fakes.vnpay import FakeVnpay

__all__ = ["FakeEsms", "FakeMomo", "FakeNationalPortal", "FakeSpeedSms", "FakeVnpay", "RecordingSmtpHandler"]
