"""Alembic migrations of the ``budget`` package's tables (see `budget._migrate`)."""
