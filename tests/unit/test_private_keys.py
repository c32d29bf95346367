"""Group keys that are not public are released by thresholding (OpenDP), costing δ.

Statistical claim checked: a key held by one person appears in at most a
δ-fraction of releases. With δ = 1e-3 and 2,000 releases the expected number of
appearances is at most 2; observing 13 or more has probability < 1e-7 (Poisson
tail, λ = 2), which bounds the test's false-failure probability.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from jobs import DatasetHandle, PlanError, Schema
from jobs._compiler import evaluate, placeholder, price
from jobs._plan import Agg, Query

SCHEMA = Schema.from_dict(
    {
        "max_rows": 100_000,
        "columns": {"city": {"type": "string"}, "nights": {"type": "int", "bounds": [1, 14]}},
    }
)
COUNT = Agg("count", None, None, "n")


@pytest.fixture(scope="module")
def handle(tmp_path_factory: pytest.TempPathFactory) -> DatasetHandle:
    cities = ["paris"] * 600 + ["lyon"] * 400 + ["hamlet"]  # "hamlet": one person
    path = tmp_path_factory.mktemp("keys") / "cities.parquet"
    pl.DataFrame({"city": cities, "nights": [3] * len(cities)}).write_parquet(path)
    return DatasetHandle("t", SCHEMA, path)


def by_city(*aggs: Agg) -> Query:
    return Query("t", (), ("city",), aggs, "table")


@pytest.mark.slow
def test_a_key_held_by_one_person_almost_never_appears(handle: DatasetHandle) -> None:
    priced = price(by_city(COUNT), handle, Decimal(1), Decimal("1e-3"))
    assert priced.measurement.map(1)[1] <= 1e-3
    seen = {"paris": 0, "lyon": 0, "hamlet": 0}
    for _ in range(2000):
        for row in evaluate(priced):
            seen[row["city"]] += 1
    assert seen["hamlet"] <= 12
    assert seen["paris"] == seen["lyon"] == 2000  # far above the threshold: always released


def test_threshold_is_the_smallest_that_fits_delta(handle: DatasetHandle) -> None:
    priced = price(
        by_city(COUNT, Agg("mean", "nights", None, "m")), handle, Decimal(1), Decimal("1e-7")
    )
    t = priced.threshold
    assert t is not None
    eps, delta = priced.measurement.map(1)
    assert eps <= 1.0
    assert delta <= 1e-7
    from jobs._compiler import _build, _loss

    below = _loss(_build(priced.query, SCHEMA, priced.global_scale, t - 1), 1, True)[1]
    assert below > 1e-7
    rows = evaluate(priced)
    assert [r["city"] for r in rows] == ["lyon", "paris"]  # released keys, in key order
    assert all(r["n"]["threshold"] == t for r in rows)


@pytest.mark.parametrize(
    ("query", "delta", "fragment"),
    [
        (by_city(COUNT), Decimal(0), "costs delta"),
        (by_city(Agg("sum", "nights", None, "s")), Decimal("1e-7"), "include count()"),
        (Query("t", (), (), (COUNT,), "scalar"), Decimal("1e-7"), "pass no delta"),
        (by_city(COUNT), Decimal("1e-300"), "too small"),
    ],
)
def test_delta_is_required_exactly_when_keys_are_private(
    handle: DatasetHandle, query: Query, delta: Decimal, fragment: str
) -> None:
    with pytest.raises(PlanError, match=fragment):
        price(query, handle, Decimal("0.01") if fragment == "too small" else Decimal(1), delta)


def test_the_cost_only_host_cannot_know_private_keys(handle: DatasetHandle) -> None:
    assert placeholder(price(by_city(COUNT), handle, Decimal(1), Decimal("1e-7"))) == []


def test_grouping_on_a_float_or_the_identifier_is_refused(tmp_path: Path) -> None:
    schema = Schema.from_dict(
        {
            "privacy_unit": {"column": "id", "max_rows_per_person": 1},
            "columns": {"id": {"type": "string"}, "f": {"type": "float", "bounds": [0, 1]}},
        }
    )
    handle = DatasetHandle("t", schema, tmp_path / "none.parquet")
    for column, message in (("id", "identifies people"), ("f", "histogram")):
        query = Query("t", (), (column,), (COUNT,), "table")
        with pytest.raises(PlanError, match=message):
            price(query, handle, Decimal(1), Decimal("1e-7"))


def test_max_keys_is_checked_at_registration_and_tightens_float_sums(tmp_path: Path) -> None:
    from jobs import DataMismatch, SchemaError, conform

    def schema_with(max_keys: int | None) -> Schema:
        town: dict[str, object] = {"type": "string"}
        if max_keys is not None:
            town["max_keys"] = max_keys
        return Schema.from_dict(
            {"columns": {"town": town, "spend": {"type": "float", "bounds": [0, 100]}}}
        )

    frame = pl.DataFrame({"town": ["a", "b", "c"], "spend": [1.0, 2.0, 3.0]})
    with pytest.raises(DataMismatch, match="max_keys=2"):
        conform(frame, schema_with(2))
    conform(frame, schema_with(3))
    with pytest.raises(SchemaError, match="max_keys"):
        Schema.from_dict({"columns": {"f": {"type": "float", "bounds": [0, 1], "max_keys": 3}}})
    query = Query("t", (), ("town",), (COUNT, Agg("sum", "spend", None, "s")), "table")
    scales = [
        price(
            query, DatasetHandle("t", schema_with(k), tmp_path / "x"), Decimal(1), Decimal("1e-7")
        ).accuracy["s"][1]
        for k in (None, 100)
    ]
    assert scales[1] < scales[0]


def test_a_nullable_public_key_counts_null_as_a_group() -> None:
    from jobs._compiler import _max_groups

    schema = Schema.from_dict(
        {
            "columns": {
                "kind": {"type": "category", "categories": ["a", "b", "c"], "nullable": True},
                "town": {"type": "string", "max_keys": 100},
            }
        }
    )
    assert _max_groups(schema, ("kind", "town")) == 4 * 100


def test_the_threshold_applies_to_the_released_count(handle: DatasetHandle) -> None:
    # count() after a mean: the mean's hidden count must not be the one thresholded.
    query = by_city(Agg("mean", "nights", None, "m"), COUNT)
    priced = price(query, handle, Decimal("0.5"), Decimal("1e-6"))
    for _ in range(50):
        for row in evaluate(priced):
            assert row["n"]["value"] >= row["n"]["threshold"]
