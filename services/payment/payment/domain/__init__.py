"""Payment rules in plain Python: no Nameko, no SQLAlchemy."""
