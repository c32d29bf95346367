"""Neighbouring datasets: one person more or less changes neither the price nor,
beyond sampling error, the distribution of a release by more than e^epsilon.

The added person has more rows than the privacy unit allows: registration
truncates them (`jobs.truncate_contributions`), as it does for real uploads. On
zCDP datasets the bound checked is the (ε, δ) that ρ converts to.

The distinguishing test uses the tail event E = {released count >= n + k}
(n: rows of D, k: rows of the added person), the event that best separates D
from D' for an additive-noise count. DP requires P(E | D') <= e^eps P(E | D).
Each probability is estimated from N = 4000 releases; the test allows the
empirical log-ratio to exceed eps by 6 combined standard errors of the two log
estimates (delta method), a false-failure probability of ~1e-9 under the
normal approximation.
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from jobs import DatasetHandle, Schema, truncate_contributions
from jobs._compiler import price, zcdp_epsilon
from jobs._plan import Agg, BinOp, Col, Lit, Query

N = 4000
EPSILON = Decimal(1)


def schema(unit: object, definition: str = "pure_dp") -> Schema:
    return Schema.from_dict(
        {
            "max_rows": 10_000,
            "privacy_definition": definition,
            "privacy_unit": unit,
            "columns": {
                "person": {"type": "string"},
                "region": {"type": "category", "categories": ["a", "b"]},
                "nights": {"type": "int", "bounds": [1, 14]},
            },
        }
    )


def frames(k: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """D, and D' = D plus one person who has k rows (all in region "a")."""
    base = pl.DataFrame(
        {
            "person": [f"p{i}" for i in range(300)],
            "region": ["a" if i % 3 else "b" for i in range(300)],
            "nights": [1 + i % 14 for i in range(300)],
        }
    )
    extra = pl.DataFrame({"person": ["new"] * k, "region": ["a"] * k, "nights": [14] * k})
    return base, pl.concat([base, extra])


QUERIES = {
    "count": Query("t", (), (), (Agg("count", None, None, "n"),), "scalar"),
    "filtered count": Query(
        "t", (BinOp("eq", Col("region"), Lit("a")),), (), (Agg("count", None, None, "n"),), "scalar"
    ),
}


RHO = Decimal("0.5")
EQUIVALENT_DELTA = 1e-6


PERSON = {"column": "person", "max_rows_per_person": 2}
CASES = [
    (name, unit, definition)
    for name in sorted(QUERIES)
    for unit, definition in (("row", "pure_dp"), (PERSON, "pure_dp"), (PERSON, "zcdp"))
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "unit", "definition"), CASES)
def test_one_more_person_is_hidden_within_epsilon(
    name: str, unit: object, definition: str, tmp_path: Path
) -> None:
    sch = schema(unit, definition)
    k = sch.privacy_unit.max_rows_per_person
    # A person with more rows than the unit allows is truncated at registration.
    d, d_prime = frames(1 if unit == "row" else k + 2)
    d_prime = truncate_contributions(d_prime, sch)[0]
    assert d_prime.height == d.height + k
    query = QUERIES[name]
    amount = RHO if sch.zcdp else EPSILON
    priced = []
    for label, frame in (("d", d), ("d_prime", d_prime)):
        path = tmp_path / f"{label}.parquet"
        frame.write_parquet(path)
        priced.append(price(query, DatasetHandle("t", sch, path), amount))
    # The price is a function of the plan and the public schema only.
    assert priced[0].global_scale == priced[1].global_scale
    assert (priced[0].epsilon, priced[0].rho) == (priced[1].epsilon, priced[1].rho)
    epsilon, delta = float(EPSILON), 0.0
    if sch.zcdp:
        epsilon, delta = zcdp_epsilon(RHO, EQUIVALENT_DELTA), EQUIVALENT_DELTA

    def truth(frame: pl.DataFrame) -> int:
        return frame.height if name == "count" else frame.filter(pl.col("region") == "a").height

    threshold = truth(d_prime)
    hits = []
    for p, frame in zip(priced, (d, d_prime), strict=True):
        lazy = frame.lazy()
        hits.append(sum(p.measurement(lazy).collect().item() >= threshold for _ in range(N)))
    p_d, p_dprime = hits[0] / N, hits[1] / N
    assert p_d > 0.05  # enough events for the estimate to mean something
    # (ε, δ)-DP: P(E | D') <= e^ε P(E | D) + δ.
    log_ratio = math.log(p_dprime - delta) - math.log(p_d)
    se = math.sqrt((1 - p_d) / (N * p_d) + (1 - p_dprime) / (N * p_dprime))
    assert log_ratio <= epsilon + 6 * se
    # And the test has power: the two datasets are distinguishable at all.
    assert log_ratio > 0.3
