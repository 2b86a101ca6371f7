"""Root conftest: green threads first, then the project's fixtures."""
import eventlet

eventlet.monkey_patch()

pytest_plugins = ["portal_shared.testing.plugin"]
