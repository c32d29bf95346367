"""Alembic's entry point; the work is shared by every package (`budget._migrate`)."""

from alembic import context

from budget._migrate import run_env

run_env(context)
