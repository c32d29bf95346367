"""Alembic migrations of the ``enclave`` package's tables (see `budget._migrate`)."""
