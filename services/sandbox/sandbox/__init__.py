"""A local stand-in for the providers the backend talks to, speaking their wire formats.

One process (``python -m sandbox``) serves fake VNPay and MoMo (pay pages,
signed IPNs, queries, refunds), fake eSMS and SpeedSMS, and an SMTP sink; every
SMS and e-mail it receives is shown on ``/outbox`` and ``/outbox.json``.
Not for production: it accepts any well-signed request from anyone.
"""
