"""Pytest plugin: real RabbitMQ and PostgreSQL for the suites.

Register with ``pytest_plugins = ["portal_shared.testing.plugin"]`` in the
root conftest (which must call ``eventlet.monkey_patch()`` first).
"""
