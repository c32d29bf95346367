"""Alembic migrations of the ``jobs`` package's tables (see `budget._migrate`)."""
