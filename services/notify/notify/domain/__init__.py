"""Pure domain rules of the notify service (no nameko, no SQLAlchemy)."""
