"""Contributions of a person: truncated at registration, accounted by OpenDP per grouping.

A dataset whose privacy unit is a person identifier stores at most
``max_rows_per_person`` rows per person and, per column with
``max_groups_per_person = G``, at most G of its values per person (see
`jobs.truncate_contributions`). The compiler hands those bounds to OpenDP as
the input distance, so a declared group limit shrinks what depends on the number
of groups a person touches: the threshold (and δ) for keys that are not public.

Statistical claim (one slow test): a key held by a single person with three
rows in one group appears in at most a δ-fraction of releases. With δ = 1e-3
and 2,000 releases, 13 or more appearances have probability < 1e-7 (Poisson
tail, λ = 2): the test's false-failure probability.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from jobs import DatasetHandle, Schema, truncate_contributions
from jobs._compiler import evaluate, placeholder, price
from jobs._plan import Agg, Query

COUNT = Agg("count", None, None, "n")


def schema(max_groups: int | None, definition: str = "pure_dp") -> Schema:
    city: dict[str, object] = {"type": "string"}
    if max_groups is not None:
        city["max_groups_per_person"] = max_groups
    return Schema.from_dict(
        {
            "max_rows": 100_000,
            "privacy_definition": definition,
            "privacy_unit": {"column": "visitor", "max_rows_per_person": 3},
            "columns": {
                "visitor": {"type": "string"},
                "city": city,
                "season": {
                    "type": "category",
                    "categories": ["winter", "summer"],
                    "max_groups_per_person": 1,
                },
                "nights": {"type": "int", "bounds": [1, 14]},
            },
        }
    )


def by(*columns: str) -> Query:
    return Query("t", (), columns, (COUNT,), "table")


NOWHERE = Path("/nonexistent")


@pytest.mark.parametrize("definition", ["pure_dp", "zcdp"])
def test_a_group_limit_lowers_the_threshold_for_private_keys(definition: str) -> None:
    """Touching one city instead of three: the same ε and δ need a lower threshold."""
    free = price(
        by("city"),
        DatasetHandle("t", schema(None, definition), NOWHERE),
        Decimal(1),
        Decimal("1e-7"),
    )
    one = price(
        by("city"), DatasetHandle("t", schema(1, definition), NOWHERE), Decimal(1), Decimal("1e-7")
    )
    assert free.threshold is not None
    assert one.threshold is not None
    # Laplace thresholds fall by whole steps; the Gaussian's δ falls so fast at these
    # counts that the same threshold may serve both, with a smaller δ.
    assert one.threshold < free.threshold or (
        definition == "zcdp"
        and one.threshold == free.threshold
        and one.measurement.map(one.d_in)[1] < free.measurement.map(free.d_in)[1]
    )
    assert one.global_scale == pytest.approx(free.global_scale)  # the noise is unchanged
    for priced in (free, one):
        loss, delta = priced.measurement.map(priced.d_in)
        assert loss <= 1
        assert delta <= 1e-7


def test_group_limits_multiply_across_grouping_columns_up_to_the_row_limit() -> None:
    priced = price(
        by("city", "season"), DatasetHandle("t", schema(2), NOWHERE), Decimal(1), Decimal("1e-7")
    )
    [_rows, groups] = priced.d_in
    assert groups.num_groups == 2  # 2 cities x 1 season
    priced = price(by("season"), DatasetHandle("t", schema(None), NOWHERE), Decimal(1))
    assert priced.d_in[1].num_groups == 1
    assert priced.threshold is None  # public keys: nothing to threshold
    assert placeholder(priced)[0]["n"]["value"] == 1


def test_a_row_privacy_unit_is_one_row() -> None:
    rows = Schema.from_dict({"columns": {"city": {"type": "category", "categories": ["a"]}}})
    assert price(by("city"), DatasetHandle("t", rows, NOWHERE), Decimal(1)).d_in == 1


def test_truncated_data_obey_the_bounds_the_analysis_assumes(tmp_path: Path) -> None:
    """A visitor with ten stays in two seasons keeps three stays in the first season."""
    frame = pl.DataFrame(
        {
            "visitor": ["v1"] * 10 + ["v2", "v2"],
            "city": [f"c{i}" for i in range(10)] + ["a", "b"],
            "season": ["summer", "winter"] * 5 + ["winter", "winter"],
            "nights": [2] * 12,
        }
    )
    kept, truncation = truncate_contributions(frame, schema(2))
    # v1's first 3 rows are (c0, summer), (c1, winter), (c2, summer): its first season is
    # summer and its first 2 cities c0, c1, so only the first row is kept.
    assert truncation.rows_dropped == 9
    assert truncation.persons_truncated == 1
    per_person = kept.group_by("visitor").agg(
        pl.len(), pl.col("season").n_unique(), pl.col("city").n_unique()
    )
    assert per_person.get_column("len").max() <= 3
    assert per_person.get_column("season").max() == 1
    assert per_person.get_column("city").max() <= 2
    path = tmp_path / "d.parquet"
    kept.write_parquet(path)
    out = evaluate(price(by("season"), DatasetHandle("t", schema(2), path), Decimal(1000)))
    assert [r["season"] for r in out] == ["winter", "summer"]


@pytest.mark.slow
def test_a_city_of_one_visitor_almost_never_appears(tmp_path: Path) -> None:
    """One visitor, three stays in 'hamlet': at most a δ share of releases show it."""
    frame = pl.DataFrame(
        {
            "visitor": [f"p{i}" for i in range(1500)] + ["lonely"] * 3,
            "city": ["paris"] * 900 + ["lyon"] * 600 + ["hamlet"] * 3,
            "season": ["summer"] * 1503,
            "nights": [3] * 1503,
        }
    )
    path = tmp_path / "d.parquet"
    truncate_contributions(frame, schema(1))[0].write_parquet(path)
    priced = price(by("city"), DatasetHandle("t", schema(1), path), Decimal(1), Decimal("1e-3"))
    seen = {"paris": 0, "lyon": 0, "hamlet": 0}
    for _ in range(2000):
        for row in evaluate(priced):
            seen[row["city"]] += 1
    assert seen["hamlet"] <= 12
    assert seen["paris"] == seen["lyon"] == 2000
