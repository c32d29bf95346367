"""Errors of the budget package.

Tree::

    BudgetError
    ├── InvalidAmount      an ε that is not a finite positive number, or a malformed policy
    ├── NoGrant            the principal holds no (live) grant on the dataset
    ├── BudgetExhausted    the debit would exceed a cap; nothing was charged
    ├── PolicyViolation    the release breaks the provider's policy; nothing was charged
    ├── StaleVersion       the release was computed for a version whose budget period ended
    └── LedgerCorrupt      the hash chain does not verify

Messages carry the numbers (requested, remaining) because budgets are not
confidential data: the researcher may always know what they have left.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal


class BudgetError(Exception):
    """Root of every error raised by `budget`."""


class InvalidAmount(BudgetError):
    """An amount of privacy budget that is not a finite positive number, or a bad policy."""


class NoGrant(BudgetError):
    """The principal has no grant on the dataset (or it was revoked)."""

    def __init__(self, principal: str, dataset: str) -> None:
        super().__init__(f"principal {principal!r} has no grant on dataset {dataset!r}")
        self.principal = principal
        self.dataset = dataset


class BudgetExhausted(BudgetError):
    """A debit larger than what remains. Raised before anything is charged."""

    def __init__(
        self,
        dataset: str,
        requested: Decimal,
        remaining: Decimal,
        measure: str = "epsilon",
        *,
        dataset_wide: bool = False,
        lifetime: bool = False,
        refreshes_at: dt.datetime | None = None,
    ) -> None:
        whose = ""
        if dataset_wide:
            whose = " (its dataset-wide cap, all researchers together)"
        elif lifetime:
            whose = " (your lifetime cap on it, over all refresh periods)"
        elif refreshes_at is not None:
            whose = f" (this period's budget; it starts again at {refreshes_at.isoformat()})"
        super().__init__(
            f"privacy budget exhausted on dataset {dataset!r}{whose}: requested "
            f"{measure}={requested}, remaining {measure}={remaining}; nothing was charged"
        )
        self.dataset_wide = dataset_wide
        self.lifetime = lifetime
        self.refreshes_at = refreshes_at
        self.dataset = dataset
        self.requested = requested
        self.remaining = remaining
        self.measure = measure


class StaleVersion(BudgetError):
    """A release prepared on a dataset version older than its current budget period.

    The provider uploaded a new version that starts a new budget period while
    the release was being prepared: charging the old version's release to the
    new period would spend on the old data outside the budget that covered it.
    Nothing was charged.
    """

    def __init__(self, dataset: str, version: int, period_version: int) -> None:
        super().__init__(
            f"dataset {dataset!r} moved to version {period_version}, which starts a new "
            f"budget period, while this release was prepared on version {version}; nothing "
            "was charged: submit the job again to run it on the new version"
        )
        self.dataset = dataset
        self.version = version
        self.period_version = period_version


class LedgerCorrupt(BudgetError):
    """The hash chain is broken at some entry."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"ledger entry {seq} does not verify: {reason}")
        self.seq = seq
        self.reason = reason


class PolicyViolation(BudgetError):
    """A release the dataset's policy does not allow (e.g. above its per-release maximum)."""
