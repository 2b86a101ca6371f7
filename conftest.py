"""Root conftest: green threads first, then the project's fixtures."""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()

pytest_plugins = ["portal_shared.testing.plugin"]
