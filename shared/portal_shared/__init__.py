"""Common library of the public-service portal backend.

Everything every service needs once lives here: configuration helpers,
structured logging with masking, the SQLAlchemy dependency provider, the
transactional outbox and the consumer inbox, reliable event handlers with a
dead-letter queue, and the health/metrics HTTP endpoints.
"""
