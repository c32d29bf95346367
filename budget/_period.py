"""Refresh windows: when a researcher's per-period budget starts again.

Periods are calendar periods in UTC, the same for every researcher of a dataset,
so a DPO can say when budgets reset without looking at each grant: ``daily``
starts at 00:00 UTC, ``weekly`` on Monday at 00:00 UTC, ``monthly`` on the
first of the month at 00:00 UTC. ``none`` never refreshes.

>>> import datetime as dt
>>> now = dt.datetime(2026, 12, 3, 21, 40, tzinfo=dt.UTC)  # a Thursday
>>> period_start(now, "weekly").isoformat()
'2026-11-30T00:00:00+00:00'
>>> next_refresh(now, "monthly").isoformat()
'2027-01-01T00:00:00+00:00'
"""

from __future__ import annotations

import datetime as dt

REFRESH_WINDOWS = ("none", "daily", "weekly", "monthly")


def period_start(now: dt.datetime, refresh: str) -> dt.datetime:
    """The start of the period containing ``now`` (the epoch for ``none``)."""
    now = now.astimezone(dt.UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if refresh == "daily":
        return midnight
    if refresh == "weekly":
        return midnight - dt.timedelta(days=now.weekday())
    if refresh == "monthly":
        return midnight.replace(day=1)
    if refresh == "none":
        return dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    raise ValueError(f"refresh must be one of {', '.join(REFRESH_WINDOWS)}, got {refresh!r}")


def next_refresh(now: dt.datetime, refresh: str) -> dt.datetime | None:
    """When the period containing ``now`` ends (None: never)."""
    if refresh == "none":
        return None
    start = period_start(now, refresh)
    if refresh == "daily":
        return start + dt.timedelta(days=1)
    if refresh == "weekly":
        return start + dt.timedelta(days=7)
    return (start + dt.timedelta(days=32)).replace(day=1)
