"""A provider's privacy policy for one dataset, versioned.

What this version covers (the rest of the policy, refresh windows and column
lists, comes later):

* ``per_release_max_epsilon`` / ``per_release_max_rho``: the most one release
  may spend, whoever asks;
* ``dataset_cap_epsilon`` / ``dataset_cap_rho`` / ``dataset_cap_delta``: the
  most all researchers together may spend, which bounds what colluding accounts
  can learn. It is checked in the same atomic debit as each researcher's own
  grant (`Ledger.debit`);
* ``min_count``: released cells whose noisy count is below it are suppressed,
  as statistics offices do (post-processing of the noisy values: no cost).

A policy is written as TOML::

    per_release_max_epsilon = 0.5
    dataset_cap_epsilon = 20
    dataset_cap_delta = 1e-5

Every change is a new version, kept with who set it and when; the versions are
the policy's audit trail.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

from ._amount import parse_delta, parse_epsilon, parse_rho
from ._errors import InvalidAmount, PolicyViolation

_EPSILON_KEYS = ("per_release_max_epsilon", "dataset_cap_epsilon")
_RHO_KEYS = ("per_release_max_rho", "dataset_cap_rho")


@dataclass(frozen=True, slots=True)
class Policy:
    """Limits set by a dataset's provider; ``None``: no limit of that kind."""

    per_release_max_epsilon: Decimal | None = None
    per_release_max_rho: Decimal | None = None
    dataset_cap_epsilon: Decimal | None = None
    dataset_cap_rho: Decimal | None = None
    dataset_cap_delta: Decimal | None = None
    min_count: int | None = None

    @classmethod
    def from_toml(cls, text: str) -> Policy:
        """Parse and check a policy.

        Raises:
            InvalidAmount: not TOML, an unknown key, or an amount out of range.
        """
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise InvalidAmount(f"policy is not valid TOML: {err}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Policy:
        """Build from the TOML structure (also the stored JSON form)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidAmount(
                f"unknown policy key(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "min_count":
                if isinstance(value, str) and value.isdigit():
                    value = int(value)  # the stored form
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise InvalidAmount(f"min_count must be a positive integer, got {value!r}")
                values[key] = value
            elif key in _EPSILON_KEYS:
                values[key] = parse_epsilon(value, key)
            elif key in _RHO_KEYS:
                values[key] = parse_rho(value)
            else:
                values[key] = parse_delta(value)
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        """Exact decimal strings of the limits that are set."""
        return {k: str(v) for k, v in asdict(self).items() if v is not None}

    def to_toml(self) -> str:
        """The policy as its provider would write it."""
        return "".join(f"{k} = {v}\n" for k, v in self.to_dict().items())

    def check_release(self, dataset: str, epsilon: Decimal, rho: Decimal) -> None:
        """Refuse a release above the per-release maximum.

        Raises:
            PolicyViolation: naming the limit and the amount asked.
        """
        for measure, asked, limit in (
            ("epsilon", epsilon, self.per_release_max_epsilon),
            ("rho", rho, self.per_release_max_rho),
        ):
            if limit is not None and asked > limit:
                raise PolicyViolation(
                    f"dataset {dataset!r} allows at most {measure}={limit} per release "
                    f"(its provider's policy); you asked for {measure}={asked}. Nothing was "
                    "charged"
                )


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of a dataset's policy, as recorded."""

    dataset: str
    version: int
    policy: Policy
    set_by: str
    set_at: Any
