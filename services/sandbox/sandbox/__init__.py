"""A local stand-in for the providers the backend talks to, speaking their wire formats.

One process (``python -m sandbox``) serves fake VNPay and MoMo (pay pages,
signed IPNs, queries, refunds), fake eSMS and SpeedSMS, an SMTP sink and the
national portal's adapter (``sandbox.fakes``, which the tests use too); every
SMS and e-mail it receives is shown on ``/outbox`` and ``/outbox.json``.
Not for production: it accepts any well-signed request from anyone.
"""
