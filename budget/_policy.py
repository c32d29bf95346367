"""A provider's privacy policy for one dataset, versioned.

What a policy covers:

* ``researcher_cap_epsilon`` / ``researcher_cap_rho`` / ``researcher_cap_delta``:
  the most any one researcher may hold (per period, with a refresh). A grant
  above it is refused, a grant that names no cap gets it, and lowering it
  binds the grants already given: each debit checks it;
* ``per_release_max_epsilon`` / ``per_release_max_rho``: the most one release
  may spend, whoever asks;
* ``dataset_cap_epsilon`` / ``dataset_cap_rho`` / ``dataset_cap_delta``: the
  most all researchers together may spend, which bounds what colluding accounts
  can learn. It is checked in the same atomic debit as each researcher's own
  grant (`Ledger.debit`);
* ``min_count``: released cells whose noisy count is below it are suppressed,
  as statistics offices do (post-processing of the noisy values: no cost);
* ``refresh`` (``none``, ``daily``, ``weekly``, ``monthly``): each researcher's
  grant becomes a budget per period, starting again at each calendar period in
  UTC (`budget._period`);
* ``lifetime_cap_epsilon`` / ``lifetime_cap_rho`` / ``lifetime_cap_delta``: the
  most each researcher may spend over all periods. A refresh needs one: budgets
  that start again without a lifetime bound leak without bound. Only the
  measures with a lifetime cap refresh; the others stay a single budget;
* ``allowed_columns``: the only columns researchers see and may use; the others
  are invisible to them (absent from the catalog, unknown to plans, never read);
* ``[bounds]``: narrower public bounds for numeric columns, e.g. to keep the
  noise of sums over a column with a long tail small. Values are clamped to them
  when read, a row-by-row map that keeps neighbouring datasets neighbours.

Column names and bounds are checked against the dataset's schema where the
policy is set (`jobs.DatasetHandle.restricted`); this module knows no schemas.

A policy is written as TOML::

    researcher_cap_epsilon = 2
    per_release_max_epsilon = 0.5
    dataset_cap_epsilon = 20
    dataset_cap_delta = 1e-5
    refresh = "monthly"
    lifetime_cap_epsilon = 12
    allowed_columns = ["age", "nights", "region"]

    [bounds]
    nights = [0, 30]

Every change is a new version, kept with who set it and when; the versions are
the policy's audit trail.
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from typing import Any

from ._amount import parse_delta, parse_epsilon, parse_rho
from ._errors import InvalidAmount, PolicyViolation
from ._period import REFRESH_WINDOWS

_EPSILON_KEYS = (
    "researcher_cap_epsilon",
    "per_release_max_epsilon",
    "dataset_cap_epsilon",
    "lifetime_cap_epsilon",
)
_RHO_KEYS = ("researcher_cap_rho", "per_release_max_rho", "dataset_cap_rho", "lifetime_cap_rho")


@dataclass(frozen=True, slots=True)
class Policy:
    """Limits set by a dataset's provider; ``None``: no limit of that kind."""

    researcher_cap_epsilon: Decimal | None = None
    researcher_cap_rho: Decimal | None = None
    researcher_cap_delta: Decimal | None = None
    per_release_max_epsilon: Decimal | None = None
    per_release_max_rho: Decimal | None = None
    dataset_cap_epsilon: Decimal | None = None
    dataset_cap_rho: Decimal | None = None
    dataset_cap_delta: Decimal | None = None
    min_count: int | None = None
    refresh: str = "none"
    lifetime_cap_epsilon: Decimal | None = None
    lifetime_cap_rho: Decimal | None = None
    lifetime_cap_delta: Decimal | None = None
    allowed_columns: tuple[str, ...] | None = None
    #: (column, lower, upper) per narrowed column, in column-name order.
    bounds: tuple[tuple[str, int | float, int | float], ...] | None = None

    def __post_init__(self) -> None:
        if self.refresh not in REFRESH_WINDOWS:
            raise InvalidAmount(
                f"refresh must be one of {', '.join(REFRESH_WINDOWS)}, got {self.refresh!r}"
            )
        if self.refresh != "none" and not self.refreshing:
            raise InvalidAmount(
                f"refresh = {self.refresh!r} needs a lifetime cap (lifetime_cap_epsilon, "
                "lifetime_cap_rho or lifetime_cap_delta): budgets that start again without "
                "a lifetime bound let a researcher learn without bound"
            )

    @property
    def refreshing(self) -> tuple[str, ...]:
        """The measures whose per-researcher budget starts again each period."""
        if self.refresh == "none":
            return ()
        return tuple(
            measure
            for measure, cap in (
                ("epsilon", self.lifetime_cap_epsilon),
                ("rho", self.lifetime_cap_rho),
                ("delta", self.lifetime_cap_delta),
            )
            if cap is not None
        )

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
            elif key == "refresh":
                values[key] = str(value)
            elif key == "allowed_columns":
                values[key] = _parse_columns(value)
            elif key == "bounds":
                values[key] = _parse_bounds(value)
            elif key in _EPSILON_KEYS:
                values[key] = parse_epsilon(value, key)
            elif key in _RHO_KEYS:
                values[key] = parse_rho(value)
            else:
                values[key] = parse_delta(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """What is set: amounts as exact decimal strings, columns as lists (JSON-ready)."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            if v is None or (k == "refresh" and v == "none"):
                continue
            if k == "allowed_columns":
                out[k] = list(v)
            elif k == "bounds":
                out[k] = {name: [lo, hi] for name, lo, hi in v}
            else:
                out[k] = str(v)
        return out

    def to_toml(self) -> str:
        """The policy as its provider would write it."""
        lines, tables = [], []
        for k, v in self.to_dict().items():
            if k == "refresh":
                lines.append(f'{k} = "{v}"\n')
            elif k == "allowed_columns":
                lines.append(f"{k} = [{', '.join(json.dumps(c) for c in v)}]\n")
            elif k == "bounds":
                tables.append("\n[bounds]\n")
                tables.extend(f"{name} = [{lo!r}, {hi!r}]\n" for name, (lo, hi) in v.items())
            else:
                lines.append(f"{k} = {v}\n")
        return "".join(lines + tables)

    def bounds_of(self, column: str) -> tuple[int | float, int | float] | None:
        """The narrower bounds set for ``column``, if any."""
        for name, lo, hi in self.bounds or ():
            if name == column:
                return (lo, hi)
        return None

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


def _parse_columns(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(c, str) and c for c in value)
        or len(set(value)) != len(value)
    ):
        raise InvalidAmount(
            f"allowed_columns must be a non-empty list of distinct column names, got {value!r}"
        )
    return tuple(value)


def _parse_bounds(value: Any) -> tuple[tuple[str, int | float, int | float], ...]:
    if not isinstance(value, dict) or not value:
        raise InvalidAmount(
            "bounds must be a table of column = [lower, upper], e.g. [bounds] nights = [0, 30]"
        )
    out = []
    for name, pair in sorted(value.items()):
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in pair)
            or not all(math.isfinite(b) for b in pair)
            or pair[0] >= pair[1]
        ):
            raise InvalidAmount(
                f"bounds.{name} must be two finite numbers [lower, upper] with lower < upper, "
                f"got {pair!r}"
            )
        out.append((name, pair[0], pair[1]))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    """One version of a dataset's policy, as recorded."""

    dataset: str
    version: int
    policy: Policy
    set_by: str
    set_at: Any
